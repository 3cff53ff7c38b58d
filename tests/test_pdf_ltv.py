"""Long-term validation of phone signatures, against a real ``jpki-ca serve`` and its RFC 3161 TSA.

A PDF signed while the certificate was good carries a signature timestamp from the CA's TSA and
the revocation information of signing time (PAdES B-LT). Once the certificate is revoked it
still validates, judged at its timestamp, with a note saying the revocation came later. Signing
after the revocation is refused; a signature without a timestamp, or one timestamped after the
revocation (a stolen key, used outside the app, even with "good" revocation answers from before
the revocation copied into it), is invalid. The TSA itself is judged by openssl.

Every verdict of the app's verifier is judged again by pyHanko's own validators, trusting the CA's
root alone (tests/pdf_fixtures.py): ``pyhanko_now`` (the certificate's status as the CA answers it
now) and ``pyhanko_ltv`` (PAdES long-term validation with only what the document embeds, nothing
fetched). Where pyHanko cannot judge as the app does (the CRL's invalidity date; a replayed "good"
answer, told apart only by asking the CA now), the test says so and asserts what pyHanko answers.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from sqlalchemy import delete
from typer.testing import CliRunner

from app_client import flows, pdf
from app_client.app_data import AppState
from app_client.cli import app as jpki_app
from app_client.errors import AppError
from app_client.secure_element import KeySlot
from ca_mock.authorities.models import Authority
from ca_mock.cards.service import issue_card
from ca_mock.certificates.schemas import IssueRequest, PersonIn
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.tsa.service import TimeStampResp
from jpki_common.i18n import japan_time
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.pdf_fixtures import REGISTRATION, PasswordAsked, document, pyhanko_ltv, pyhanko_now  # noqa: F401 (fixtures)
from tests.shared_ca import _fresh_keys_per_test, own_ca_server, shared_servers, unique, unique_person  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

# One CA per backend for the module: each test revokes, holds or reads only its own phone's certificate (a
# person of its own, operation ids of its own). The one test that deletes the CA's TSA and restarts it has a
# CA of its own (``own_ca_server``).
ca_server, _service_server = shared_servers("ltv")


def _registered_phone(ca, folder: Path) -> flows.Phone:
    """As tests/pdf_fixtures.py's ``phone``, for a person of its own and under operation ids of its own: a
    registered phone, its SE key certified by ``ca``, the CA chain pinned from the card."""
    store, settings = ca.store, ca.settings
    person = PersonIn(**unique_person())
    card = issue_card(store, settings, person, CARD_PASSWORD, CARD_PIN)
    phone = flows.open_phone(folder, "http://127.0.0.1:9")
    enrolment = phone.se.enrol(PHONE_PASSWORD, PHONE_PIN)
    issued = issue_certificate(store, settings, IssueRequest(
        operation_id=unique("phone-signature"), profile="phone-signature", csr_pem=enrolment.signature_csr_pem,
        person=person, card_serial=card["signature"]["serial"],
    ))
    phone.se.bind(REGISTRATION)
    phone.se.store_certificate(KeySlot.SIGNATURE, issued["certificate_pem"])
    phone.app_data.save(AppState(registration_id=REGISTRATION, ca_chain=card["chain"]))
    return phone


@pytest.fixture
def phone(ca_server, tmp_path: Path) -> flows.Phone:
    return _registered_phone(ca_server, tmp_path / "phone")


@pytest.fixture
def own_phone(own_ca_server, tmp_path: Path) -> flows.Phone:
    return _registered_phone(own_ca_server, tmp_path / "phone")


SECRET_VARIABLES = ("JPKI_CARD_PASSWORD", "JPKI_SIGN_PASSWORD", "JPKI_NEW_SIGN_PASSWORD", "JPKI_AUTH_PIN")


def _root(phone: flows.Phone) -> str:
    """The root pinned from the card (PEM): the one trust anchor of pyHanko's judges too."""
    return phone.app_data.load().ca_chain["root"]


