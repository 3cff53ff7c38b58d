"""The My Number card as the owner's master key (issue 15, item 1): from any phone or PC with a card
reader, here a ``jpki-app --home`` that holds no registration, the card alone (card password, card
good at OCSP) lists the person's registrations and revokes or suspends any of them without the phone;
lifting still needs the card and the phone. Through the real service and CA processes over HTTP, the
CA's answers judged by the ``openssl ocsp`` CLI; on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import Result
from typer.testing import CliRunner

from app_client.cli import app
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from ca_mock.certificates.service import change_status
from ca_mock.certificates.status_rules import StatusAction
from jpki_common.owner_proof import proof_message, sign_message
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.helpers import openssl_ocsp
from tests.service_helpers import CardForTests, PhoneForTests, make_card, register
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique, unique_person  # noqa: F401 (a fixture)
from tests.test_service_proofs import LIFECYCLE_TABLES, assert_problem

pytestmark = pytest.mark.e2e

# One CA and one service per backend for the module: each test's owner is a person of its own (the listing shows
# all of a person's registrations), as is each stranger, and the CA is changed only under operation ids of its own.
ca_server, service_server = shared_servers("card-master-key")

LISTED = {"case_reference", "device_model", "registered_at", "state", "ca_sync"}


def _other_person() -> dict[str, str]:
    """Another person than the owner, of this test alone (no other test's registrations are theirs either)."""
    return {**unique_person("佐藤 花子"), "gender": "2"}


@pytest.fixture
def owner_person() -> dict[str, str]:
    """The owner: a person of this test's own, whose registrations no other test on the shared service makes."""
    return unique_person()


@pytest.fixture
def card_file(ca_server, owner_person: dict, tmp_path: Path) -> Path:
    """The owner's card in the simulated reader (``jpki-ca card issue``)."""
    return _card_file(ca_server, tmp_path / "card.json", owner_person)


def _card_file(ca_server, path: Path, person: dict) -> Path:
    write_card(issue_card(ca_server.store, ca_server.settings, PersonIn(**person), CARD_PASSWORD, CARD_PIN), path)
    return path


@pytest.fixture
def app_cli(service_server, tmp_path: Path):
    """``jpki-app --home <tmp>/<home> --service <the service>``, secrets from the environment as scripts give them."""
    runner = CliRunner()

    def run(home: str, *args: str, card_password: str = CARD_PASSWORD) -> Result:
        env = {"JPKI_CARD_PASSWORD": card_password, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN}
        result = runner.invoke(app, ["--home", str(tmp_path / home), "--service", service_server.url, *args], env=env)
        assert card_password not in result.output
        return result
    return run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def _register_phone(app_cli, card_file: Path, home: str, model: str) -> dict:
    """A phone registered with the card; its registration document as its ``status --json`` shows it."""
    _ok(app_cli(home, "register", "--card", str(card_file), "--model", model))
    return json.loads(_ok(app_cli(home, "status", "--json")))["registration"]


def _pems(document: dict) -> dict[str, str]:
    return {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}


def _listed(app_cli, card_file: Path, home: str = "pc") -> list[dict]:
    return json.loads(_ok(app_cli(home, "card", "list", "--card", str(card_file), "--json")))


def _rows(database_url: str, query: str, **values) -> list[tuple]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query), values)]
    finally:
        engine.dispose()


def _last_event(service_server, case_reference: str) -> tuple:
    return _rows(service_server.database_url,
                 "SELECT e.event, e.actor, e.from_state, e.to_state, e.note FROM registration_events e "
                 "JOIN registrations r ON r.id = e.registration_id WHERE r.case_reference = :reference "
                 "ORDER BY e.id DESC", reference=case_reference)[0]


def _notices(service_server, case_reference: str) -> list[tuple]:
    return _rows(service_server.database_url, "SELECT event, actor FROM owner_notifications "
                 "WHERE case_reference = :reference ORDER BY id", reference=case_reference)


# Where each lifecycle table names the registration (or the person) a row belongs to.
_OWNING_COLUMN = {"registrations": "id", "phone_certificates": "registration_id",
                  "registration_events": "registration_id", "ca_commands": "registration_id", "people": "person_key"}


def _made_before(database_url: str) -> set[tuple[str, str]]:
    """The registrations and people already on the shared service (other tests'), as (column, value) pairs."""
    return ({("registration", r) for (r,) in _rows(database_url, "SELECT id FROM registrations")}
            | {("person", p) for (p,) in _rows(database_url, "SELECT person_key FROM people")})


