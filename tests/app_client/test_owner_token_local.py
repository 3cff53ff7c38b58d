"""The owner token on the phone's side, against the in-memory service of fake_service.py: the app
reads its registration only with the token the SE keeps, asks for one with the device key when the
SE has none (bound before tokens existed), keeps it in the record of an ended registration, and
never shows it; ``status`` shows the case reference instead.

The real service is in test_flows_service.py and test_ended_registration.py.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app_client import flows
from app_client.card_reader import CardReader
from app_client.cli import app
from app_client.secure_element import KeySlot, SecureElement
from app_client.service_client import Proof, ServiceProblem
from jpki_common.owner_proof import Action
from tests.app_client.conftest import CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN
from tests.app_client.fake_service import URL, FakeService

CASE_REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def phone(service: FakeService, card_file: Path, tmp_path: Path) -> flows.Phone:
    phone = flows.open_phone(tmp_path / "phone", URL, http=service.client())
    flows.register(phone, CardReader(card_file), CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)
    return phone


def _drop_owner_token(se: SecureElement) -> None:
    """As an SE bound before owner tokens existed: its state file has no token."""
    state_file = se.folder / "state.json"
    state = json.loads(state_file.read_text())
    del state["owner_token"]
    state_file.write_text(json.dumps(state))
    assert se.owner_token is None


def test_the_app_reads_its_registration_only_with_the_token_the_se_keeps(phone, service):
    registration_id = phone.se.registration_id
    token = phone.se.owner_token
    # The SE keeps it (it survives a factory reset); the app data does not, while the registration lives.
    assert token and token not in (phone.app_data.folder / "app.json").read_text()
    service.authorizations.clear()

    report = flows.status(phone)

    assert report.registration.registration_id == registration_id
    assert CASE_REFERENCE.match(report.registration.case_reference)
    assert service.authorizations == [("GET", f"/api/v1/registrations/{registration_id}", f"Bearer {token}")]
    # Without the token: 401; with another one, or for an unknown id: the same 404.
    with service.client() as raw:
        missing = raw.get(f"/api/v1/registrations/{registration_id}")
        assert missing.status_code == 401 and "certificate_pem" not in missing.text
        assert "BEGIN CERTIFICATE" not in missing.text
        wrong = raw.get(f"/api/v1/registrations/{registration_id}", headers={"Authorization": "Bearer nope"})
        unknown = raw.get(f"/api/v1/registrations/{'0' * 32}", headers={"Authorization": f"Bearer {token}"})
        assert wrong.status_code == unknown.status_code == 404 and "BEGIN CERTIFICATE" not in wrong.text
        assert wrong.json()["title"] == unknown.json()["title"]
    with pytest.raises(ServiceProblem) as refused:
        phone.service.registration(registration_id, "not-the-token")
    assert (refused.value.status, refused.value.slug) == (404, "registration-unknown")


def test_an_se_bound_before_tokens_gets_one_with_its_device_key(phone, service):
    registration_id = phone.se.registration_id
    service.forget_owner_token(registration_id)
    _drop_owner_token(phone.se)
    service.requests.clear()

    report = flows.status(phone)

    assert report.registration.state == "active" and set(report.in_secure_element) == {"signature",
                                                                                      "authentication"}
    assert service.requests == [("POST", "/api/v1/challenges"),
                                ("POST", f"/api/v1/registrations/{registration_id}/owner-token")]
    token = phone.se.owner_token
    assert token is not None
    # From now on it reads with that token, and asks for no other.
    service.authorizations.clear()
    assert flows.status(phone).registration.state == "active"
    assert service.authorizations == [("GET", f"/api/v1/registrations/{registration_id}", f"Bearer {token}")]


def test_an_ended_registration_is_read_with_the_token_kept_in_its_record(phone, service):
    registration_id = phone.se.registration_id
    _drop_owner_token(phone.se)  # and the service's token is not this phone's any more either
    service.forget_owner_token(registration_id)
    service.revoke(registration_id)

    report = flows.status(phone)  # asks for a token with the device key, then finds it ended

    assert report.copy_deleted and not phone.se.holds_keys() and phone.se.owner_token is None
    ended = phone.app_data.load().ended
    assert ended.owner_token and ended.case_reference == report.registration.case_reference
    service.authorizations.clear()
    later = flows.status(phone)
    assert later.checked and later.registration.state == "revoked"
    assert service.authorizations == [("GET", f"/api/v1/registrations/{registration_id}",
                                       f"Bearer {ended.owner_token}")]


def test_status_shows_the_case_reference_and_never_the_token(service, card_file, tmp_path, monkeypatch):
    monkeypatch.setattr(flows, "open_phone", functools.partial(flows.open_phone, http=service.client()))
    runner = CliRunner()

    def run(*args: str):
        env = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN,
               "JPKI_NEW_SIGN_PASSWORD": None, "JPKI_APP_HOME": None, "JPKI_SERVICE_URL": None}
        result = runner.invoke(app, ["--home", str(tmp_path / "cli-phone"), "--service", URL, *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    registered = run("register", "--card", str(card_file))
    (registration,) = service.registrations.values()
    token = SecureElement(tmp_path / "cli-phone" / "se").owner_token
    assert token
    status = run("status")
    assert f"case reference  {registration.case_reference} (give it when you call the My Number line)\n" in status
    as_json = run("status", "--json")
    assert json.loads(as_json)["registration"]["case_reference"] == registration.case_reference

    service.revoke(registration.registration_id)
    ended = run("status")
    assert f"case reference  {registration.case_reference}" in ended and "state           revoked" in ended
    ended_json = run("status", "--json")
    assert json.loads(ended_json)["ended"]["case_reference"] == registration.case_reference
    assert "owner_token" not in json.loads(ended_json)["ended"]
    for output in (registered, status, as_json, ended, ended_json):
        assert token not in output


def test_a_new_owner_token_needs_this_phones_device_key(phone, service):
    registration_id, token = phone.se.registration_id, phone.se.owner_token
    challenge = phone.service.challenge(Action.OWNER_TOKEN, registration_id)
    # Signed with another of the SE's keys (the authentication key): not the device key registered.
    wrong = Proof(challenge.challenge_id, phone.se.sign_proof(KeySlot.AUTHENTICATION, PHONE_PIN, challenge.message()))
    with pytest.raises(ServiceProblem) as refused:
        phone.service.owner_token(registration_id, wrong)
    assert (refused.value.status, refused.value.slug) == (403, "proof-rejected")
    assert phone.service.registration(registration_id, token).state == "active"  # the token still reads it

    challenge = phone.service.challenge(Action.OWNER_TOKEN, registration_id)
    answer = phone.service.owner_token(registration_id, Proof(
        challenge.challenge_id, phone.se.sign_proof(KeySlot.DEVICE, None, challenge.message())))
    assert answer.owner_token and answer.owner_token != token and answer.registration_id == registration_id
    # The new token reads it; the previous one stops working.
    assert phone.service.registration(registration_id, answer.owner_token).state == "active"
    with pytest.raises(ServiceProblem, match="does not know this phone's registration"):
        phone.service.registration(registration_id, token)