def _revoked_now(pdf: Path, root: str, reason_native: str) -> None:
    """pyHanko, asking the CA now: the signer's certificate is revoked (or held) for ``reason_native``."""
    now = pyhanko_now(pdf, root)
    assert not now.bottom_line and now.intact and now.valid and now.revoked, now.pretty_print_details()
    assert not now.revocation_details.ca_revoked
    assert now.revocation_details.revocation_reason.native == reason_native


def _no_embedded_revocation_information(judgement) -> None:
    """pyHanko's long-term validation refused for want of embedded revocation information (the
    first certificate it misses it for is the issuing CA's: the root's CRL is not embedded either)."""
    assert not judgement.passed and judgement.indication == "CERTIFICATE_CHAIN_GENERAL_FAILURE", judgement.explain()
    assert "no revocation information could be found for intermediate certificate" in judgement.problems, \
        judgement.explain()


def _certificate(phone: flows.Phone) -> x509.Certificate:
    return x509.load_pem_x509_certificate(phone.se.certificate_pem(KeySlot.SIGNATURE).encode())


def _change(ca_server, phone, action: StatusAction, reason: str | None = None, invalidity_date=None) -> None:
    serial = format(_certificate(phone).serial_number, "x")
    change_status(ca_server.store, ca_server.settings, serial, action, unique(f"test-{action.value}-{reason}"),
                  reason, invalidity_date)


def _wait_past(moment: dt.datetime) -> None:
    """The CA records revocation times to the second (rounded down). A revocation in the same
    second as the timestamp would read as not later, and is judged so: wait for the next second."""
    while dt.datetime.now(dt.UTC).replace(microsecond=0) <= moment:
        time.sleep(0.05)


def _cli(phone_home: Path, *args: str, **env: str | None):
    environment = dict.fromkeys((*SECRET_VARIABLES, "JPKI_APP_HOME", "JPKI_SERVICE_URL", "JPKI_TSA_URL"))
    environment.update(env)
    return CliRunner().invoke(jpki_app, ["--home", str(phone_home), "--service", "http://127.0.0.1:9", *args],
                              env=environment)


