"""The lifecycle service over HTTP, against the real CA process: registration, supersede,
revocation, reset authorisation, uninstall, stale certificate, card cascade, and durability
while the CA is down. Each outcome is checked at the CA itself (its API and OCSP)."""
from __future__ import annotations

import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.service_helpers import PhoneForTests, make_card, proof_for, read, register

pytestmark = pytest.mark.e2e


def ocsp_status(ca_url: str, certificate_pem: str) -> str:
    """The CA's OCSP verdict: good, revoked:<reason>."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    issuer_name = "sign" if "phone-signature" in cert.subject.rfc4514_string() else "auth"
    issuer = x509.load_der_x509_certificate(httpx.get(f"{ca_url}/ca/{issuer_name}.cer").content)
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(httpx.post(
        f"{ca_url}/ocsp", content=request.public_bytes(serialization.Encoding.DER)).content)
    if answer.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return "good"
    return f"revoked:{answer.revocation_reason.value if answer.revocation_reason else 'unspecified'}"


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_register_revoke_and_supersede(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings)
    old_phone, new_phone = PhoneForTests(), PhoneForTests()
    with service_server.client() as client:
        first = register(client, card, old_phone)
        assert first.status_code == 201, first.text
        document = first.json()
        assert document["state"] == "active" and document["ca_sync"] == "done"
        pems = {c["kind"]: c["certificate_pem"] for c in document["certificates"]}
        assert all(ocsp_status(ca_server.url, pem) == "good" for pem in pems.values())

        second = register(client, card, new_phone)
        assert second.status_code == 201, second.text
        assert second.json()["superseded"] == [old_phone.registration_id]
        old = read(client, old_phone)
        assert old["state"] == "revoked" and old["reason"] == "superseded"
        assert all(ocsp_status(ca_server.url, pem) == "revoked:superseded" for pem in pems.values())

        revoked = client.post(f"/api/v1/registrations/{new_phone.registration_id}/revoke",
                              json=proof_for(client, "revoke", new_phone, new_phone.signature_key))
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked"
        for c in revoked.json()["certificates"]:
            assert ocsp_status(ca_server.url, c["certificate_pem"]) == "revoked:cessationOfOperation"


def test_revocation_survives_a_ca_outage(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings)
    phone = PhoneForTests()
    with service_server.client() as client:
        assert register(client, card, phone).status_code == 201
        body = proof_for(client, "revoke", phone, phone.signature_key)
        ca_server.stop()
        try:
            accepted = client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["state"] == "revoked" and accepted.json()["ca_sync"] == "pending"
        finally:
            ca_server.start()
        done = wait_for(lambda: (d := read(client, phone))
                        ["ca_sync"] == "done" and d)
        for c in done["certificates"]:
            assert ocsp_status(ca_server.url, c["certificate_pem"]) == "revoked:cessationOfOperation"
