"""The dealer's erasure receipt (issue 15, item 3; docs/dealers.md): ``jpki-app dealer-check`` on a phone
brought to a used-phone dealer ends the JPKI certificates its secure element still holds (the
stale-certificate flow: revoked at the CA, deleted from the SE) and gets a receipt the service signed (CMS),
which ``openssl cms -verify`` and ``jpki-service verify-receipt`` accept offline. A phone whose certificates
could not be revoked (the CA down) gets none; a forged or altered receipt fails both verifiers; an attestation
from an unknown maker or for another challenge is refused and changes nothing. Through the real service and
CA processes over HTTP, judged with openssl; on SQLite and on PostgreSQL.

One CA and one service per backend for the module (tests/shared_ca.py): each test's card is of a person of its
own and its snapshot covers its own card's rows. The test that stops the CA has a CA and a service of its own;
the one that needs other makers, a service of its own on the module's CA.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from app_client.cli import app
from app_client.secure_element import SecureElement
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from jpki_common.owner_proof import sign_message
from jpki_common.se_attestation import statement_bytes
from jpki_service.entrypoints.cli import app as service_cli
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.conftest import start_service, stop_process
from tests.helpers import openssl_ocsp
from tests.shared_ca import (  # noqa: F401 (fixtures)
    _fresh_keys_per_test,
    own_ca_server,
    own_service_database_url,
    own_service_server,
    shared_servers,
    unique_person,
)
from tests.test_service_flows import wait_for
from tests.test_service_proofs import assert_problem, snapshot

pytestmark = pytest.mark.e2e

ca_server, service_server = shared_servers("dealer")


def _issued_card(ca) -> dict:
    """A card of a person of its own, issued by ``ca``."""
    return issue_card(ca.store, ca.settings, PersonIn(**unique_person()), CARD_PASSWORD, CARD_PIN)


def _card_file(card: dict, tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    write_card(card, path)
    return path


@pytest.fixture
def card(ca_server) -> dict:
    return _issued_card(ca_server)


@pytest.fixture
def card_file(card: dict, tmp_path: Path) -> Path:
    return _card_file(card, tmp_path)


@pytest.fixture
def app_cli(service_server, tmp_path: Path):
    return _app_cli(service_server, tmp_path)


def _app_cli(service_server, tmp_path: Path):
    """``jpki-app --lang en --home <tmp>/<home> --service <the service> ...``; only register gets secrets."""
    runner = CliRunner()

    def run(home: str, *args: str) -> Result:
        env = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN}
        return runner.invoke(app, ["--lang", "en", "--home", str(tmp_path / home), "--service", service_server.url,
                                   *args], env=env if args[0] == "register" else {})
    return run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def _factory_reset_phone(app_cli, card_file: Path, home: str = "phone") -> dict:
    """A registered phone, then factory reset: the SE keeps its live certificates. Its registration document."""
    _ok(app_cli(home, "register", "--card", str(card_file), "--model", "Pixel 9"))
    registration = json.loads(_ok(app_cli(home, "status", "--json")))["registration"]
    _ok(app_cli(home, "factory-reset"))
    return registration


def _pems(registration: dict) -> dict[str, str]:
    return {c["kind"]: c["certificate_pem"] for c in registration["certificates"] if c["current"]}


def _openssl_cms_verify(receipt: Path, ca: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", receipt, "-CAfile", ca,
                           "-out", out], capture_output=True, text=True, timeout=60)


def _verify_receipt(receipt: Path, ca: Path) -> Result:
    return CliRunner().invoke(service_cli, ["verify-receipt", str(receipt), "--ca", str(ca)])


def _device_of(home: Path) -> str:
    certificate = x509.load_pem_x509_certificate(SecureElement(home / "se").attestation_certificate_pem().encode())
    return hashlib.sha256(certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def test_a_factory_reset_phone_is_cleared_and_gets_a_receipt_that_openssl_verifies(
        app_cli, card_file, ca_server, service_server, tmp_path):
    registration = _factory_reset_phone(app_cli, card_file)
    pems = _pems(registration)
    assert {openssl_ocsp(ca_server.url, pem, tmp_path / f"before-{kind}") for kind, pem in pems.items()} == {"good"}

    receipt, ca = tmp_path / "receipt.p7s", tmp_path / "receipt-ca.pem"
    output = _ok(app_cli("phone", "dealer-check", "--out", str(receipt), "--ca-out", str(ca)))

    case = registration["case_reference"]
    assert f"held registration {case}: revoked at the CA and deleted" in output
    assert "no live JPKI certificate remains on this phone" in output
    for kind, pem in pems.items():  # the stale-certificate flow revoked both at the CA
        assert openssl_ocsp(ca_server.url, pem, tmp_path / f"after-{kind}") == "revoked:cessationOfOperation"
    assert not SecureElement(tmp_path / "phone" / "se").holds_keys()
    # The certificate the dealer trusts is the one the service publishes.
    with service_server.client() as client:
        published = client.get("/api/v1/receipts/certificate")
    assert published.headers["content-type"].startswith("application/pem-certificate-chain")
    assert published.text == ca.read_text()

    verified = _openssl_cms_verify(receipt, ca, tmp_path / "receipt.json")
    assert verified.returncode == 0 and "Verification successful" in verified.stderr, verified.stderr
    document = json.loads((tmp_path / "receipt.json").read_text())
    assert document["device"] == _device_of(tmp_path / "phone")
    assert document["no_live_jpki_certificates"] is True and document["registrations_revoked_now"] == [case]
    checked_at = dt.datetime.fromisoformat(document["checked_at"])
    assert abs(dt.datetime.now(dt.UTC) - checked_at) < dt.timedelta(minutes=5)
    checked = _verify_receipt(receipt, ca)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout) == document

    # Another phone's check names another device and another challenge: a receipt is for its device only.
    other = _ok(app_cli("other-phone", "dealer-check", "--out", str(tmp_path / "other.p7s"), "--json"))
    other_document = json.loads(other)
    assert other_document["device"] == _device_of(tmp_path / "other-phone") != document["device"]
    assert other_document["challenge"] != document["challenge"] and other_document["registrations_revoked_now"] == []

    # Altered: one byte of the document changed. Forged: the same document signed by another key.
    altered = bytearray(receipt.read_bytes())
    at = altered.find(b'"no_live_jpki_certificates": true')
    altered[at + 1] = ord("N")
    (tmp_path / "altered.p7s").write_bytes(altered)
    (tmp_path / "forged.p7s").write_bytes(_forged(json.dumps(document).encode(), x509.load_pem_x509_certificate(
        ca.read_bytes()).subject))
    for bad in ("altered.p7s", "forged.p7s"):
        refused = _openssl_cms_verify(tmp_path / bad, ca, tmp_path / f"{bad}.json")
        assert refused.returncode != 0 and "Verification failure" in refused.stderr, refused.stderr
        checked = _verify_receipt(tmp_path / bad, ca)
        assert checked.exit_code == 1 and "receipt refused" in checked.output, checked.output


def _forged(content: bytes, subject: x509.Name) -> bytes:
    """A receipt signed by a key that is not the service's, under a certificate that copies its name."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .sign(key, hashes.SHA256()))
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(certificate, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


def _ca_store_status(ca_server, pem: str) -> str:
    """``jpki-ca status SERIAL --json`` on the CA's store: what the CA holds, with or without its server."""
    serial = format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_server.settings.data_dir),
           "JPKI_CA_DATABASE_URL": ca_server.settings.resolved_database_url()}
    shown = subprocess.run([sys.executable, "-m", "ca_mock", "status", serial, "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return json.loads(shown.stdout)["status"]


def test_a_phone_whose_certificates_could_not_be_revoked_gets_no_receipt(own_ca_server, own_service_server, tmp_path):
    # The CA is stopped: servers of this test's own.
    ca_server, service_server = own_ca_server, own_service_server
    app_cli, card_file = _app_cli(service_server, tmp_path), _card_file(_issued_card(ca_server), tmp_path)
    registration = _factory_reset_phone(app_cli, card_file)
    pems = _pems(registration)
    receipt = tmp_path / "receipt.p7s"

    ca_server.stop()
    try:
        refused = app_cli("phone", "dealer-check", "--out", str(receipt))
        assert refused.exit_code == 1, refused.output
        assert "no erasure receipt" in refused.output and "still holds" in refused.output
        assert not receipt.exists()
        # The SE keeps the certificates the CA has not revoked: the phone is not clean, and says so.
        assert SecureElement(tmp_path / "phone" / "se").registration_id == registration["registration_id"]
        # Meanwhile the CA's store, read by `jpki-ca status` while its server is down, still has them good
        # (read once the CA is back, the service's queue may already have carried the revocation).
        for pem in pems.values():
            assert _ca_store_status(ca_server, pem) == "good"
    finally:
        ca_server.start()

    # Once the service has carried the revocation to the CA, the same check clears the phone.
    wait_for(lambda: app_cli("phone", "dealer-check", "--out", str(receipt)).exit_code == 0, timeout=60)
    for kind, pem in pems.items():
        assert openssl_ocsp(ca_server.url, pem, tmp_path / f"after-{kind}") == "revoked:cessationOfOperation"
    with service_server.client() as client:
        (tmp_path / "ca.pem").write_text(client.get("/api/v1/receipts/certificate").text)
    verified = _openssl_cms_verify(receipt, tmp_path / "ca.pem", tmp_path / "receipt.json")
    assert verified.returncode == 0, verified.stderr
    document = json.loads((tmp_path / "receipt.json").read_text())
    assert document["registrations_revoked_now"] == [registration["case_reference"]]
    assert not SecureElement(tmp_path / "phone" / "se").holds_keys()


def _unknown_maker_certificate(key: ec.EllipticCurvePrivateKey) -> str:
    """An attestation certificate from a maker the service does not trust."""
    maker_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Simulated secure element")]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone's SE maker")]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .sign(maker_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_an_attestation_from_an_unknown_maker_or_for_another_challenge_is_refused(
        app_cli, card, card_file, service_server, tmp_path):
    _factory_reset_phone(app_cli, card_file)
    se = SecureElement(tmp_path / "phone" / "se")
    # The lifecycle tables less other tests' registrations (the module's service is shared).
    this_card = SimpleNamespace(serial=card["signature"]["serial"])
    before = snapshot(service_server.database_url, this_card)
    with service_server.client() as client:
        def challenge() -> dict:
            answer = client.post("/api/v1/challenges", json={"action": "dealer-receipt"})
            assert answer.status_code == 201, answer.text
            return answer.json()

        def body(challenge_id: str, statement: bytes, signature: str, certificate_pem: str) -> dict:
            return {"challenge_id": challenge_id, "statement": base64.b64encode(statement).decode(),
                    "signature": signature, "attestation_certificate_pem": certificate_pem}

        # Another maker: a well-formed statement, signed, for this challenge, but under a maker nobody trusts.
        key = ec.generate_private_key(ec.SECP256R1())
        fresh = challenge()
        statement = statement_bytes(fresh["challenge_id"], fresh["nonce"], [], [])
        refused = client.post("/api/v1/receipts", json=body(fresh["challenge_id"], statement,
                                                             sign_message(key, statement),
                                                             _unknown_maker_certificate(key)))
        problem = assert_problem(refused, 403, "proof-rejected")
        assert "not a secure-element maker this service trusts" in problem["detail"]
        assert problem["field"] == "attestation_certificate_pem"

        # The real SE's attestation, made for one challenge, sent with another.
        first, second = challenge(), challenge()
        statement, signature = se.attest(first["challenge_id"], first["nonce"])
        refused = client.post("/api/v1/receipts", json=body(second["challenge_id"], statement, signature,
                                                             se.attestation_certificate_pem()))
        assert "another challenge" in assert_problem(refused, 403, "proof-rejected")["detail"]

        # The real SE, which still holds the registration's keys: 409, it is not clean.
        third = challenge()
        statement, signature = se.attest(third["challenge_id"], third["nonce"])
        refused = client.post("/api/v1/receipts", json=body(third["challenge_id"], statement, signature,
                                                             se.attestation_certificate_pem()))
        assert "still holds" in assert_problem(refused, 409, "state-conflict")["detail"]

        # Not base64: named by field.
        fourth = challenge()
        refused = client.post("/api/v1/receipts", json={**body(fourth["challenge_id"], b"x", "c2ln", "pem"),
                                                        "statement": "not base64!"})
        assert assert_problem(refused, 422, "invalid-request")["field"] == "statement"
    assert snapshot(service_server.database_url, this_card) == before
    assert se.holds_keys()


def test_a_service_configured_with_other_makers_refuses_the_simulated_one(ca_server, own_service_database_url,
                                                                          tmp_path):
    """JPKI_SE_MAKER_CA_FILE replaces the simulated maker: the simulator's SE is then a stranger, and nothing
    changes. A service of this test's own (other settings), on the module's CA."""
    maker_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A real SE maker's attestation root")])
    now = dt.datetime.now(dt.UTC)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(maker_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(maker_key, hashes.SHA256()))
    makers = tmp_path / "makers.pem"
    makers.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "configured").mkdir()
    service = start_service(ca_server, own_service_database_url, tmp_path / "configured",
                            settings={"JPKI_SE_MAKER_CA_FILE": str(makers)})
    try:
        refused = CliRunner().invoke(app, ["--lang", "en", "--home", str(tmp_path / "phone"), "--service", service.url,
                                           "dealer-check", "--out", str(tmp_path / "receipt.p7s")])
        assert refused.exit_code == 1, refused.output
        assert "not a secure-element maker this service trusts" in refused.output
        assert not (tmp_path / "receipt.p7s").exists()
    finally:
        stop_process(service.process)