@pytest.mark.parametrize("reason, reason_native", [("keyCompromise", "key_compromise"), ("superseded", "superseded")])
def test_signed_before_revocation_stays_valid_and_after_it_is_impossible(
        ca_server, phone, document, tmp_path, reason, reason_native):
    stamped = flows.sign_pdf(phone, document, tmp_path / "stamped.pdf", PasswordAsked())
    assert stamped.level == "PAdES B-LT" and stamped.tsa == f"{ca_server.url}/tsa"
    bare = flows.sign_pdf(phone, document, tmp_path / "bare.pdf", PasswordAsked(), timestamp=False)
    assert bare.level.startswith("PAdES B-B") and bare.tsa is None

    before = flows.verify_pdf(phone, stamped.target).signatures[0]
    assert before.valid and before.judged_at is None and before.timestamp_trusted, before
    assert flows.verify_pdf(phone, bare.target).valid
    # pyHanko: both valid now; the stamped one also valid from what it embeds alone, at its
    # timestamp. The bare one is no B-LT signature (nor does the app call it one): pyHanko's
    # long-term validation refuses it for want of a signature timestamp.
    root = _root(phone)
    assert pyhanko_now(stamped.target, root).bottom_line and pyhanko_now(bare.target, root).bottom_line
    long_term = pyhanko_ltv(stamped.target, root)
    assert long_term.passed and long_term.timestamp_passed, long_term.explain()
    assert long_term.best_signature_time == before.timestamp
    bare_long_term = pyhanko_ltv(bare.target, root)
    assert bare_long_term.indication == "SIG_CONSTRAINTS_FAILURE" and not bare_long_term.timestamp_passed

    _wait_past(before.timestamp)
    _change(ca_server, phone, StatusAction.REVOKE, reason)

    # Signed before: valid at its timestamp, and says the revocation came later.
    (after,) = flows.verify_pdf(phone, stamped.target).signatures
    assert after.valid, after
    assert after.judged_at == after.timestamp == before.timestamp
    assert after.summary.startswith(f"VALID at its timestamp {after.timestamp.isoformat()}")
    assert "the certificate was revoked later (" in after.summary and f", {reason_native})" in after.summary
    # pyHanko: revoked now, and valid at its timestamp by the revocation information embedded at signing.
    _revoked_now(stamped.target, root, reason_native)
    long_term = pyhanko_ltv(stamped.target, root)
    assert long_term.passed and long_term.best_signature_time == after.judged_at, long_term.explain()

    # Without a timestamp nothing shows it was signed before: judged now, revoked.
    (untimed,) = flows.verify_pdf(phone, bare.target).signatures
    assert not untimed.valid and untimed.judged_at is None
    assert f"REVOKED ({reason_native})" in untimed.summary
    assert "no trusted signature timestamp shows it was signed before" in untimed.summary
    _revoked_now(bare.target, root, reason_native)
    assert pyhanko_ltv(bare.target, root).indication == "SIG_CONSTRAINTS_FAILURE"

    # Signing after the revocation is refused before the password is asked, with or without timestamp.
    for timestamp in (True, False):
        password = PasswordAsked()
        refused = rf"signing refused: the phone signature certificate is revoked \({reason_native}\)"
        with pytest.raises(AppError, match=refused):
            flows.sign_pdf(phone, document, tmp_path / "after.pdf", password, timestamp=timestamp)
        assert password.calls == 0 and not (tmp_path / "after.pdf").exists()

    # The same through the CLI: exit 0 with the note, exit 1 for the untimestamped one.
    home = tmp_path / "phone"
    shown = _cli(home, "verify", str(stamped.target))
    assert shown.exit_code == 0, shown.output
    assert "revoked later" in shown.stdout
    assert f"judged       at its timestamp {japan_time(after.timestamp, 'en')}" in shown.stdout  # Japan time
    assert "(trusted TSA)" in shown.stdout
    refused = _cli(home, "verify", str(bare.target))
    assert refused.exit_code == 1 and f"REVOKED ({reason_native})" in refused.stdout
    signing = _cli(home, "sign", str(document), str(tmp_path / "cli.pdf"), JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    assert signing.exit_code == 1 and "signing refused" in signing.stderr and not (tmp_path / "cli.pdf").exists()


def test_a_hold_after_the_timestamp_reads_as_suspended_later(ca_server, phone, document, tmp_path):
    stamped = flows.sign_pdf(phone, document, tmp_path / "stamped.pdf", PasswordAsked())
    _wait_past(flows.verify_pdf(phone, stamped.target).signatures[0].timestamp)
    _change(ca_server, phone, StatusAction.HOLD)

    (held,) = flows.verify_pdf(phone, stamped.target).signatures
    assert held.valid and "the certificate was suspended later (" in held.summary
    assert "certificateHold)" in held.summary
    root = _root(phone)
    _revoked_now(stamped.target, root, "certificate_hold")
    long_term = pyhanko_ltv(stamped.target, root)
    assert long_term.passed and long_term.best_signature_time == held.judged_at, long_term.explain()
    with pytest.raises(AppError, match=r"suspended \(certificateHold\)"):
        flows.sign_pdf(phone, document, tmp_path / "after.pdf", PasswordAsked())

    _change(ca_server, phone, StatusAction.RELEASE)
    (released,) = flows.verify_pdf(phone, stamped.target).signatures
    assert released.valid and released.judged_at is None and released.summary.startswith("VALID: ")
    assert pyhanko_now(stamped.target, root).bottom_line and pyhanko_ltv(stamped.target, root).passed


def test_an_invalidity_date_before_the_timestamp_invalidates(ca_server, phone, document, tmp_path):
    """keyCompromise with an invalidity date (RFC 5280 5.3.2, in the CRL entry): the key is held
    compromised since then, so a signature timestamped after it is not saved by a later revocation."""
    stamped = flows.sign_pdf(phone, document, tmp_path / "stamped.pdf", PasswordAsked())
    timestamp = flows.verify_pdf(phone, stamped.target).signatures[0].timestamp
    _wait_past(timestamp)
    _change(ca_server, phone, StatusAction.REVOKE, "keyCompromise", invalidity_date=timestamp)

    (verdict,) = flows.verify_pdf(phone, stamped.target).signatures
    assert not verdict.valid, verdict
    assert "REVOKED (key_compromise)" in verdict.summary and "CRL invalidity date" in verdict.summary

    # pyHanko agrees that it is revoked now, but its long-term validation accepts the signature: it
    # reads no invalidity date (its RevocationDetails carry the revocation date and reason only), and
    # the revocation information embedded at signing shows the certificate good at the timestamp.
    # This rule (RFC 5280 5.3.2) is the app's own; pyHanko cannot judge it, so here they disagree.
    root = _root(phone)
    _revoked_now(stamped.target, root, "key_compromise")
    long_term = pyhanko_ltv(stamped.target, root)
    assert long_term.passed and long_term.best_signature_time == timestamp, long_term.explain()


async def _sign_outside_the_app(phone: flows.Phone, source: bytes, tsa_url: str) -> bytes:
    """What a thief holding the key (and password) can do without the app: sign with no
    certificate check at all, and have any public TSA timestamp it."""
    certificate = _certificate(phone)
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in phone.app_data.load().ca_chain.values()]
    signer = pdf.SecureElementSigner(phone.se, lambda: PHONE_PASSWORD, certificate, chain)
    metadata = signers.PdfSignatureMetadata(field_name="Stolen", md_algorithm="sha256",
                                            subfilter=fields.SigSeedSubFilter.PADES)
    signed = await signers.async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(source)), metadata, signer=signer,
                                          timestamper=HTTPTimeStamper(tsa_url))
    return signed.getvalue()


