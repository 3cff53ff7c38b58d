"""Owner proofs cover the keys they authorise (issue 12, item 1), over HTTP against the real CA.

The owner signs, with the challenge, a digest of the CSRs and the device key the request carries
(``jpki-lifecycle-proof/2``, jpki_common/owner_proof.py). A CSR or key swapped after the owner
signed is refused (403) and nothing is issued: the service writes nothing, the CA certifies
nothing, the challenge is spent. A version-1 proof (which covers no key) is refused on a request
that carries keys, and still serves one that carries none.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_common.owner_proof import (
    PROOF_VERSION,
    PROOF_VERSION_1,
    ProofChallenge,
    authorised_digest,
    proof_message,
    sign_message,
    version_accepted,
)
from tests.helpers import csr_pem
from tests.service_helpers import (
    PhoneForTests,
    challenge,
    lift_body,
    make_card,
    operator_client,
    proof_for,
    register_authorised,
    register_body,
    signed,
)
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique, unique_person  # noqa: F401 (a fixture)
from tests.test_call_centre_api import LOST
from tests.test_service_proofs import assert_problem, card_serials, registered, snapshot  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e
# One CA and one service per backend for the whole module: each test registers cards of persons of its own,
# and snapshots and counts only what its own cards have (snapshot's and ca_certificate_count's ``cards``).
ca_server, service_server = shared_servers("proof-binding")


def ca_certificate_count(ca_server, *cards) -> int:
    """The CA's certificates, less the phone certificates derived from cards other than ``cards`` (other tests'
    phones, which the service's background worker may still be certifying)."""
    engine = sa.create_engine(ca_server.settings.resolved_database_url())
    query = sa.text("SELECT count(*) FROM certificates"
                    + (" WHERE card_serial IS NULL OR card_serial IN :cards" if cards else "")
                    ).bindparams(*[sa.bindparam("cards", expanding=True)] * bool(cards))
    try:
        with engine.connect() as connection:
            return connection.execute(query, {"cards": card_serials(cards)} if cards else {}).scalar_one()
    finally:
        engine.dispose()


def challenge_used(service_server, challenge_id: str) -> bool:
    engine = sa.create_engine(service_server.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT used_at FROM challenges WHERE id = :i"),
                                      {"i": challenge_id}).scalar_one() is not None
    finally:
        engine.dispose()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def assert_nothing_issued(ca_server, service_server, response, before: dict, certificates: int, body: dict,
                          card) -> dict:
    """Refused, and nothing written or certified for ``card`` (``before``, ``certificates``: with ``card``)."""
    problem = assert_problem(response, 403, "proof-rejected")
    assert snapshot(service_server.database_url, card) == before
    assert ca_certificate_count(ca_server, card) == certificates
    assert challenge_used(service_server, body["proof"]["challenge_id"])
    return problem


# -- the digest itself -------------------------------------------------------------------------

def test_the_digest_covers_each_item_by_its_place():
    a, b, device = csr_pem(new_key()), csr_pem(new_key()), public_pem(new_key())
    digest = authorised_digest(signature_csr_pem=a, authentication_csr_pem=b, device_public_key_pem=device)
    assert len(digest) == 64 and digest == digest.lower()
    assert digest != authorised_digest(signature_csr_pem=b, authentication_csr_pem=a, device_public_key_pem=device)
    assert digest != authorised_digest(signature_csr_pem=a, authentication_csr_pem=b,
                                       device_public_key_pem=public_pem(new_key()))
    assert authorised_digest(signature_csr_pem=a) != authorised_digest(authentication_csr_pem=a)
    assert authorised_digest() == "-"
    message = proof_message("register", None, "c1", "n1", digest)
    assert message.decode().split("\n") == [PROOF_VERSION, "register", "-", "c1", "n1", digest]
    assert proof_message("revoke", "r1", "c1", "n1", version=PROOF_VERSION_1).decode().split("\n") == [
        PROOF_VERSION_1, "revoke", "r1", "c1", "n1"]
    with pytest.raises(ValueError):
        proof_message("register", None, "c1", "n1", digest, version=PROOF_VERSION_1)


def test_a_version_1_signature_is_recognised_but_not_accepted_for_keys():
    key = new_key()
    spent = ProofChallenge("register", None, "c1", "n1")  # type: ignore[arg-type]
    digest = authorised_digest(device_public_key_pem=public_pem(key))
    v1 = sign_message(key, spent.message(version=PROOF_VERSION_1))
    assert spent.signed_version(key.public_key(), digest, v1) == PROOF_VERSION_1
    assert not version_accepted(PROOF_VERSION_1, digest) and version_accepted(PROOF_VERSION_1, "-")
    assert spent.signed_version(key.public_key(), digest, sign_message(key, spent.message(digest))) == PROOF_VERSION


# -- register ----------------------------------------------------------------------------------

