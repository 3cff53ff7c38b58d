"""The use cases' phone-side parts: what stays in the SE, what the app data loses, and what is
refused before anything is sent.

The service URL points at a port nobody listens on: a flow that tried to reach the service
would fail with ServiceUnreachable, so these tests also prove nothing was sent.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app_client import flows
from app_client.app_data import AppState
from app_client.card_reader import SIGNATURE, CardReader
from app_client.errors import NotRegistered, StaleCertificates
from app_client.secure_element import KeySlot, SecureElement
from app_client.service_client import ServiceUnreachable
from jpki_common.card_rules import SecretRuleViolation
from tests.app_client.conftest import CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN
from tests.conftest import free_port

REGISTRATION = "0123456789abcdef0123456789abcdef"


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def offline_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def phone(se: SecureElement, offline_url: str) -> flows.Phone:
    """A phone whose SE holds a bound registration this installation knows (as after register)."""
    se.bind(REGISTRATION)
    phone = flows.open_phone(se.folder.parent, offline_url)
    phone.app_data.save(AppState(registration_id=REGISTRATION, service_url=offline_url, device_model="Pixel 9"))
    return phone


def test_factory_reset_erases_the_app_data_and_leaves_the_se_as_it_was(phone):
    before = _fingerprint(phone.se.folder)

    flows.factory_reset(phone)

    assert not phone.app_data.exists() and not phone.app_data.folder.exists()
    assert _fingerprint(phone.se.folder) == before
    assert phone.se.registration_id == REGISTRATION


def test_after_a_factory_reset_the_left_certificates_are_stale_until_install(phone):
    flows.factory_reset(phone)
    for use in (lambda: flows.status(phone), lambda: flows.revoke(phone, PHONE_PASSWORD),
                lambda: flows.login(phone, PHONE_PIN)):
        with pytest.raises(StaleCertificates, match=f"registration {REGISTRATION} from an earlier installation"):
            use()
    # install is what reports them: it needs the service, so offline it fails and changes nothing.
    with pytest.raises(ServiceUnreachable, match="cannot reach the lifecycle service"):
        flows.install(phone)
    assert phone.se.registration_id == REGISTRATION and not phone.app_data.exists()


def test_offline_uninstall_tells_nobody_erases_the_app_data_and_keeps_the_se(phone):
    before = _fingerprint(phone.se.folder)

    report = flows.uninstall(phone, offline=True)

    assert report.registration_id == REGISTRATION and report.registration is None and not report.copy_deleted
    assert not phone.app_data.exists()
    assert _fingerprint(phone.se.folder) == before


def test_online_uninstall_that_cannot_reach_the_service_changes_nothing(phone):
    before = _fingerprint(phone.se.folder)
    with pytest.raises(ServiceUnreachable):
        flows.uninstall(phone)
    assert phone.app_data.exists() and _fingerprint(phone.se.folder) == before


def test_install_discards_keys_of_an_enrolment_the_service_never_accepted(se, offline_url):
    phone = flows.open_phone(se.folder.parent, offline_url)  # keys, but no registration id: never bound
    report = flows.install(phone)
    assert report.discarded_unbound_keys and report.stale_registration_id is None
    assert not phone.se.holds_keys()
    assert phone.app_data.load() == AppState(service_url=offline_url)


def test_install_on_an_empty_phone_and_an_empty_status(tmp_path, offline_url):
    phone = flows.open_phone(tmp_path / "phone", offline_url)
    assert flows.status(phone) == flows.StatusReport(None)
    assert flows.install(phone) == flows.InstallReport(None, None, False)
    assert phone.app_data.load().service_url == offline_url
    # The URL saved at installation is used when none is given.
    assert flows.open_phone(tmp_path / "phone").service.base_url == offline_url
    with pytest.raises(NotRegistered, match="register it first"):
        flows.revoke(phone, PHONE_PASSWORD)


def test_register_checks_the_new_secrets_before_spending_a_challenge_or_a_card_try(tmp_path, card_file,
                                                                                  offline_url):
    phone = flows.open_phone(tmp_path / "phone", offline_url)
    card = CardReader(card_file)
    with pytest.raises(SecretRuleViolation, match="phone signature password must be 6-16 .*at least one of each"):
        flows.register(phone, card, CARD_PASSWORD, "onlyletters", PHONE_PIN)
    with pytest.raises(SecretRuleViolation, match="phone user-authentication PIN must be exactly 4 digits"):
        flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, "12345")
    # Offline, with good secrets, it stops at the challenge: the card is not read, no key is made.
    with pytest.raises(ServiceUnreachable):
        flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)
    assert card.tries_left(SIGNATURE) == 5
    assert not phone.se.holds_keys() and not phone.app_data.exists()


def test_register_is_refused_while_the_se_holds_a_registration(phone, card_file):
    with pytest.raises(Exception, match=f"already registered \\(registration {REGISTRATION}\\)"):
        flows.register(phone, CardReader(card_file), CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)


def test_signing_needs_the_certificate_in_the_se(phone, tmp_path):
    # Bound, but the certificate has not arrived (a 202 registration): refused before any PDF work.
    with pytest.raises(NotRegistered, match="signature certificate has not been issued yet"):
        flows.sign_pdf(phone, tmp_path / "in.pdf", tmp_path / "out.pdf", lambda: PHONE_PASSWORD)
    assert phone.se.view(KeySlot.SIGNATURE).tries_left == 5