def test_a_stolen_key_cannot_sign_into_the_past(ca_server, phone, document, tmp_path):
    good = flows.sign_pdf(phone, document, tmp_path / "good.pdf", PasswordAsked())
    _wait_past(flows.verify_pdf(phone, good.target).signatures[0].timestamp)
    _change(ca_server, phone, StatusAction.REVOKE, "keyCompromise")

    stolen = asyncio.run(_sign_outside_the_app(phone, document.read_bytes(), f"{ca_server.url}/tsa"))
    (verdict,) = flows.verify_pdf(phone, _write(tmp_path / "stolen.pdf", stolen)).signatures
    assert not verdict.valid and verdict.timestamp_trusted
    assert "REVOKED (key_compromise)" in verdict.summary and "is not earlier" in verdict.summary
    # pyHanko refuses it too: revoked now, and no revocation information embedded to judge it by.
    root = _root(phone)
    _revoked_now(tmp_path / "stolen.pdf", root, "key_compromise")
    _no_embedded_revocation_information(pyhanko_ltv(tmp_path / "stolen.pdf", root))

    # Copy the "good" OCSP responses and CRLs of before the revocation into it (still within their
    # thisUpdate..nextUpdate window at the new timestamp).
    good_dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(good.target.read_bytes())))
    replayed = io.BytesIO(stolen)
    DocumentSecurityStore.add_dss(
        replayed, sig_contents=None, certs=list(good_dss.load_certs()),
        ocsps=[asn1_ocsp.OCSPResponse.load(ref.get_object().data) for ref in good_dss.ocsps],
        crls=[asn1_crl.CertificateList.load(ref.get_object().data) for ref in good_dss.crls],
    )
    target = _write(tmp_path / "replayed.pdf", replayed.getvalue())

    # Judged at its timestamp with the embedded information alone, it would pass: that check
    # cannot tell a replayed answer from a fresh one, neither the app's (step 4 of its rule) nor
    # pyHanko's long-term validation, which by design fetches nothing ...
    assert asyncio.run(_valid_with_embedded_information_only(phone, target, verdict.timestamp))
    replayed_long_term = pyhanko_ltv(target, root)
    assert replayed_long_term.passed and replayed_long_term.best_signature_time == verdict.timestamp
    # ... which is why the verifier also asks the CA now, and compares the revocation date.
    (verdict,) = flows.verify_pdf(phone, target).signatures
    assert not verdict.valid
    assert "REVOKED (key_compromise)" in verdict.summary and "is not earlier" in verdict.summary
    # pyHanko asking the CA now refuses it too, but has no rule comparing the revocation date with
    # the timestamp in the same judgement: only the app's verifier combines the two.
    _revoked_now(target, root, "key_compromise")


