"""The phone's use cases through the real lifecycle service and the real CA, each its own process
over HTTP: what the owner does, what the service records, and what the secure element keeps.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from typer.testing import CliRunner

from app_client import flows
from app_client.card_reader import SIGNATURE, CardReader
from app_client.cli import app
from app_client.errors import NothingToLift, SecretLocked, WrongSecret
from app_client.secure_element import KeySlot, SecureElement
from app_client.service_client import ServiceProblem
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from jpki_service.adapters.ca_client import CAClient
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import Store
from jpki_service.adapters.service_keys import load_service_keys
from jpki_service.callcentre import service as callcentre
from jpki_service.callcentre.schemas import LiftRequest as SupervisorLiftRequest
from jpki_service.callcentre.schemas import SuspendRequest
from jpki_service.common.settings import ServiceSettings
from jpki_service.operators.roles import Role
from jpki_service.operators.service import SignedIn
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique, unique_person  # noqa: F401 (a fixture)
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e


# One CA and one service for the module, on SQLite alone as this folder's tests/app_client/conftest.py has it (the
# store is not what these tests are about): each test registers with a card of its own, for a person of its own
# (a new registration supersedes the person's earlier ones), and changes the CA only under operation ids of its own.
ca_server, service_server = shared_servers("flows-service", backends=("sqlite",))


@pytest.fixture
def card(ca_server, tmp_path: Path) -> CardReader:
    path = tmp_path / "card.json"
    write_card(issue_card(ca_server.store, ca_server.settings, PersonIn(**unique_person()), CARD_PASSWORD, CARD_PIN),
               path)
    return CardReader(path)


@pytest.fixture
def new_phone(service_server, tmp_path: Path):
    def make(name: str) -> flows.Phone:
        return flows.open_phone(tmp_path / name, service_server.url)
    return make


def _register(phone: flows.Phone, card: CardReader, model: str = "Pixel 9"):
    return flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN, device_model=model)


def test_register_log_in_and_revoke(new_phone, card):
    phone = new_phone("phone")
    registration = _register(phone, card)

    assert registration.state == "active" and len(registration.registration_id) == 32
    assert phone.se.registration_id == registration.registration_id
    assert phone.app_data.load().registration_id == registration.registration_id
    for slot in (KeySlot.SIGNATURE, KeySlot.AUTHENTICATION):
        assert phone.se.certificate_pem(slot) == registration.current(slot.value).certificate_pem

    report = flows.status(phone)
    assert report.registration.state == "active" and not report.copy_deleted and report.stored == ()
    assert set(report.in_secure_element) == {"signature", "authentication"}

    assert flows.login(phone, PHONE_PIN)["ocsp"] == "good"
    with pytest.raises(WrongSecret):
        flows.login(phone, "0000")

    # A wrong password is refused in the SE: nothing reaches the service, the registration lives.
    with pytest.raises(WrongSecret, match="4 tries left"):
        flows.revoke(phone, "WRONG2025PW")
    assert flows.status(phone).registration.state == "active"

    revoked = flows.revoke(phone, PHONE_PASSWORD)
    assert (revoked.state, revoked.reason) == ("revoked", "owner-revoked")
    assert not phone.se.holds_keys() and phone.app_data.load().registration_id is None
    # Status still reports it, as the service does now, until the owner forgets it (issue 12, item 8).
    report = flows.status(phone)
    assert (report.registration.state, report.registration.ca_sync) == ("revoked", "done") and report.checked
    assert (report.ended.registration_id, report.ended.ended_by) == (registration.registration_id, "owner-revoke")
    assert report.in_secure_element == {} and not phone.se.holds_keys()
    flows.forget_ended(phone)
    assert flows.status(phone) == flows.StatusReport(None)


def test_the_app_reads_its_registration_with_the_owner_token_and_nobody_reads_it_without(
        new_phone, card, service_server):
    phone = new_phone("phone")
    registration = _register(phone, card)
    registration_id, token = registration.registration_id, registration.owner_token
    # Handed over once, in the answer to registering; the SE keeps it, the app data does not.
    assert token and phone.se.owner_token == token
    assert token not in (phone.app_data.folder / "app.json").read_text()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}",
                        registration.case_reference)
    signature_pem = phone.se.certificate_pem(KeySlot.SIGNATURE)
    assert signature_pem

    report = flows.status(phone)  # reads with the token
    assert report.registration.current("signature").certificate_pem == signature_pem
    assert report.registration.case_reference == registration.case_reference
    assert report.registration.owner_token is None  # a read never hands the token out again

    url = f"{service_server.url}/api/v1/registrations/{registration_id}"
    with httpx.Client() as raw:
        missing = raw.get(url)
        wrong = raw.get(url, headers={"Authorization": "Bearer " + "x" * 43})
        unknown = raw.get(f"{service_server.url}/api/v1/registrations/{'0' * 32}",
                          headers={"Authorization": f"Bearer {token}"})
        read = raw.get(url, headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 401, missing.text
    assert missing.json()["type"].endswith("owner-token-missing")
    # A wrong token and an unknown id: the same 404, which says nothing of whether the id exists.
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json()["type"] == unknown.json()["type"] and wrong.json()["title"] == unknown.json()["title"]
    pem_body = "".join(signature_pem.splitlines()[1:-1])
    for refused in (missing, wrong, unknown):
        assert "BEGIN CERTIFICATE" not in refused.text and pem_body[:64] not in refused.text
        assert registration.case_reference not in refused.text and "certificates" not in refused.json()
    assert read.status_code == 200 and read.json()["registration_id"] == registration_id
    assert signature_pem in {c["certificate_pem"] for c in read.json()["certificates"]}
    with pytest.raises(ServiceProblem) as refused_in_app:
        phone.service.registration(registration_id, "x" * 43)
    assert refused_in_app.value.status == 404


def test_a_new_phone_supersedes_the_old_one_which_deletes_its_copy_when_next_online(new_phone, card):
    old, new = new_phone("old"), new_phone("new")
    first = _register(old, card)
    second = _register(new, card, model="Pixel 10")
    assert second.superseded == (first.registration_id,)

    report = flows.status(old)

    assert report.copy_deleted and (report.registration.state, report.registration.reason) == ("revoked", "superseded")
    assert not old.se.holds_keys()
    assert all(c.status == "revoked" for c in report.registration.certificates)
    assert flows.status(new).registration.state == "active"


def test_a_locked_password_is_reset_with_the_card(new_phone, card):
    phone = new_phone("phone")
    _register(phone, card)
    for _ in range(5):
        with pytest.raises(WrongSecret):
            flows.revoke(phone, "WRONG2025PW")
    with pytest.raises(SecretLocked):
        flows.revoke(phone, PHONE_PASSWORD)

    flows.reset_password(phone, card, CARD_PASSWORD, "renewed2026")

    assert phone.se.view(KeySlot.SIGNATURE).tries_left == 5
    assert flows.revoke(phone, "RENEWED2026").state == "revoked"


def test_a_wrong_card_password_registers_nothing(new_phone, card):
    phone = new_phone("phone")
    with pytest.raises(WrongSecret, match="wrong card signature password: 4 tries left"):
        flows.register(phone, card, "WRONG999", PHONE_PASSWORD, PHONE_PIN)
    assert card.tries_left(SIGNATURE) == 4
    assert not phone.se.holds_keys() and not phone.app_data.exists()


def test_a_card_refused_by_the_service_leaves_no_keys(new_phone, card, ca_server):
    from ca_mock.certificates.service import change_status
    from ca_mock.certificates.status_rules import StatusAction

    serial = json.loads(card.card_file.read_text())["signature"]["serial"]
    change_status(ca_server.store, ca_server.settings, serial, StatusAction.REVOKE, unique("card-gone"),
                  "keyCompromise")
    phone = new_phone("phone")

    with pytest.raises(ServiceProblem) as refused:
        _register(phone, card)

    assert refused.value.status == 403 and refused.value.slug == "proof-rejected"
    assert not phone.se.holds_keys()


def test_factory_reset_then_install_ends_the_left_certificates(new_phone, card):
    phone = new_phone("phone")
    registration = _register(phone, card)

    flows.factory_reset(phone)
    assert phone.se.registration_id == registration.registration_id  # the SE survived
    report = flows.install(phone)

    assert report.stale_registration_id == registration.registration_id
    assert (report.registration.state, report.registration.reason) == ("expired", "stale-certificate")
    assert not phone.se.holds_keys()
    # The phone is usable again: a new registration, then an online uninstall ends it too.
    again = _register(phone, card)
    uninstalled = flows.uninstall(phone)
    assert uninstalled.copy_deleted and uninstalled.registration.registration_id == again.registration_id
    assert (uninstalled.registration.state, uninstalled.registration.reason) == ("expired", "uninstalled")
    assert not phone.se.holds_keys() and not phone.app_data.exists()


def test_offline_uninstall_then_reinstall(new_phone, card):
    phone = new_phone("phone")
    registration = _register(phone, card)

    flows.uninstall(phone, offline=True)
    assert phone.se.registration_id == registration.registration_id
    # Still live at the service: the phone said nothing.
    assert phone.service.registration(registration.registration_id, phone.se.owner_token).state == "active"

    assert flows.install(phone).registration.state == "expired"
    assert not phone.se.holds_keys()


def test_the_cli_from_register_to_revoke(service_server, card, tmp_path):
    runner = CliRunner()
    env = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN,
           "JPKI_NEW_SIGN_PASSWORD": None, "JPKI_APP_HOME": str(tmp_path / "cli-phone"),
           "JPKI_SERVICE_URL": service_server.url}

    def run(*args: str):
        return runner.invoke(app, list(args), env=env)

    registered = run("register", "--card", str(card.card_file), "--model", "Pixel 9")
    assert registered.exit_code == 0, registered.output
    assert "registered this phone: registration " in registered.stdout and "(active)" in registered.stdout

    status = json.loads(run("status", "--json").stdout)
    assert status["registration"]["state"] == "active"
    assert status["secure_element"] == {c["kind"]: c["serial"] for c in status["registration"]["certificates"]}
    certificates = status["registration"]["certificates"]
    assert all(c["certificate_pem"].startswith("-----BEGIN CERTIFICATE") for c in certificates)

    logged_in = run("login")
    assert logged_in.exit_code == 0 and "OCSP good" in logged_in.stdout

    revoked = run("revoke")
    assert revoked.exit_code == 0 and "is revoked (owner-revoked)" in revoked.stdout
    assert "state           revoked (ended on this phone: revoked by you" in run("status").stdout
    assert "forgot registration" in run("forget").stdout
    assert run("status").stdout == "this phone holds no JPKI certificates\n"
    for result in (registered, revoked):
        assert PHONE_PASSWORD not in result.output and CARD_PASSWORD not in result.output


# -- the call centre's suspension, lifted in the app ---------------------------------------------------

@pytest.fixture
def call_centre(service_server, ca_server) -> Iterator[ServiceContext]:
    """The call centre's use cases, run in this process on the running service's database and CA,
    as the operator console would run them: with the running service's policy, where a supervisor's lift
    is done at once (tests/conftest.py turns the two-person rule off; test_approvals.py has it)."""
    settings = ServiceSettings(data_dir=service_server.data_dir, database_url=service_server.database_url,
                               ca_url=ca_server.url, ca_token=ca_server.token, two_person_acts="")
    ctx = ServiceContext(Store(settings.resolved_database_url()), CAClient(ca_server.url, ca_server.token),
                         settings, load_service_keys(settings, create=False))
    yield ctx
    ctx.ca.close()
    ctx.store.dispose()


def _staff(role: Role) -> SignedIn:
    return SignedIn(0, f"{role.value}.test", role, "csrf", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


def _suspend(ctx: ServiceContext, case_reference: str, reason: str = "lost") -> dict[str, Any]:
    """Staff name the registration by its case reference, never by its id."""
    return callcentre.suspend_registration(ctx, _staff(Role.OPERATOR), case_reference,
                                           SuspendRequest(reason=reason, caller="self", ticket="CC-2026-0001"))


def _ca_has_it(service_url: str, registration_id: str, owner_token: str | None) -> None:
    """Read as the owner's phone reads it: with its owner token."""
    wait_for(lambda: httpx.get(f"{service_url}/api/v1/registrations/{registration_id}",
                               headers={"Authorization": f"Bearer {owner_token}"}).json()["ca_sync"] == "done")


