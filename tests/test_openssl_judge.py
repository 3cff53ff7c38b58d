"""The mock CA judged by an independent implementation: the ``openssl`` CLI.

A real ``jpki-ca serve`` process answers over HTTP; openssl fetches nothing from our code but
the bytes the CA publishes, and decides on its own. One CA per backend for the module (conftest's is one
per test): each test writes under operation ids of its own (``unique``) and judges only its own
certificates' entries in the CRLs the tests share.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import issue_body
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e
ca_server = shared_servers("openssl-judge")[0]


def openssl(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def published(ca_server, tmp_path: Path):
    """Chain files fetched from the CA's caIssuers URLs, as a relying party would get them."""
    files = {}
    for name in ("root", "sign", "auth"):
        der = httpx.get(f"{ca_server.url}/ca/{name}.cer").content
        path = tmp_path / f"{name}.pem"
        path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM))
        files[name] = path
    return files


def _issue(client: httpx.Client, tmp_path: Path, profile: str, op: str, **kw) -> tuple[dict, Path]:
    response = client.post("/api/v1/certificates", json=issue_body(profile, unique(op), **kw))
    assert response.status_code == 201, response.text
    issued = response.json()
    path = tmp_path / f"{op}.pem"
    path.write_text(issued["certificate_pem"])
    return issued, path