def test_a_timestamp_without_embedded_revocation_information_saves_nothing(ca_server, phone, document, tmp_path):
    """Signed and timestamped before the revocation, but with no OCSP response or CRL embedded (a
    signature made outside the app): nothing in the document shows the certificate good then."""
    unembedded = _write(tmp_path / "no-dss.pdf",
                        asyncio.run(_sign_outside_the_app(phone, document.read_bytes(), f"{ca_server.url}/tsa")))
    root = _root(phone)
    (before,) = flows.verify_pdf(phone, unembedded).signatures
    assert before.valid and before.judged_at is None and before.timestamp_trusted, before
    assert pyhanko_now(unembedded, root).bottom_line  # valid now, by the CA's answers of now
    _no_embedded_revocation_information(pyhanko_ltv(unembedded, root))  # but not long-term

    _wait_past(before.timestamp)
    _change(ca_server, phone, StatusAction.REVOKE, "keyCompromise")
    (after,) = flows.verify_pdf(phone, unembedded).signatures
    assert not after.valid and "REVOKED (key_compromise)" in after.summary
    assert "carries no revocation information from signing time (DSS)" in after.summary
    _revoked_now(unembedded, root, "key_compromise")
    _no_embedded_revocation_information(pyhanko_ltv(unembedded, root))


def test_an_altered_b_lt_document_is_refused_by_both(phone, document, tmp_path):
    stamped = flows.sign_pdf(phone, document, tmp_path / "stamped.pdf", PasswordAsked())
    data = stamped.target.read_bytes()
    assert data.count(b"(contract)") == 1
    tampered = _write(tmp_path / "tampered.pdf", data.replace(b"(contract)", b"(contrakt)"))

    (verdict,) = flows.verify_pdf(phone, tampered).signatures
    assert not verdict.valid and "altered after signing" in verdict.summary
    root = _root(phone)
    now = pyhanko_now(tampered, root)
    assert not now.bottom_line and not now.intact
    long_term = pyhanko_ltv(tampered, root)
    assert not long_term.passed and long_term.indication == "HASH_FAILURE", long_term.explain()


