"""After the phone's registration ends (the owner's revoke, found revoked or expired by ``status``, a
stale-certificate notice), ``jpki-app status`` keeps reporting it, as the service reports it now and
whether the CA has it (``ca_sync``), until ``jpki-app forget`` or a new registration; the secure
element keeps nothing of it. Through the real service and the real CA, each its own process over HTTP.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app_client import flows
from app_client.app_data import EndedRegistration
from app_client.card_reader import CardReader
from app_client.cli import app
from app_client.errors import AppError, NotRegistered
from app_client.secure_element import KeySlot, NoKey, SecureElement
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.conftest import free_port
from tests.shared_ca import (  # noqa: F401 (fixtures)
    _fresh_keys_per_test,
    own_ca_server,
    own_service_server,
    shared_servers,
    unique_person,
)
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e

SECRETS = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN,
           "JPKI_NEW_SIGN_PASSWORD": None}


# One CA and one service for the module, on SQLite alone as this folder's tests/app_client/conftest.py has it (the
# store is not what these tests are about): each test registers with a card of its own, for a person of its own (a
# new registration supersedes the person's earlier ones), and reads and changes only its own registrations. The two
# tests that stop the CA have servers of their own (own_ca_server, own_service_server).
ca_server, service_server = shared_servers("ended-registration", backends=("sqlite",))


def _card(ca, tmp_path: Path) -> CardReader:
    path = tmp_path / "card.json"
    write_card(issue_card(ca.store, ca.settings, PersonIn(**unique_person()), CARD_PASSWORD, CARD_PIN), path)
    return CardReader(path)


@pytest.fixture
def card(ca_server, tmp_path: Path) -> CardReader:
    return _card(ca_server, tmp_path)


@pytest.fixture
def own_card(own_ca_server, tmp_path: Path) -> CardReader:
    return _card(own_ca_server, tmp_path)


def _jpki_app(service_url: str, tmp_path: Path):
    """``jpki-app`` on one phone (``<tmp>/phone``); ``service=`` points it elsewhere for one command."""
    runner = CliRunner()

    def run(*args: str, service: str | None = None):
        env = {**SECRETS, "JPKI_APP_HOME": str(tmp_path / "phone"), "JPKI_SERVICE_URL": service or service_url}
        result = runner.invoke(app, list(args), env=env)
        assert PHONE_PASSWORD not in result.output and CARD_PASSWORD not in result.output
        return result

    return run


@pytest.fixture
def jpki_app(service_server, tmp_path: Path):
    return _jpki_app(service_server.url, tmp_path)


@pytest.fixture
def own_jpki_app(own_service_server, tmp_path: Path):
    return _jpki_app(own_service_server.url, tmp_path)


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def _status(jpki_app, **kwargs) -> dict:
    return json.loads(_ok(jpki_app("status", "--json", **kwargs)))


def test_status_after_revoke_shows_the_revoked_registration_until_forget_then_register_again(
        jpki_app, card, ca_server, tmp_path):
    registered = _ok(jpki_app("register", "--card", str(card.card_file)))
    registration_id = re.search(r"registration ([0-9a-f]{32}) \(active\)", registered).group(1)
    serials = {c["kind"]: c["serial"] for c in _status(jpki_app)["registration"]["certificates"]}
    pems = {c["kind"]: c["certificate_pem"] for c in _status(jpki_app)["registration"]["certificates"]}

    revoked = _ok(jpki_app("revoke"))
    assert f"revoked: registration {registration_id} is revoked (owner-revoked)" in revoked
    assert "until you remove the record with `jpki-app forget`" in revoked

    # The secure element keeps nothing: no key can sign, not even the device key.
    phone = flows.open_phone(tmp_path / "phone")
    assert not phone.se.holds_keys() and phone.se.registration_id is None
    for slot, secret in ((KeySlot.SIGNATURE, PHONE_PASSWORD), (KeySlot.AUTHENTICATION, PHONE_PIN),
                         (KeySlot.DEVICE, None)):
        with pytest.raises(NoKey):
            phone.se.sign(slot, secret, b"x")
    with pytest.raises(NotRegistered):
        flows.login(phone, PHONE_PIN)
    # ... and the app data keeps no certificate, only the record of the end.
    app_data = json.loads((tmp_path / "phone" / "app" / "app.json").read_text())
    assert (app_data["registration_id"], app_data["suspension_code"]) == (None, None)
    assert app_data["ended"]["registration_id"] == registration_id
    assert "BEGIN" not in json.dumps(app_data["ended"])

    # The CA was up: the revocation reached it at once.
    text = _ok(jpki_app("status"))
    assert f"registration    {registration_id}\n" in text
    assert re.search(r"state           revoked \(ended on this phone: revoked by you, [0-9-]+ [0-9:]+ JST\)", text)
    assert "reason          owner-revoked" in text and "ca sync         done" in text
    for kind, serial in serials.items():
        assert re.search(rf"{kind}\s+serial {serial}\s+revoked", text), text
    assert "the CA has it (ca_sync done)" in text and "`jpki-app forget`" in text
    assert "suspension code" not in text and "in SE" not in text
    assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:cessationOfOperation"}

    document = _status(jpki_app)
    assert set(document) == {"registration", "registration_id", "suspension_code", "copy_deleted", "stored",
                             "secure_element", "ended", "checked", "check_error"}
    assert document["registration"]["state"] == "revoked" and document["registration"]["ca_sync"] == "done"
    assert document["registration_id"] == registration_id and document["checked"] is True
    assert (document["suspension_code"], document["secure_element"], document["copy_deleted"]) == (None, {}, False)
    ended = document["ended"]
    assert (ended["registration_id"], ended["state"], ended["reason"], ended["ended_by"], ended["ca_sync"],
            ended["pending_ca_operations"], ended["serials"]) == (
        registration_id, "revoked", "owner-revoked", "owner-revoke", "done", 0, serials)
    assert ended["ended_at"] <= ended["checked_at"]

    # Nothing else works on it: it has ended.
    assert "register it first" in jpki_app("revoke").stderr
    forgotten = _ok(jpki_app("forget"))
    assert f"forgot registration {registration_id} (revoked, owner-revoked)" in forgotten
    assert "did not have" not in forgotten
    assert _ok(jpki_app("status")) == "this phone holds no JPKI certificates\n"
    assert _status(jpki_app)["registration"] is None and _status(jpki_app)["ended"] is None
    assert _ok(jpki_app("forget")) == "this phone keeps no ended registration: nothing to forget\n"

    # Registering again on the same phone works as before.
    again = _ok(jpki_app("register", "--card", str(card.card_file)))
    assert "(active)" in again and registration_id not in again
    document = _status(jpki_app)
    assert document["registration"]["state"] == "active" and document["ended"] is None
    assert set(document["secure_element"]) == {"signature", "authentication"}
    refused = jpki_app("forget")
    assert refused.exit_code == 1 and "which has not ended: there is nothing to forget" in refused.stderr


def test_a_new_registration_replaces_the_record_of_an_ended_one(jpki_app, card):
    first = re.search(r"registration ([0-9a-f]{32})", _ok(jpki_app("register", "--card", str(card.card_file))))
    _ok(jpki_app("revoke"))
    assert _status(jpki_app)["ended"]["registration_id"] == first.group(1)

    _ok(jpki_app("register", "--card", str(card.card_file)))
    second = _status(jpki_app)
    assert second["ended"] is None and second["registration"]["state"] == "active"
    assert second["registration_id"] != first.group(1)
    _ok(jpki_app("revoke"))
    assert _status(jpki_app)["ended"]["registration_id"] == second["registration_id"]


def test_a_revocation_the_ca_does_not_have_yet_is_pending_then_done(own_jpki_app, own_card, own_ca_server, tmp_path):
    jpki_app, card, ca_server = own_jpki_app, own_card, own_ca_server
    _ok(jpki_app("register", "--card", str(card.card_file)))
    registration_id = _status(jpki_app)["registration_id"]

    ca_server.stop()
    try:
        revoked = _ok(jpki_app("revoke"))
        assert "will be carried to the CA" in revoked and "ca_sync pending" in revoked

        text = _ok(jpki_app("status"))
        assert re.search(r"state           revoked \(ended on this phone: revoked by you", text)
        assert re.search(r"ca sync         pending, \d+ changes? waiting \(recorded here, not yet at the CA",
                         text), text
        assert "the CA does not have it yet (ca_sync pending)" in text
        document = _status(jpki_app)
        assert document["registration"]["state"] == "revoked" and document["registration"]["ca_sync"] == "pending"
        assert document["ended"]["ca_sync"] == "pending" and document["ended"]["pending_ca_operations"] >= 1

        # The service cannot be reached either: the phone says what it last knew, and that it could not check.
        nowhere = f"http://127.0.0.1:{free_port()}"
        text = _ok(jpki_app("status", service=nowhere))
        assert f"registration    {registration_id}" in text and "reason          owner-revoked" in text
        assert re.search(r"ca sync         pending, \d+ changes? waiting", text)
        assert re.search(r"could not check with the service now \(cannot reach the lifecycle service at "
                         r".*\): this is what the phone last knew, as the service said on [0-9-]+ [0-9:]+ JST", text)
        offline = _status(jpki_app, service=nowhere)
        assert offline["registration"] is None and offline["checked"] is False
        assert "cannot reach the lifecycle service" in offline["check_error"]
        assert offline["registration_id"] == registration_id and offline["ended"]["ca_sync"] == "pending"
        # Forgetting then would lose nothing at the service; the owner is told the CA had not confirmed it.
    finally:
        ca_server.start()

    # The CA is back: the service's queue carries the revocation, with no action from the phone.
    wait_for(lambda: _status(jpki_app)["registration"]["ca_sync"] == "done", timeout=60)
    text = _ok(jpki_app("status"))
    assert "ca sync         done" in text and "the CA has it (ca_sync done)" in text
    ended = EndedRegistration.from_json(_status(jpki_app)["ended"])
    assert (ended.state, ended.ca_sync, ended.pending_ca_operations) == ("revoked", "done", 0)
    # The phone learnt it; its record also keeps the owner token, which --json never prints.
    kept = flows.open_phone(tmp_path / "phone").app_data.load().ended
    assert kept.owner_token and dataclasses.replace(kept, owner_token=None) == ended
    for serial in ended.serials.values():
        with ca_server.client() as ca:
            assert ca.get(f"/api/v1/certificates/{serial}").json()["status"] == "revoked"


def test_forget_tells_when_the_ca_had_not_confirmed_it(own_jpki_app, own_card, own_ca_server):
    jpki_app, card, ca_server = own_jpki_app, own_card, own_ca_server
    _ok(jpki_app("register", "--card", str(card.card_file)))
    ca_server.stop()
    try:
        _ok(jpki_app("revoke"))
        forgotten = _ok(jpki_app("forget"))
    finally:
        ca_server.start()
    assert re.search(r"when last checked \([0-9-]+ [0-9:]+ JST\) the CA did not have all of it yet "
                     r"\(ca_sync pending\); the service keeps carrying it all the same", forgotten), forgotten
    assert _status(jpki_app)["ended"] is None


def test_the_other_ends_are_kept_too_except_uninstall_which_wipes_the_app(service_server, card, tmp_path):
    def phone(name: str) -> flows.Phone:
        return flows.open_phone(tmp_path / name, service_server.url)

    def register(on: flows.Phone):
        return flows.register(on, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)

    # Superseded by a new phone: status deletes the copy, and keeps reporting the end afterwards.
    old, new = phone("old"), phone("new")
    first = register(old)
    register(new)
    report = flows.status(old)
    assert report.copy_deleted and not old.se.holds_keys()
    assert (report.ended.state, report.ended.reason, report.ended.ended_by) == ("revoked", "superseded", "found-ended")
    later = flows.status(old)
    assert not later.copy_deleted and later.checked
    assert (later.registration.registration_id, later.registration.state) == (first.registration_id, "revoked")
    assert later.ended.ended_at == report.ended.ended_at

    # Stale certificates found by install after a factory reset: expired, kept as ended.
    stale = register(old)  # supersedes "new"; the old phone's record of its first registration is replaced
    assert old.app_data.load().ended is None
    flows.factory_reset(old)
    flows.install(old)
    report = flows.status(old)
    assert report.registration.registration_id == stale.registration_id
    assert (report.ended.state, report.ended.reason, report.ended.ended_by) == (
        "expired", "stale-certificate", "stale-certificate")
    assert flows.forget_ended(old).registration_id == stale.registration_id
    assert flows.status(old) == flows.StatusReport(None)

    # Uninstall wipes the app's data by definition: no record is left to report (the SE is emptied online).
    register(old)
    flows.uninstall(old)
    assert not old.se.holds_keys() and not old.app_data.exists()
    assert flows.status(old) == flows.StatusReport(None)

    # "new" was superseded meanwhile, but until its status learns it, its SE holds a registration:
    # forgetting is refused (only an ended registration's record can be forgotten).
    with pytest.raises(AppError, match="which has not ended"):
        flows.forget_ended(new)
    assert flows.status(new).ended.reason == "superseded"
    assert flows.forget_ended(new) is not None


# -- the owner token: what reads the registration, kept past its end, never shown -------------------------

def _se(tmp_path: Path) -> SecureElement:
    return SecureElement(tmp_path / "phone" / "se")


def _read(service_server, registration_id: str, owner_token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {owner_token}"} if owner_token else {}
    return httpx.get(f"{service_server.url}/api/v1/registrations/{registration_id}", headers=headers)


def _bound_before_tokens(service_server, tmp_path: Path, registration_id: str) -> None:
    """As a phone registered before owner tokens existed: no token in its SE's state file, and none
    at the service (migration 0004 left owner_token_hash empty) until the device key asks for one."""
    state_file = tmp_path / "phone" / "se" / "state.json"
    state = json.loads(state_file.read_text())
    del state["owner_token"]
    state_file.write_text(json.dumps(state))
    assert _se(tmp_path).owner_token is None
    engine = sa.create_engine(service_server.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE registrations SET owner_token_hash = NULL WHERE id = :id"),
                               {"id": registration_id})
    finally:
        engine.dispose()


def test_status_after_revoke_reads_with_the_token_kept_in_the_record_and_never_prints_it(
        jpki_app, card, service_server, tmp_path):
    registered = _ok(jpki_app("register", "--card", str(card.card_file)))
    token = _se(tmp_path).owner_token
    assert token and token not in registered
    before = _status(jpki_app)
    registration_id, case_reference = before["registration_id"], before["registration"]["case_reference"]
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", case_reference)

    revoked = _ok(jpki_app("revoke"))

    # The SE forgot it with the keys; the record of the end keeps it.
    assert _se(tmp_path).owner_token is None
    app_data = json.loads((tmp_path / "phone" / "app" / "app.json").read_text())
    assert app_data["ended"]["owner_token"] == token
    text = _ok(jpki_app("status"))
    assert f"registration    {registration_id}\n" in text
    assert f"case reference  {case_reference} (give it when you call the My Number line)\n" in text
    assert re.search(r"state           revoked \(ended on this phone: revoked by you", text)
    assert "could not check" not in text
    raw = _ok(jpki_app("status", "--json"))
    document = json.loads(raw)
    assert document["checked"] is True and document["check_error"] is None
    assert (document["registration"]["state"], document["registration"]["case_reference"]) == ("revoked",
                                                                                                 case_reference)
    assert document["ended"]["case_reference"] == case_reference and "owner_token" not in document["ended"]
    assert document["registration"].get("owner_token") is None  # a read never hands it out again
    for output in (revoked, text, raw):
        assert token not in output
    # That token is what read it: without it the service answers 401 and shows nothing.
    assert _read(service_server, registration_id, token).json()["state"] == "revoked"
    refused = _read(service_server, registration_id, None)
    assert refused.status_code == 401 and "BEGIN CERTIFICATE" not in refused.text


def test_an_se_bound_before_tokens_gets_one_with_its_device_key(jpki_app, card, service_server, tmp_path):
    _ok(jpki_app("register", "--card", str(card.card_file)))
    registration_id = _status(jpki_app)["registration_id"]
    first = _se(tmp_path).owner_token
    _bound_before_tokens(service_server, tmp_path, registration_id)
    assert _read(service_server, registration_id, first).status_code == 404  # the service has no token either

    text = _ok(jpki_app("status"))  # asks for a token with the device key, then reads

    assert f"registration    {registration_id}\n" in text and "state           active\n" in text
    assert re.search(r"case reference  [0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4} ", text)
    token = _se(tmp_path).owner_token
    assert token and token != first and token not in text
    assert _read(service_server, registration_id, token).json()["registration_id"] == registration_id
    document = _status(jpki_app)  # and reads with it from now on
    assert document["registration"]["state"] == "active" and _se(tmp_path).owner_token == token
    assert set(document["secure_element"]) == {"signature", "authentication"}

    # Revoked before any status gave it a token: the device key asks for one before the SE deletes it,
    # so the record of the end can still be checked with the service.
    _bound_before_tokens(service_server, tmp_path, registration_id)
    _ok(jpki_app("revoke"))
    after = _status(jpki_app)
    assert after["checked"] is True and after["check_error"] is None
    assert (after["registration"]["state"], after["ended"]["ended_by"]) == ("revoked", "owner-revoke")


def test_after_a_factory_reset_and_reinstall_status_reports_the_ended_registration(
        jpki_app, card, service_server, tmp_path):
    _ok(jpki_app("register", "--card", str(card.card_file)))
    before = _status(jpki_app)
    registration_id, case_reference = before["registration_id"], before["registration"]["case_reference"]
    token = _se(tmp_path).owner_token

    _ok(jpki_app("factory-reset"))
    assert _se(tmp_path).owner_token == token  # the SE survives the reset, and the token with it
    _ok(jpki_app("install"))  # the stale-certificate notice

    text = _ok(jpki_app("status"))
    assert f"registration    {registration_id}\n" in text and f"case reference  {case_reference} " in text
    assert re.search(r"state           expired \(ended on this phone: certificates found left in the secure "
                     r"element, reported stale", text), text
    assert "could not check" not in text and token not in text
    raw = _ok(jpki_app("status", "--json"))
    document = json.loads(raw)
    assert document["checked"] is True and token not in raw
    assert (document["registration"]["state"], document["registration"]["reason"]) == ("expired", "stale-certificate")
    assert (document["ended"]["registration_id"], document["ended"]["ended_by"]) == (registration_id,
                                                                                    "stale-certificate")

    # The same with an SE bound before tokens: install asks for one with the device key before deleting it.
    _ok(jpki_app("forget"))
    _ok(jpki_app("register", "--card", str(card.card_file)))
    second = _status(jpki_app)["registration_id"]
    _bound_before_tokens(service_server, tmp_path, second)
    _ok(jpki_app("factory-reset"))
    _ok(jpki_app("install"))
    document = _status(jpki_app)
    assert document["checked"] is True and document["check_error"] is None
    assert (document["registration"]["registration_id"], document["registration"]["state"]) == (second, "expired")