def _serial(pem: str) -> str:
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def test_a_suspension_is_lifted_in_the_app_with_the_card(new_phone, card, call_centre, service_server, ca_server):
    phone = new_phone("phone")
    registration = _register(phone, card)
    registration_id = registration.registration_id
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}",
                        registration.suspension_code)
    assert phone.app_data.load().suspension_code == registration.suspension_code
    authentication_pem = phone.se.certificate_pem(KeySlot.AUTHENTICATION)
    old_signature_pem = phone.se.certificate_pem(KeySlot.SIGNATURE)
    old_signature_key = phone.se.view(KeySlot.SIGNATURE).public_key_pem

    _suspend(call_centre, registration.case_reference)
    _ca_has_it(service_server.url, registration_id, phone.se.owner_token)

    report = flows.status(phone)
    assert (report.registration.state, report.registration.reason) == ("suspended", "lost")
    assert (report.registration.last_change.event, report.registration.last_change.actor) == ("suspended", "operator")
    assert {c.status for c in report.registration.certificates} == {"held"}
    assert report.suspension_code == registration.suspension_code
    assert {ocsp_status(ca_server.url, pem) for pem in (authentication_pem, old_signature_pem)} == {
        "revoked:certificateHold"}
    with pytest.raises(ServiceProblem, match="certificateHold"):
        flows.login(phone, PHONE_PIN)

    lifted = flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert lifted.state == "active" and lifted.last_change.event == "owner-lifted"
    _ca_has_it(service_server.url, registration_id, phone.se.owner_token)
    report = flows.status(phone)  # fetches the new certificate, had the lift answered 202
    registration = report.registration
    # The user-authentication certificate is the same one, good again.
    assert registration.current("authentication").serial == _serial(authentication_pem)
    assert phone.se.certificate_pem(KeySlot.AUTHENTICATION) == authentication_pem
    assert ocsp_status(ca_server.url, authentication_pem) == "good"
    assert flows.login(phone, PHONE_PIN)["ocsp"] == "good"
    # The signature certificate is new, for a new key in the SE; the old one is revoked.
    new_signature_pem = phone.se.certificate_pem(KeySlot.SIGNATURE)
    assert new_signature_pem == registration.current("signature").certificate_pem
    assert _serial(new_signature_pem) != _serial(old_signature_pem)
    assert phone.se.view(KeySlot.SIGNATURE).public_key_pem != old_signature_key
    assert ocsp_status(ca_server.url, new_signature_pem) == "good"
    assert ocsp_status(ca_server.url, old_signature_pem) == "revoked:superseded"
    assert [c.status for c in registration.replaced("signature")] == ["revoked"]
    assert report.in_secure_element == {"signature": _serial(new_signature_pem),
                                        "authentication": _serial(authentication_pem)}
    # Nothing more to lift; and the service now knows the new key as the phone signature key.
    with pytest.raises(NothingToLift):
        flows.lift_suspension(phone, card, CARD_PASSWORD)
    assert flows.revoke(phone, PHONE_PASSWORD).state == "revoked"