def test_register_with_a_csr_swapped_after_signing_issues_nothing(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    with service_server.client() as client:
        before, certificates = snapshot(service_server.database_url, card), ca_certificate_count(ca_server, card)
        for field in ("signature_csr_pem", "authentication_csr_pem"):
            body = register_body(client, card, PhoneForTests())
            body[field] = csr_pem(new_key())  # someone else's key, after the card signed
            problem = assert_nothing_issued(ca_server, service_server, client.post("/api/v1/registrations", json=body),
                                            before, certificates, body, card)
            assert "keys this request carries" in problem["detail"] and problem["field"] == "proof.signature"
        assert client.get("/api/v1/registrations/" + "0" * 32, headers={"Authorization": "Bearer x"}).status_code == 404


def test_register_with_a_swapped_device_key_is_refused(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    with service_server.client() as client:
        before, certificates = snapshot(service_server.database_url, card), ca_certificate_count(ca_server, card)
        body = register_body(client, card, PhoneForTests())
        body["device"]["device_public_key_pem"] = public_pem(new_key())
        assert_nothing_issued(ca_server, service_server, client.post("/api/v1/registrations", json=body),
                              before, certificates, body, card)


def test_register_with_a_version_1_proof_is_refused(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    with service_server.client() as client:
        before, certificates = snapshot(service_server.database_url, card), ca_certificate_count(ca_server, card)
        body = register_body(client, card, PhoneForTests())
        c = {"action": "register", "registration_id": None, "challenge_id": body["proof"]["challenge_id"]}
        nonce = _nonce(service_server, c["challenge_id"])
        body["proof"]["signature"] = signed(c | {"nonce": nonce}, card.key, version=PROOF_VERSION_1)
        problem = assert_nothing_issued(ca_server, service_server, client.post("/api/v1/registrations", json=body),
                                        before, certificates, body, card)
        assert PROOF_VERSION_1 in problem["detail"] and PROOF_VERSION in problem["detail"]


def test_the_genuine_registration_still_works(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    phone = PhoneForTests()
    with service_server.client() as client:
        body = register_body(client, card, phone)
        answer = client.post("/api/v1/registrations", json=body)
    assert answer.status_code == 201, answer.text
    assert body["proof"]["signature"]  # signed over register_authorised(body)
    assert register_authorised(body) != "-"


def _nonce(service_server, challenge_id: str) -> str:
    engine = sa.create_engine(service_server.database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT nonce FROM challenges WHERE id = :i"),
                                      {"i": challenge_id}).scalar_one()
    finally:
        engine.dispose()


# -- lift --------------------------------------------------------------------------------------

def _suspend(service_server, phone) -> None:
    with operator_client(service_server, unique("clerk-proofs"), "operator") as staff:
        answer = staff.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend", json=LOST)
        assert answer.status_code in (200, 202), answer.text


def test_lift_with_a_csr_swapped_after_signing_issues_nothing(ca_server, service_server, registered):
    card, phone, client = registered
    _suspend(service_server, phone)
    before, certificates = snapshot(service_server.database_url, card), ca_certificate_count(ca_server, card)
    url = f"/api/v1/registrations/{phone.registration_id}/lift-suspension"

    body = lift_body(client, card, phone, new_key())
    body["signature_csr_pem"] = csr_pem(new_key())  # a stranger's key, after card and phone signed
    problem = assert_nothing_issued(ca_server, service_server, client.post(url, json=body), before, certificates,
                                    body, card)
    assert problem["field"] == "proof.device_signature"

    # Device key re-signed by the thief holding the phone, the card's signature still over the owner's CSR.
    body = lift_body(client, card, phone, new_key())
    body["signature_csr_pem"] = csr_pem(new_key())
    c = {"action": "lift-suspension", "registration_id": phone.registration_id,
         "challenge_id": body["proof"]["challenge_id"], "nonce": _nonce(service_server, body["proof"]["challenge_id"])}
    body["proof"]["device_signature"] = signed(c, phone.device_key,
                                               authorised_digest(signature_csr_pem=body["signature_csr_pem"]))
    problem = assert_nothing_issued(ca_server, service_server, client.post(url, json=body), before, certificates,
                                    body, card)
    assert problem["field"] == "proof.signature" and "card" in problem["detail"]

    # A version-1 lift (both signatures over the old message) is refused by name.
    body = lift_body(client, card, phone, new_key())
    c["challenge_id"] = body["proof"]["challenge_id"]
    c["nonce"] = _nonce(service_server, c["challenge_id"])
    body["proof"]["signature"] = signed(c, card.key, version=PROOF_VERSION_1)
    body["proof"]["device_signature"] = signed(c, phone.device_key, version=PROOF_VERSION_1)
    problem = assert_nothing_issued(ca_server, service_server, client.post(url, json=body), before, certificates,
                                    body, card)
    assert PROOF_VERSION_1 in problem["detail"]

    # The genuine lift still works, and certifies the key the owner signed.
    key = new_key()
    answer = client.post(url, json=lift_body(client, card, phone, key))
    assert answer.status_code in (200, 202), answer.text
    assert answer.json()["state"] == "active"


# -- requests that carry no key ------------------------------------------------------------------

def test_a_version_1_proof_still_serves_a_request_that_carries_no_key(service_server, registered):
    _card, phone, client = registered
    body = proof_for(client, "revoke", phone, phone.signature_key)
    c = {"action": "revoke", "registration_id": phone.registration_id, "challenge_id": body["proof"]["challenge_id"],
         "nonce": _nonce(service_server, body["proof"]["challenge_id"])}
    body["proof"]["signature"] = signed(c, phone.signature_key, version=PROOF_VERSION_1)
    answer = client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body)
    assert answer.status_code in (200, 202), answer.text
    assert answer.json()["state"] == "revoked"


def test_a_keyless_request_signed_with_a_digest_is_refused(service_server, registered):
    card, phone, client = registered
    c = challenge(client, "revoke", phone.registration_id)
    before = snapshot(service_server.database_url, card)
    body = {"proof": {"challenge_id": c["challenge_id"],
                      "signature": signed(c, phone.signature_key, authorised_digest(signature_csr_pem=csr_pem(
                          new_key())))}}
    assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body),
                   403, "proof-rejected")
    assert snapshot(service_server.database_url, card) == before
