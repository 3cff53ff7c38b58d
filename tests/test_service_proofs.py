"""Proof handling and the remaining owner flows of the lifecycle service, over HTTP against
the real CA process. Every refusal is a problem document and leaves the registrations, their
certificates, their history and the CA queue exactly as they were."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from tests.service_helpers import (
    PhoneForTests,
    challenge,
    make_card,
    proof_for,
    read,
    register,
    register_body,
    signed,
)
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique, unique_person  # noqa: F401 (a fixture)
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e
# One CA and one service per backend for the whole module: each test registers cards of persons of its own
# and snapshots only its own cards' rows (snapshot's ``cards``).
ca_server, service_server = shared_servers("proofs")
LIFECYCLE_TABLES = ("registrations", "phone_certificates", "registration_events", "ca_commands", "people")


# The rows of the registrations made with cards other than the test's, and of their persons (cards=...).
_OTHER_REGISTRATIONS = "SELECT id FROM registrations WHERE card_serial NOT IN :cards"
_OTHER_ROWS = {
    "registrations": f"id NOT IN ({_OTHER_REGISTRATIONS})",
    "phone_certificates": f"registration_id NOT IN ({_OTHER_REGISTRATIONS})",
    "registration_events": f"registration_id NOT IN ({_OTHER_REGISTRATIONS})",
    "ca_commands": f"registration_id NOT IN ({_OTHER_REGISTRATIONS})",
    "people": "person_key NOT IN (SELECT person_key FROM registrations WHERE card_serial NOT IN :cards)",
}


def card_serials(cards) -> list[str]:
    """The serials of ``cards`` (CardForTests), spelt as the service and the CA store them."""
    return [format(int(card.serial, 16), "x") for card in cards]


def snapshot(database_url: str, *cards) -> dict[str, str]:
    """A digest of each lifecycle table. With ``cards`` (a test's CardForTests, on servers other tests share):
    of each table less the rows of other cards' registrations (their certificates, history, CA commands and
    people), which the background worker may still be changing for the tests before."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            def rows(table: str) -> list:
                if not cards:
                    return connection.execute(sa.text(f"SELECT * FROM {table}")).all()
                query = sa.text(f"SELECT * FROM {table} WHERE {_OTHER_ROWS[table]}").bindparams(
                    sa.bindparam("cards", expanding=True))
                return connection.execute(query, {"cards": card_serials(cards)}).all()

            return {table: hashlib.sha256(repr(sorted(map(tuple, rows(table)), key=repr)).encode()).hexdigest()
                    for table in LIFECYCLE_TABLES}
    finally:
        engine.dispose()


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith(slug) and problem["detail"], problem
    return problem


@pytest.fixture
def registered(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    phone = PhoneForTests()
    client = service_server.client()
    assert register(client, card, phone).status_code == 201
    yield card, phone, client
    client.close()


def test_replayed_challenge_is_refused_and_changes_nothing(service_server, registered):
    card, phone, client = registered
    body = proof_for(client, "reset-password", phone, card.key)
    body["proof"]["card_certificate_pem"] = card.certificate_pem
    url = f"/api/v1/registrations/{phone.registration_id}/reset-password"
    assert client.post(url, json=body).status_code == 200
    before = snapshot(service_server.database_url, card)
    assert_problem(client.post(url, json=body), 409, "challenge-used")
    assert snapshot(service_server.database_url, card) == before


def test_expired_challenge(service_server, registered):
    """An expired challenge leaves the table at the background worker's next round; spent after that, it
    meets challenge-unknown saying so (spent before it, challenge-expired: test_owner_lockout.py)."""
    card, phone, client = registered
    body = proof_for(client, "revoke", phone, phone.signature_key)
    engine = sa.create_engine(service_server.database_url)

    def present() -> bool:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM challenges WHERE id = :i"),
                                      {"i": body["proof"]["challenge_id"]}).scalar_one() == 1

    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE challenges SET expires_at = :t WHERE id = :i"),
                           {"t": dt.datetime(2020, 1, 1), "i": body["proof"]["challenge_id"]})
    wait_for(lambda: not present())
    engine.dispose()
    before = snapshot(service_server.database_url, card)
    problem = assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body),
                             404, "challenge-unknown")
    assert "expired and removed" in problem["detail"]
    assert snapshot(service_server.database_url, card) == before


def test_proof_by_another_registrations_key(ca_server, service_server, registered):
    card, phone, client = registered
    stranger = PhoneForTests()
    other_card = make_card(ca_server.store, ca_server.settings, unique_person("佐藤 花子") | {"gender": "2"})
    assert register(client, other_card, stranger).status_code == 201
    body = proof_for(client, "revoke", phone, stranger.signature_key)  # right challenge, wrong key
    before = snapshot(service_server.database_url, card, other_card)
    problem = assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body),
                             403, "proof-rejected")
    assert "phone signature key" in problem["detail"]
    assert snapshot(service_server.database_url, card, other_card) == before
    # The password-less device key cannot revoke either: revocation needs the signature key.
    body = proof_for(client, "revoke", phone, phone.device_key)
    assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body),
                   403, "proof-rejected")


