"""Lifting the call centre's suspension, on the phone's side, against the in-memory service of
fake_service.py: the proofs the app sends, what the secure element keeps and replaces on each
outcome (200, 202, refused, answer lost), the suspension code, and what the owner reads.

The real service and CA are in test_flows_service.py; these cover the outcomes a real service
gives only with a CA outage or a network cut.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from app_client import flows
from app_client.card_reader import SIGNATURE, CardReader
from app_client.cli import app
from app_client.errors import NothingToLift, WrongSecret
from app_client.secure_element import KeySlot, SlotView
from app_client.service_client import ServiceUnreachable
from jpki_common.owner_proof import signature_verifies
from tests.app_client.conftest import CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN
from tests.app_client.fake_service import URL, FakeService, LiftOutcome

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def card(card_file: Path) -> CardReader:
    return CardReader(card_file)


@pytest.fixture
def phone(service: FakeService, card: CardReader, tmp_path: Path) -> flows.Phone:
    """A phone registered through the fake service, both certificates in its SE."""
    phone = flows.open_phone(tmp_path / "phone", URL, http=service.client())
    flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)
    return phone


def _views(phone: flows.Phone) -> dict[KeySlot, SlotView]:
    return {slot: phone.se.view(slot) for slot in KeySlot}


def _key_of(certificate_pem: str) -> str:
    return x509.load_pem_x509_certificate(certificate_pem.encode()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _csr_key(csr_pem: str) -> str:
    return x509.load_pem_x509_csr(csr_pem.encode()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- the suspension code ---------------------------------------------------------------------------

def test_registering_keeps_the_suspension_code_that_the_service_never_tells_again(phone, service):
    code = phone.app_data.load().suspension_code
    assert code and CODE.match(code)
    registration_id = phone.se.registration_id
    assert "suspension_code" not in phone.service.registration(registration_id, phone.se.owner_token).document

    assert flows.status(phone).suspension_code == code

    service.revoke(registration_id)  # the registration is over: the code goes with it
    report = flows.status(phone)
    assert report.copy_deleted and report.suspension_code is None
    assert phone.app_data.load().suspension_code is None


# -- lifting -----------------------------------------------------------------------------------------

def test_lifting_keeps_the_authentication_key_and_replaces_the_signature_key(phone, service, card):
    registration_id = phone.se.registration_id
    with pytest.raises(WrongSecret):  # a spent try: the new key must inherit the counter, not reset it
        phone.se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    before = _views(phone)
    service.suspend(registration_id)
    assert flows.status(phone).registration.state == "suspended"

    registration = flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert registration.state == "active" and registration.last_change.event == "owner-lifted"
    # One request, proven by the card and by this phone's device key over the same challenge.
    (body,) = service.lift_bodies
    assert set(body["proof"]) == {"challenge_id", "signature", "card_certificate_pem", "device_signature"}
    assert body["proof"]["card_certificate_pem"] == card.signature_certificate_pem
    # The authentication key and certificate did not move; the device key neither.
    after = _views(phone)
    assert after[KeySlot.AUTHENTICATION] == before[KeySlot.AUTHENTICATION]
    assert after[KeySlot.DEVICE] == before[KeySlot.DEVICE]
    assert registration.current("authentication").certificate_pem == before[KeySlot.AUTHENTICATION].certificate_pem
    # The signature key is the new one the CSR was for, with the new certificate; the old one is gone.
    new_key = _csr_key(body["signature_csr_pem"])
    signature = after[KeySlot.SIGNATURE]
    assert signature.public_key_pem == new_key != before[KeySlot.SIGNATURE].public_key_pem
    assert signature.certificate_pem == registration.current("signature").certificate_pem
    assert _key_of(signature.certificate_pem) == new_key
    assert (signature.tries_left, signature.max_tries) == (4, 5)
    assert phone.se.staged_signature_public_key_pem is None
    # The same phone signature password signs with the new key.
    assert phone.se.sign_proof(KeySlot.SIGNATURE, PHONE_PASSWORD, b"m")
    assert flows.serials_in_secure_element(phone) == {
        kind: registration.current(kind).serial for kind in ("signature", "authentication")}
    assert registration.replaced("signature")[0].status == "revoked"


def test_the_card_and_the_device_key_sign_the_same_challenge(phone, service, card, monkeypatch):
    service.suspend(phone.se.registration_id)
    spent: list[bytes] = []
    original = service._spend

    def spend(*args):
        message = original(*args)
        spent.append(message)
        return message

    monkeypatch.setattr(service, "_spend", spend)
    flows.lift_suspension(phone, card, CARD_PASSWORD)

    (message,) = spent
    proof = service.lift_bodies[0]["proof"]
    card_key = x509.load_pem_x509_certificate(card.signature_certificate_pem.encode()).public_key()
    device_key = serialization.load_pem_public_key(phone.se.view(KeySlot.DEVICE).public_key_pem.encode())
    assert message.split(b"\n")[1] == b"lift-suspension"
    assert signature_verifies(card_key, message, proof["signature"])
    assert signature_verifies(device_key, message, proof["device_signature"])


def test_on_202_the_new_key_moves_in_and_status_fetches_its_certificate(phone, service, card):
    registration_id = phone.se.registration_id
    authentication_before = phone.se.view(KeySlot.AUTHENTICATION)
    service.suspend(registration_id)
    service.lift_outcome = LiftOutcome.PENDING

    registration = flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert registration.ca_sync == "pending" and registration.current("signature").serial is None
    new_key = _csr_key(service.lift_bodies[0]["signature_csr_pem"])
    # Accepted: the service now knows the new key as this phone's signature key (it proves a revoke).
    assert phone.se.view(KeySlot.SIGNATURE).public_key_pem == new_key
    assert phone.se.certificate_pem(KeySlot.SIGNATURE) is None
    assert phone.se.view(KeySlot.AUTHENTICATION) == authentication_before
    # A second lift has nothing to do while the certificate is on its way.
    with pytest.raises(NothingToLift, match="nothing to lift"):
        flows.lift_suspension(phone, card, CARD_PASSWORD)

    service.ca_catches_up(registration_id)
    report = flows.status(phone)

    issued = service.certificate(registration_id, "signature")
    assert report.stored == ("signature",)
    assert phone.se.certificate_pem(KeySlot.SIGNATURE) == issued.certificate_pem
    assert report.in_secure_element["signature"] == issued.serial


def test_a_refused_lift_leaves_the_working_key_and_the_retry_sends_the_same_new_key(phone, service, card):
    registration_id = phone.se.registration_id
    before = _views(phone)
    service.suspend(registration_id)
    service.lift_outcome = LiftOutcome.REFUSED

    with pytest.raises(Exception, match="did not accept the proof from your card and phone"):
        flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert _views(phone) == before
    staged = phone.se.staged_signature_public_key_pem
    assert staged == _csr_key(service.lift_bodies[0]["signature_csr_pem"])

    service.lift_outcome = LiftOutcome.DONE
    flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert _csr_key(service.lift_bodies[1]["signature_csr_pem"]) == staged
    assert phone.se.view(KeySlot.SIGNATURE).public_key_pem == staged


def test_a_lift_whose_answer_was_lost_is_completed_by_status(phone, service, card):
    registration_id = phone.se.registration_id
    before = _views(phone)
    service.suspend(registration_id)
    service.lift_outcome = LiftOutcome.ANSWER_LOST

    with pytest.raises(ServiceUnreachable):
        flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert _views(phone) == before  # the phone cannot know the lift happened
    new_certificate = service.certificate(registration_id, "signature").certificate_pem
    assert phone.se.certifies_staged_signature_key(new_certificate)

    report = flows.status(phone)

    assert report.stored == ("signature",) and report.registration.state == "active"
    assert phone.se.certificate_pem(KeySlot.SIGNATURE) == new_certificate
    assert phone.se.view(KeySlot.SIGNATURE).public_key_pem == _key_of(new_certificate)
    assert phone.se.staged_signature_public_key_pem is None
    assert phone.se.view(KeySlot.AUTHENTICATION) == before[KeySlot.AUTHENTICATION]


def test_after_a_supervisors_lift_the_same_command_reissues_the_signature_certificate(phone, service, card):
    registration_id = phone.se.registration_id
    authentication_before = phone.se.view(KeySlot.AUTHENTICATION)
    service.suspend(registration_id)
    service.supervisor_lift(registration_id)
    report = flows.status(phone)
    assert report.registration.state == "active" and report.registration.signature_reissue_needed

    registration = flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert registration.last_change.event == "signature-reissued" and not registration.signature_reissue_needed
    assert phone.se.certificate_pem(KeySlot.SIGNATURE) == registration.current("signature").certificate_pem
    assert phone.se.view(KeySlot.AUTHENTICATION) == authentication_before


def test_nothing_to_lift_is_refused_before_a_challenge_or_a_card_read(phone, service, card):
    before = _views(phone)
    service.requests.clear()

    with pytest.raises(NothingToLift, match="is active, not suspended, and its signature certificate needs no reissue"):
        flows.lift_suspension(phone, card, CARD_PASSWORD)

    assert [method for method, _path in service.requests] == ["GET"]
    assert card.tries_left(SIGNATURE) == 5
    assert _views(phone) == before and phone.se.staged_signature_public_key_pem is None

    service.revoke(phone.se.registration_id)
    with pytest.raises(NothingToLift, match=r"is revoked \(supervisor-revoked\).*status deletes its copy"):
        flows.lift_suspension(phone, card, CARD_PASSWORD)


def test_a_wrong_card_password_sends_no_lift_and_makes_no_key(phone, service, card):
    before = _views(phone)
    service.suspend(phone.se.registration_id)

    with pytest.raises(WrongSecret, match="wrong card signature password: 4 tries left"):
        flows.lift_suspension(phone, card, "WRONG999")

    assert service.lift_bodies == [] and card.tries_left(SIGNATURE) == 4
    assert _views(phone) == before and phone.se.staged_signature_public_key_pem is None


# -- what the owner reads ----------------------------------------------------------------------------

@pytest.fixture
def run(service: FakeService, tmp_path: Path, monkeypatch):
    """``jpki-app --home <tmp>/cli-phone`` talking to the fake service."""
    monkeypatch.setattr(flows, "open_phone", functools.partial(flows.open_phone, http=service.client()))
    runner = CliRunner()

    def invoke(*args: str, **env: str):
        environment = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD,
                       "JPKI_AUTH_PIN": PHONE_PIN, "JPKI_NEW_SIGN_PASSWORD": None, "JPKI_APP_HOME": None,
                       "JPKI_SERVICE_URL": None, **env}
        return runner.invoke(app, ["--home", str(tmp_path / "cli-phone"), "--service", URL, *args], env=environment)

    return invoke


def test_the_cli_names_a_carriers_suspension(run, service, card_file):
    assert run("register", "--card", str(card_file)).exit_code == 0
    (registration_id,) = service.registrations
    service.suspend(registration_id, reason="lost", actor="carrier")
    status = run("status")
    said = (r"SUSPENDED on your mobile carrier's lost-phone report \(reason: lost\) on \d{4}-\d\d-\d\d \d\d:\d\d JST\. "
            r"Lift it with: jpki-app lift-suspension --card FILE\n")
    assert re.search(said, status.stdout), status.stdout
    assert "call centre" not in status.stdout.split("suspension code")[-1]
    japanese = run("--lang", "ja", "status")
    assert "携帯電話会社からの紛失の届出により一時利用停止されました" in japanese.stdout, japanese.stdout


def test_the_cli_shows_the_code_the_suspension_and_the_lift(run, service, card_file):
    registered = run("register", "--card", str(card_file))
    assert registered.exit_code == 0, registered.output
    code = re.search(r"Write down your suspension code: (\S+) — the call centre asks for it if your phone is lost",
                     registered.stdout).group(1)
    assert CODE.match(code)
    (registration_id,) = service.registrations

    status = run("status")
    assert f"registration    {registration_id}\n" in status.stdout
    assert f"suspension code {code}\n" in status.stdout and "SUSPENDED" not in status.stdout
    document = json.loads(run("status", "--json").stdout)
    assert (document["registration_id"], document["suspension_code"]) == (registration_id, code)

    service.suspend(registration_id, reason="stolen")
    status = run("status")
    assert re.search(r"SUSPENDED by the call centre \(reason: stolen\) on \d{4}-\d\d-\d\d \d\d:\d\d JST\. "
                     r"Lift it with: jpki-app lift-suspension --card FILE\n", status.stdout), status.stdout
    assert re.search(r"last change     suspended by operator, \d{4}-", status.stdout)
    assert re.search(r"signature +serial \w+ +held +in SE", status.stdout)

    lifted = run("lift-suspension", "--card", str(card_file))
    assert lifted.exit_code == 0, lifted.output
    assert f"lifted the suspension: registration {registration_id} is active" in lifted.stdout
    assert "the user-authentication certificate is reinstated (same serial)" in lifted.stdout
    old_serial = service.registrations[registration_id].certificates[0].serial
    assert f"(the old one, {old_serial}, is revoked)" in lifted.stdout
    assert re.search(r"signature +serial \w+ +good +in SE", lifted.stdout)
    for result in (registered, status, lifted):
        assert CARD_PASSWORD not in result.output and PHONE_PASSWORD not in result.output

    refused = run("lift-suspension", "--card", str(card_file))
    assert refused.exit_code == 1 and refused.stderr.startswith("error: registration ")
    assert "nothing to lift" in refused.stderr and refused.stderr.count("\n") == 1


def test_the_cli_tells_a_reissue_is_needed_and_lifts_with_json(run, service, card_file):
    assert run("register", "--card", str(card_file)).exit_code == 0
    (registration_id,) = service.registrations
    service.suspend(registration_id)
    service.supervisor_lift(registration_id)

    status = run("status")
    assert re.search(r"The call centre lifted the suspension on \d{4}-\d\d-\d\d \d\d:\d\d JST: .* no valid "
                     r"signature certificate .* Reissue it with: jpki-app lift-suspension --card FILE\n",
                     status.stdout), status.stdout

    service.lift_outcome = LiftOutcome.PENDING
    lifted = run("lift-suspension", "--card", str(card_file), "--json")
    assert lifted.exit_code == 0, lifted.output
    document = json.loads(lifted.stdout)
    assert re.search(r"signature +serial - +pending +not in SE", run("status").stdout)
    assert document["registration"]["ca_sync"] == "pending" and "signature" not in document["secure_element"]
    assert document["secure_element"]["authentication"] == service.certificate(registration_id, "authentication").serial

    service.ca_catches_up(registration_id)
    status = run("status")
    assert "the signature certificate was written into the secure element" in status.stdout
    assert "Reissue it" not in status.stdout


def test_the_cli_lift_wants_a_readable_card_before_the_password(run, tmp_path):
    result = run("lift-suspension", "--card", str(tmp_path / "missing.json"))
    assert result.exit_code == 1 and result.stderr == f"error: no card file at {tmp_path / 'missing.json'}\n"