async def _valid_with_embedded_information_only(phone: flows.Phone, target: Path, moment: dt.datetime) -> bool:
    reader = PdfFileReader(io.BytesIO(target.read_bytes()))
    (embedded,) = reader.embedded_signatures
    trust = flows._pinned(phone.app_data.load().ca_chain)
    vc = trust.validation_context_at(moment, DocumentSecurityStore.read_dss(reader))
    ts_vc = trust.validation_context()
    try:
        status = await async_validate_pdf_signature(embedded, signer_validation_context=vc,
                                                    ts_validation_context=ts_vc)
    finally:
        await vc.aclose()
        await ts_vc.aclose()
    return status.bottom_line


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the TSA ------------------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_tsa_answers_openssl(ca_server, tmp_path):
    with ca_server.client(authorised=False) as client:
        (tmp_path / "root.pem").write_bytes(client.get("/ca/root.pem").content)
        (tmp_path / "tsa.pem").write_bytes(client.get("/ca/tsa.pem").content)
        (tmp_path / "file").write_text("a document to timestamp")
        query = _openssl("ts", "-query", "-data", "file", "-sha256", "-cert", "-out", "req.tsq", cwd=tmp_path)
        assert query.returncode == 0, query.stderr
        response = client.post("/tsa", content=(tmp_path / "req.tsq").read_bytes(),
                               headers={"Content-Type": "application/timestamp-query"})
        assert response.status_code == 200 and response.headers["content-type"] == "application/timestamp-reply"
        (tmp_path / "resp.tsr").write_bytes(response.content)

        shown = _openssl("ts", "-reply", "-in", "resp.tsr", "-text", cwd=tmp_path)
        assert shown.returncode == 0 and "Status: Granted" in shown.stdout, shown.stdout + shown.stderr
        assert "JPKI Mock Time-Stamping Authority" in shown.stdout
        verified = _openssl("ts", "-verify", "-in", "resp.tsr", "-queryfile", "req.tsq", "-CAfile", "root.pem",
                            "-untrusted", "tsa.pem", cwd=tmp_path)
        assert verified.returncode == 0 and "Verification: OK" in verified.stdout, verified.stdout + verified.stderr

        # The TSA certificate: issued by the root, id-kp-timeStamping only and critical.
        tsa = x509.load_pem_x509_certificate((tmp_path / "tsa.pem").read_bytes())
        eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert eku.critical and list(eku.value) == [x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]
        tsa.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes()))

        assert "/tsa" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("body", [b"garbage", b"", b"\x30\x03\x02\x01\x01", b"\x30\x80" * 50])
def test_the_tsa_rejects_garbage_with_a_timestamp_response(ca_server, body):
    with ca_server.client(authorised=False) as client:
        response = client.post("/tsa", content=body, headers={"Content-Type": "application/timestamp-query"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/timestamp-reply"
    status = TimeStampResp.load(response.content)["status"]  # asn1crypto's own cannot parse a rejection
    assert status["status"].native == "rejection" and status["fail_info"].native == {"bad_data_format"}


def test_the_tsa_refuses_a_weak_hash_and_another_media_type(ca_server, tmp_path):
    (tmp_path / "file").write_text("x")
    assert _openssl("ts", "-query", "-data", "file", "-sha1", "-out", "sha1.tsq", cwd=tmp_path).returncode == 0
    with ca_server.client(authorised=False) as client:
        response = client.post("/tsa", content=(tmp_path / "sha1.tsq").read_bytes(),
                               headers={"Content-Type": "application/timestamp-query"})
        (tmp_path / "sha1.tsr").write_bytes(response.content)
        shown = _openssl("ts", "-reply", "-in", "sha1.tsr", "-text", cwd=tmp_path)
        assert "Status: Rejected" in shown.stdout, shown.stdout
        assert "unrecognized or unsupported algorithm" in shown.stdout, shown.stdout

        wrong = client.post("/tsa", content=b"anything", headers={"Content-Type": "application/octet-stream"})
        assert wrong.status_code == 415 and wrong.headers["content-type"] == "application/problem+json"


def test_a_store_made_before_the_tsa_answers_404_and_signing_says_so(own_ca_server, own_phone, document, tmp_path):
    ca_server, phone = own_ca_server, own_phone  # deletes the CA's TSA and restarts it: a CA of its own
    ca_server.stop()
    with ca_server.store.transaction() as session:
        session.execute(delete(Authority).where(Authority.name == "tsa"))
    ca_server.start()

    response = httpx.post(f"{ca_server.url}/tsa", content=b"x", headers={"Content-Type": "application/timestamp-query"})
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert "no time-stamping authority" in response.json()["detail"]

    password = PasswordAsked()
    with pytest.raises(AppError, match=rf"no signature timestamp from {ca_server.url}/tsa: .*404"):
        flows.sign_pdf(phone, document, tmp_path / "signed.pdf", password)
    assert password.calls == 0 and not (tmp_path / "signed.pdf").exists()
    # Without a timestamp it still signs (and says so).
    assert flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked(), timestamp=False).tsa is None