def _snapshot(database_url: str, made_before: set[tuple[str, str]]) -> dict[str, str]:
    """tests/test_service_proofs.py's ``snapshot`` of the lifecycle tables, less the rows of the registrations and
    people in ``made_before`` (other tests' on the shared service, whose background work may still change them):
    every row this test made, and any row that appears."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            snapshot = {}
            for table in LIFECYCLE_TABLES:
                column = _OWNING_COLUMN[table]
                kind = "person" if column == "person_key" else "registration"
                rows = [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))
                        if (kind, row._mapping[column]) not in made_before]
                snapshot[table] = hashlib.sha256(repr(sorted(rows, key=repr)).encode()).hexdigest()
            return snapshot
    finally:
        engine.dispose()


def test_the_owner_revokes_an_old_phone_with_the_card_alone(app_cli, card_file, ca_server, service_server,
                                                             tmp_path):
    old = _register_phone(app_cli, card_file, "old-phone", "Pixel 7")
    reference = old["case_reference"]
    for pem in _pems(old).values():
        assert openssl_ocsp(ca_server.url, pem, tmp_path / "ocsp") == "good"

    # At a PC with a card reader: this home holds no registration of its own.
    listing = _ok(app_cli("pc", "card", "list", "--card", str(card_file)))
    assert re.search(rf"^{reference} +Pixel 7 +\d{{4}}-\d\d-\d\d \d\d:\d\d JST +active +done$", listing, re.M), listing
    revoked = _ok(app_cli("pc", "card", "revoke", reference.lower().replace("-", " "), "--card", str(card_file)))
    assert f"revoked with the card: {reference} (Pixel 7) is revoked" in revoked
    assert "the CA has it (ca_sync done)" in revoked

    for pem in _pems(old).values():
        assert openssl_ocsp(ca_server.url, pem, tmp_path / "ocsp") == "revoked:cessationOfOperation"
    assert _listed(app_cli, card_file) == [{"case_reference": reference, "device_model": "Pixel 7",
                                            "registered_at": old["created_at"], "state": "revoked", "ca_sync": "done"}]
    # Recorded as the owner's act, with the card; the owner is told.
    assert _last_event(service_server, reference) == ("owner-card-revoked", "owner", "active", "revoked",
                                                      "with the card")
    assert _notices(service_server, reference) == [("owner-card-revoked", "owner")]
    assert not (tmp_path / "pc" / "se").exists() and not (tmp_path / "pc" / "app").exists()
    # The old phone, when next online, finds it revoked and deletes its copy.
    assert "its copy in this phone's secure element was deleted" in _ok(app_cli("old-phone", "status"))


def test_the_owner_suspends_a_lost_phone_with_the_card_and_lifts_it_with_card_and_phone(
        app_cli, card_file, ca_server, service_server, tmp_path):
    phone = _register_phone(app_cli, card_file, "phone", "Galaxy S24")
    reference, before = phone["case_reference"], _pems(phone)

    suspended = _ok(app_cli("pc", "card", "suspend", reference, "--card", str(card_file), "--reason", "lost"))
    assert f"suspended with the card: {reference} (Galaxy S24) is suspended" in suspended
    assert "jpki-app lift-suspension --card FILE" in suspended
    for pem in before.values():
        assert openssl_ocsp(ca_server.url, pem, tmp_path / "ocsp") == "revoked:certificateHold"
    assert [r["state"] for r in _listed(app_cli, card_file)] == ["suspended"]
    assert _last_event(service_server, reference) == ("owner-suspended", "owner", "active", "suspended",
                                                      "with the card")
    assert _notices(service_server, reference) == [("owner-suspended", "owner")]
    status = json.loads(_ok(app_cli("phone", "status", "--json")))["registration"]
    assert (status["state"], status["reason"], status["last_change"]["actor"]) == ("suspended", "lost", "owner")
    assert re.search(r"SUSPENDED with your My Number card \(reason: lost\) on [0-9-]+ [0-9:]+ JST\. Lift it with: "
                     r"jpki-app lift-suspension --card FILE", _ok(app_cli("phone", "status")))

    # Found again: the card alone cannot lift (there is no such request); the card and the phone do.
    lifted = _ok(app_cli("phone", "lift-suspension", "--card", str(card_file)))
    assert f"lifted the suspension: registration {phone['registration_id']} is active" in lifted
    after = _pems(json.loads(_ok(app_cli("phone", "status", "--json")))["registration"])
    assert openssl_ocsp(ca_server.url, after["authentication"], tmp_path / "ocsp") == "good"
    assert after["authentication"] == before["authentication"]  # reinstated, same certificate
    assert openssl_ocsp(ca_server.url, after["signature"], tmp_path / "ocsp") == "good"
    assert openssl_ocsp(ca_server.url, before["signature"], tmp_path / "ocsp") == "revoked:superseded"
    assert [(r["state"], r["ca_sync"]) for r in _listed(app_cli, card_file)] == [("active", "done")]


def test_the_listing_shows_the_persons_registrations_and_nothing_more(app_cli, card_file, owner_person, ca_server,
                                                                      service_server, tmp_path):
    first = _register_phone(app_cli, card_file, "first", "iPhone 15")
    second = _register_phone(app_cli, card_file, "second", "Pixel 9")  # supersedes the first
    # A renewed card of the same person (new keys, new serial) finds them too.
    renewed = _card_file(ca_server, tmp_path / "renewed.json", owner_person)
    for card in (card_file, renewed):
        listing = _listed(app_cli, card)
        assert [(r["case_reference"], r["device_model"], r["state"]) for r in listing] == [
            (first["case_reference"], "iPhone 15", "revoked"), (second["case_reference"], "Pixel 9", "active")]
        assert all(set(r) == LISTED and r["ca_sync"] == "done" for r in listing)
    text = _ok(app_cli("pc", "card", "list", "--card", str(card_file)))
    assert text.splitlines()[0].split() == ["case", "reference", "phone", "model", "registered", "on", "state", "ca",
                                            "sync"]
    for hidden in (first["registration_id"], second["registration_id"], *(c["serial"] for c in second["certificates"])):
        assert hidden not in text
    # Another person's card lists none of them.
    stranger = _card_file(ca_server, tmp_path / "stranger.json", _other_person())
    assert _listed(app_cli, stranger) == []
    assert "the service holds no registration of the person this card names" in _ok(
        app_cli("pc", "card", "list", "--card", str(stranger)))


# -- bad input: a clear 4xx problem, nothing changes ---------------------------------------------------

def _challenge(client: httpx.Client, action: str, case_reference: str | None = None) -> dict:
    body = {"action": action, **({"case_reference": case_reference} if case_reference else {})}
    response = client.post("/api/v1/challenges", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _proof(challenge: dict, card: CardForTests, target: str | None = None) -> dict:
    """The card's proof over ``challenge``; ``target``: sign another case reference than the challenge's."""
    message = proof_message(challenge["action"], target or challenge["case_reference"], challenge["challenge_id"],
                            challenge["nonce"])
    return {"proof": {"challenge_id": challenge["challenge_id"], "signature": sign_message(card.key, message),
                      "card_certificate_pem": card.certificate_pem}}


def _act(client: httpx.Client, card: CardForTests, act: str, reference: str, **change) -> httpx.Response:
    """Revoke or suspend ``reference`` with ``card``; ``change``: what to do otherwise (``challenge``: spend this
    one; ``target``: sign another reference)."""
    challenge = change.get("challenge") or _challenge(client, f"card-{act}", reference)
    return client.post(f"/api/v1/card/registrations/{reference}/{act}", json=_proof(challenge, card,
                                                                                     change.get("target")))


def test_refused_requests_change_nothing(app_cli, card_file, owner_person, ca_server, service_server, tmp_path):
    made_before = _made_before(service_server.database_url)  # other tests' on the shared service
    owner = make_card(ca_server.store, ca_server.settings, owner_person)  # the same person, a card of its own
    old_phone, phone = PhoneForTests(), PhoneForTests()
    with service_server.client() as client:
        assert register(client, owner, old_phone).status_code == 201
        assert register(client, owner, phone).status_code == 201  # supersedes the old phone (revoked)
    target, other = phone.case_reference, old_phone.case_reference
    database = service_server.database_url
    before = _snapshot(database, made_before)

    def unchanged() -> None:
        assert _snapshot(database, made_before) == before

    with service_server.client() as client:
        # A proof for another registration, for another act, or signed over another reference.
        for_other = _challenge(client, "card-revoke", other)
        assert_problem(_act(client, owner, "revoke", target, challenge=for_other), 400, "challenge-mismatch")
        suspend_challenge = _challenge(client, "card-suspend", target)
        assert_problem(_act(client, owner, "revoke", target, challenge=suspend_challenge), 400, "challenge-mismatch")
        list_challenge = _challenge(client, "card-list")
        assert_problem(_act(client, owner, "revoke", target, challenge=list_challenge), 400, "challenge-mismatch")
        problem = assert_problem(_act(client, owner, "revoke", target, target=other), 403, "proof-rejected")
        assert problem["detail"] == "the card did not sign this challenge"
        unchanged()

        # Another person's card cannot act on this person's registration: 404, as an unknown reference.
        stranger = make_card(ca_server.store, ca_server.settings, _other_person())
        refused = assert_problem(_act(client, stranger, "revoke", target), 404, "registration-unknown")
        unknown = assert_problem(_act(client, owner, "revoke", "ZZZZ-ZZZZ-ZZZZ"), 404, "registration-unknown")
        assert refused["detail"].replace(target, "?") == unknown["detail"].replace("ZZZZ-ZZZZ-ZZZZ", "?")
        assert refused["field"] == unknown["field"] == "case_reference"
        assert_problem(_act(client, stranger, "suspend", target), 404, "registration-unknown")
        unchanged()

        # Malformed requests.
        malformed = client.post("/api/v1/challenges", json={"action": "card-revoke", "case_reference": "ABC!"})
        assert assert_problem(malformed, 422, "invalid-request")["field"] == "case_reference"
        by_id = client.post("/api/v1/challenges",
                            json={"action": "card-revoke", "registration_id": phone.registration_id})
        assert assert_problem(by_id, 422, "invalid-request")["field"] == "registration_id"
        no_target = client.post("/api/v1/challenges", json={"action": "card-suspend"})
        assert assert_problem(no_target, 422, "invalid-request")["field"] == "case_reference"
        assert assert_problem(client.post("/api/v1/card/registrations/ABC!/revoke",
                                          json=_proof(_challenge(client, "card-revoke", target), owner)),
                              422, "invalid-request")["field"] == "case_reference"
        no_card = _proof(_challenge(client, "card-list"), owner)
        del no_card["proof"]["card_certificate_pem"]
        assert assert_problem(client.post("/api/v1/card/registrations", json=no_card),
                              422, "invalid-request")["field"] == "proof.card_certificate_pem"
        # Not possible in the registration's state: the superseded phone is revoked for good.
        assert_problem(_act(client, owner, "suspend", other), 409, "state-conflict")
        unchanged()

        # A renewed card of the same person acts too, but not once the CA has revoked it.
        renewed = make_card(ca_server.store, ca_server.settings, owner_person)
        change_status(ca_server.store, ca_server.settings, renewed.serial, StatusAction.REVOKE, unique("moved-1"),
                      "affiliationChanged")
        problem = assert_problem(_act(client, renewed, "suspend", target), 403, "proof-rejected")
        assert problem["detail"] == "the card certificate is revoked at the CA (affiliationChanged)"
        unchanged()

    # The same refusals as the owner meets them in the app, each on one line.
    revoked_card = tmp_path / "revoked.json"
    _card_file(ca_server, revoked_card, owner_person)
    serial = json.loads(revoked_card.read_text())["signature"]["serial"]
    change_status(ca_server.store, ca_server.settings, serial, StatusAction.REVOKE, unique("moved-2"),
                  "affiliationChanged")
    refused = app_cli("pc", "card", "list", "--card", str(revoked_card))
    assert refused.exit_code == 1
    assert ("error: the service did not accept the card's proof (the service said: the card certificate is revoked "
            "at the CA (affiliationChanged))") in refused.output
    wrong = app_cli("pc", "card", "revoke", target, "--card", str(card_file), card_password="WRONG2CARD")
    assert wrong.exit_code == 1 and "error: wrong card signature password: 4 tries left" in wrong.output
    unknown = app_cli("pc", "card", "suspend", "ZZZZ-ZZZZ-ZZZZ", "--card", str(card_file))
    assert unknown.exit_code == 1
    assert ("error: no registration of the person this card names has this case reference: check it with "
            "`jpki-app card list`") in unknown.output
    unchanged()
    with service_server.client() as client:
        current = client.get(f"/api/v1/registrations/{phone.registration_id}",
                             headers={"Authorization": f"Bearer {phone.owner_token}"}).json()
    assert current["state"] == "active"
    for pem in _pems(current).values():
        assert openssl_ocsp(ca_server.url, pem, tmp_path / "ocsp") == "good"