def _crl(ca_server, tmp_path: Path, name: str, delta: bool = False) -> Path:
    response = httpx.get(f"{ca_server.url}/crl/{name}{'-delta' if delta else ''}.crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    path = tmp_path / f"{name}{'-delta' if delta else ''}-{len(list(tmp_path.iterdir()))}.crl.pem"
    crl = x509.load_der_x509_crl(response.content)
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_openssl_verify_with_crl_check(ca_server, published, tmp_path):
    with ca_server.client(admin=True) as client:
        card, card_pem = _issue(client, tmp_path, "card-signature", "card")
        good, good_pem = _issue(client, tmp_path, "phone-signature", "good", card_serial=card["serial"])
        revoked, revoked_pem = _issue(client, tmp_path, "phone-signature", "rev", card_serial=card["serial"])
        held, held_pem = _issue(client, tmp_path, "phone-signature", "held", card_serial=card["serial"])
        assert client.post(f"/api/v1/certificates/{revoked['serial']}/revoke",
                           json={"operation_id": unique("r1"), "reason": "keyCompromise"}).status_code == 200
        assert client.post(f"/api/v1/certificates/{held['serial']}/hold",
                           json={"operation_id": unique("h1")}).status_code == 200

    crl = _crl(ca_server, tmp_path, "sign")
    root_crl = _crl(ca_server, tmp_path, "root")
    base = ["verify", "-crl_check", "-CAfile", published["root"], "-untrusted", published["sign"], "-CRLfile", crl]
    ok = openssl(*base, good_pem)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr

    for pem in (revoked_pem, held_pem):
        refused = openssl(*base, pem)
        assert refused.returncode != 0
        assert "error 23" in refused.stdout + refused.stderr and "revoked" in refused.stdout + refused.stderr

    # The whole chain, including the root's own CRL.
    full = openssl("verify", "-crl_check_all", "-CAfile", published["root"], "-untrusted", published["sign"],
                   "-CRLfile", crl, "-CRLfile", root_crl, good_pem)
    assert full.returncode == 0, full.stdout + full.stderr


def _ocsp(ca_server, published, cert_pem: Path, issuer: str, *extra: str) -> str:
    chain = published["root"].parent / "chain.pem"
    chain.write_bytes(published["root"].read_bytes() + published[issuer].read_bytes())
    result = openssl("ocsp", "-issuer", published[issuer], *extra, "-cert", cert_pem,
                     "-url", f"{ca_server.url}/ocsp", "-CAfile", chain, "-resp_text")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Response verify OK" in result.stderr + result.stdout, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("hash_option", [(), ("-sha256",)], ids=["sha1-certid", "sha256-certid"])
def test_openssl_ocsp_good_revoked_held(ca_server, published, tmp_path, hash_option):
    with ca_server.client(admin=True) as client:
        card, _ = _issue(client, tmp_path, "card-signature", "card")
        good, good_pem = _issue(client, tmp_path, "phone-authentication", "good", card_serial=card["serial"])
        revoked, revoked_pem = _issue(client, tmp_path, "phone-authentication", "rev", card_serial=card["serial"])
        held, held_pem = _issue(client, tmp_path, "phone-authentication", "held", card_serial=card["serial"])
        client.post(f"/api/v1/certificates/{revoked['serial']}/revoke",
                    json={"operation_id": unique("r1"), "reason": "superseded"}).raise_for_status()
        client.post(f"/api/v1/certificates/{held['serial']}/hold",
                    json={"operation_id": unique("h1")}).raise_for_status()

    out = _ocsp(ca_server, published, good_pem, "auth", *hash_option)
    assert f"{good_pem}: good" in out

    out = _ocsp(ca_server, published, revoked_pem, "auth", *hash_option)
    assert f"{revoked_pem}: revoked" in out and "Reason: superseded" in out

    out = _ocsp(ca_server, published, held_pem, "auth", *hash_option)
    assert f"{held_pem}: revoked" in out and "Reason: certificateHold" in out

    # Released: good again at once.
    with ca_server.client() as client:
        client.post(f"/api/v1/certificates/{held['serial']}/release",
                    json={"operation_id": unique("rel1")}).raise_for_status()
    out = _ocsp(ca_server, published, held_pem, "auth", *hash_option)
    assert f"{held_pem}: good" in out


def test_openssl_ocsp_without_nonce_uses_prepared_answer(ca_server, published, tmp_path):
    with ca_server.client(admin=True) as client:
        card, card_pem = _issue(client, tmp_path, "card-signature", "card")
    first = _ocsp(ca_server, published, card_pem, "sign", "-no_nonce")
    second = _ocsp(ca_server, published, card_pem, "sign", "-no_nonce")
    assert f"{card_pem}: good" in first
    # A pre-produced response: identical bytes, hence the same producedAt, twice.
    produced = [line for line in first.splitlines() if "Produced At" in line]
    assert produced and produced == [line for line in second.splitlines() if "Produced At" in line]


def _entry(text: str, serial: str) -> str:
    """The lines ``openssl crl -text`` prints for the entry of ``serial`` (hex), from its serial number to the
    next entry's."""
    blocks = text.split("Serial Number:")[1:]
    found = [block for block in blocks
             if block.split()[0].replace(":", "").upper().lstrip("0") == serial.upper().lstrip("0")]
    assert len(found) == 1, (serial, text)
    return found[0]


def test_openssl_parses_full_and_delta_crl_with_remove_from_crl(ca_server, published, tmp_path):
    with ca_server.client(admin=True) as client:
        card, _ = _issue(client, tmp_path, "card-signature", "card")
        phone, _ = _issue(client, tmp_path, "phone-authentication", "p", card_serial=card["serial"])
        other, _ = _issue(client, tmp_path, "phone-authentication", "q", card_serial=card["serial"])
        client.post(f"/api/v1/certificates/{phone['serial']}/hold",
                    json={"operation_id": unique("h")}).raise_for_status()
        client.post(f"/api/v1/certificates/{other['serial']}/revoke",
                    json={"operation_id": unique("r"), "reason": "cessationOfOperation",
                          "invalidity_date": "2026-01-01T00:00:00Z"}).raise_for_status()
        full_before = _crl(ca_server, tmp_path, "auth")
        client.post(f"/api/v1/certificates/{phone['serial']}/release",
                    json={"operation_id": unique("rel")}).raise_for_status()

    full_after = _crl(ca_server, tmp_path, "auth")
    delta = _crl(ca_server, tmp_path, "auth", delta=True)
    chain_args = ["-CAfile", published["auth"]]

    text_before = openssl("crl", "-in", full_before, "-noout", "-text", *chain_args)
    assert text_before.returncode == 0, text_before.stderr
    assert "verify OK" in text_before.stderr + text_before.stdout
    assert phone["serial"].upper() in text_before.stdout.replace(":", "").upper()
    assert "Certificate Hold" in text_before.stdout and "Invalidity Date" in text_before.stdout
    # The CRL is shared with the module's other tests: the hold and the invalidity date are this test's entries'.
    assert "Certificate Hold" in _entry(text_before.stdout, phone["serial"]), text_before.stdout
    other_entry = _entry(text_before.stdout, other["serial"])
    assert "Cessation Of Operation" in other_entry and "Invalidity Date" in other_entry, other_entry

    text_after = openssl("crl", "-in", full_after, "-noout", "-text", *chain_args)
    assert text_after.returncode == 0 and phone["serial"].upper() not in text_after.stdout.upper()
    assert "Freshest CRL" in text_after.stdout and "/crl/auth-delta.crl" in text_after.stdout

    text_delta = openssl("crl", "-in", delta, "-noout", "-text", *chain_args)
    assert text_delta.returncode == 0, text_delta.stderr
    assert "Delta CRL Indicator" in text_delta.stdout
    assert "Remove From CRL" in text_delta.stdout
    assert phone["serial"].upper() in text_delta.stdout.upper()
    assert "Remove From CRL" in _entry(text_delta.stdout, phone["serial"]), text_delta.stdout  # this test's release
    # Full and delta published together share their CRL number; the delta names an older-or-equal base.
    full_crl = x509.load_pem_x509_crl(full_after.read_bytes())
    delta_crl = x509.load_pem_x509_crl(delta.read_bytes())
    full_number = full_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    delta_number = delta_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    base = delta_crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    assert delta_number == full_number and base <= full_number