def test_after_a_supervisors_lift_the_cli_reissues_the_signature_certificate(card, call_centre, service_server,
                                                                            ca_server, tmp_path):
    runner = CliRunner()
    env = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN,
           "JPKI_NEW_SIGN_PASSWORD": None, "JPKI_APP_HOME": str(tmp_path / "cli-phone"),
           "JPKI_SERVICE_URL": service_server.url}

    def run(*args: str):
        result = runner.invoke(app, list(args), env=env)
        assert CARD_PASSWORD not in result.output and PHONE_PASSWORD not in result.output
        return result

    registered = run("register", "--card", str(card.card_file))
    assert registered.exit_code == 0, registered.output
    code = re.search(r"Write down your suspension code: (\S+) — the call centre asks", registered.stdout).group(1)
    registration_id = json.loads(run("status", "--json").stdout)["registration_id"]
    first = json.loads(run("status", "--json").stdout)["registration"]
    case_reference = first["case_reference"]
    old_signature_pem = next(c["certificate_pem"] for c in first["certificates"] if c["kind"] == "signature")

    _suspend(call_centre, case_reference, reason="stolen")
    status = run("status")
    assert f"suspension code {code}" in status.stdout
    assert re.search(r"SUSPENDED by the call centre \(reason: stolen\) on [0-9-]+ [0-9:]+ JST\. "
                     r"Lift it with: jpki-app lift-suspension --card FILE", status.stdout), status.stdout

    callcentre.lift_suspension(call_centre, _staff(Role.SUPERVISOR), case_reference,
                               SupervisorLiftRequest(caller="self", reason="found at home", ticket="CC-2026-0002"))
    owner_token = SecureElement(tmp_path / "cli-phone" / "se").owner_token
    _ca_has_it(service_server.url, registration_id, owner_token)
    status = run("status")
    assert "last change     supervisor-lifted by supervisor" in status.stdout
    assert "no valid signature certificate" in status.stdout
    assert "Reissue it with: jpki-app lift-suspension --card FILE" in status.stdout

    lifted = run("lift-suspension", "--card", str(card.card_file))
    assert lifted.exit_code == 0, lifted.output
    assert f"reissued the signature certificate: registration {registration_id} is active" in lifted.stdout

    _ca_has_it(service_server.url, registration_id, owner_token)
    document = json.loads(run("status", "--json").stdout)
    registration = document["registration"]
    assert registration["state"] == "active" and registration["signature_reissue_needed"] is False
    current = {c["kind"]: c for c in registration["certificates"] if c["current"]}
    assert document["secure_element"] == {kind: c["serial"] for kind, c in current.items()}
    assert current["signature"]["serial"] != _serial(old_signature_pem)
    assert ocsp_status(ca_server.url, current["signature"]["certificate_pem"]) == "good"
    assert ocsp_status(ca_server.url, current["authentication"]["certificate_pem"]) == "good"
    assert ocsp_status(ca_server.url, old_signature_pem) == "revoked:superseded"
    assert document["suspension_code"] == code