def test_challenge_for_another_action_or_registration(ca_server, service_server, registered):
    card, phone, client = registered
    uninstall_challenge = challenge(client, "uninstall", phone.registration_id)
    body = {"proof": {"challenge_id": uninstall_challenge["challenge_id"],
                      "signature": signed(uninstall_challenge, phone.signature_key)}}
    before = snapshot(service_server.database_url, card)
    assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke", json=body),
                   400, "challenge-mismatch")
    assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke",
                               json={"proof": {"challenge_id": "f" * 32, "signature": "AAAA"}}),
                   404, "challenge-unknown")
    assert snapshot(service_server.database_url, card) == before


def test_reset_needs_the_card_that_registered(ca_server, service_server, registered):
    card, phone, client = registered
    other = make_card(ca_server.store, ca_server.settings, unique_person("鈴木 一郎"))
    body = proof_for(client, "reset-password", phone, other.key)
    body["proof"]["card_certificate_pem"] = other.certificate_pem
    before = snapshot(service_server.database_url, card, other)
    problem = assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/reset-password",
                                         json=body), 403, "proof-rejected")
    assert "not the one that registered" in problem["detail"]
    assert snapshot(service_server.database_url, card, other) == before


def test_revoked_card_cannot_register(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    with ca_server.client(admin=True) as ca:
        ca.post(f"/api/v1/certificates/{card.serial}/revoke",
                json={"operation_id": unique("move"), "reason": "affiliationChanged"}).raise_for_status()
    with service_server.client() as client:
        before = snapshot(service_server.database_url, card)
        problem = assert_problem(client.post("/api/v1/registrations",
                                             json=register_body(client, card, PhoneForTests())),
                                 403, "proof-rejected")
        assert "revoked" in problem["detail"]
        assert snapshot(service_server.database_url, card) == before


def test_malformed_registration_input(ca_server, service_server):
    card = make_card(ca_server.store, ca_server.settings, unique_person())
    with service_server.client() as client:
        before = snapshot(service_server.database_url, card)
        body = register_body(client, card, PhoneForTests())
        body["signature_csr_pem"] = "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----"
        problem = assert_problem(client.post("/api/v1/registrations", json=body), 422, "invalid-request")
        assert problem["field"] == "signature_csr_pem"
        assert_problem(client.post("/api/v1/registrations", json={"proof": {}}), 422, "invalid-request")
        assert_problem(client.get("/api/v1/registrations/not-an-id"), 422, "invalid-request")
        assert_problem(client.get("/api/v1/registrations/" + "0" * 32), 401, "owner-token-missing")
        assert_problem(client.get("/api/v1/registrations/" + "0" * 32, headers={"Authorization": "Bearer x"}), 404,
                       "registration-unknown")
        assert_problem(client.post("/api/v1/registrations", content=b"{" * 70_000,
                                   headers={"content-type": "application/json"}), 413, "body-too-large")
        assert snapshot(service_server.database_url, card) == before


def test_uninstall_expires_and_stale_notice_on_a_dead_registration(ca_server, service_server, registered):
    card, phone, client = registered
    done = client.post(f"/api/v1/registrations/{phone.registration_id}/uninstall",
                       json=proof_for(client, "uninstall", phone, phone.device_key))
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "expired" and done.json()["reason"] == "uninstalled"
    for c in done.json()["certificates"]:
        assert ocsp_status(ca_server.url, c["certificate_pem"]) == "revoked:cessationOfOperation"
    # A later stale-certificate notice (reinstall) is answered, and changes nothing.
    before = snapshot(service_server.database_url, card)
    again = client.post(f"/api/v1/registrations/{phone.registration_id}/stale-certificate",
                        json=proof_for(client, "stale-certificate", phone, phone.device_key))
    assert again.status_code == 200 and again.json()["state"] == "expired"
    assert snapshot(service_server.database_url, card) == before
    # And the owner cannot revoke what is already expired.
    assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/revoke",
                               json=proof_for(client, "revoke", phone, phone.signature_key)), 409, "state-conflict")


def test_stale_certificate_on_a_live_registration_revokes_it(ca_server, service_server, registered):
    _card, phone, client = registered
    done = client.post(f"/api/v1/registrations/{phone.registration_id}/stale-certificate",
                       json=proof_for(client, "stale-certificate", phone, phone.device_key))
    assert done.status_code == 200 and done.json()["state"] == "expired"
    assert done.json()["reason"] == "stale-certificate"
    for c in done.json()["certificates"]:
        assert ocsp_status(ca_server.url, c["certificate_pem"]).startswith("revoked:")


def test_card_revocation_cascades_to_the_phone_signature_certificate(ca_server, service_server, registered):
    card, phone, client = registered
    with ca_server.client(admin=True) as ca:
        ca.post(f"/api/v1/certificates/{card.serial}/revoke",
                json={"operation_id": unique("moved-house"), "reason": "affiliationChanged"}).raise_for_status()

    def signature_revoked():
        document = read(client, phone)
        signature = next(c for c in document["certificates"] if c["kind"] == "signature")
        return document if signature["status"] == "revoked" and document["ca_sync"] == "done" else None

    document = wait_for(signature_revoked, timeout=30)
    assert document["state"] == "active"  # policy: only the signature certificate follows the card
    pems = {c["kind"]: c["certificate_pem"] for c in document["certificates"]}
    assert ocsp_status(ca_server.url, pems["signature"]) == "revoked:affiliationChanged"
    assert ocsp_status(ca_server.url, pems["authentication"]) == "good"
