"""The password reset needs the service's signed statement (issue 12, item 7).

The secure element resets the phone signature password only on a statement signed by the
service's statement key (pinned at registration) for this registration and this signature key,
fresh, and used once (jpki_common/reset_authorisation.py). An unsigned, forged, altered, expired
or foreign one is refused, and the old password still works with its counter untouched.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from app_client import flows
from app_client.card_reader import CardReader
from app_client.errors import WrongSecret
from app_client.secure_element import KeySlot, ResetRefused, SecureElement
from app_client.service_client import Proof
from ca_mock.cards.service import issue_card, write_card
from ca_mock.certificates.schemas import PersonIn
from jpki_common import reset_authorisation
from jpki_common.owner_proof import Action
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.helpers import PERSON

SERVICE_KEY = ed25519.Ed25519PrivateKey.generate()  # stands in for the service's statement key
REGISTRATION = "a" * 32


def _pem(key: ed25519.Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _fingerprint(se: SecureElement) -> str:
    return reset_authorisation.key_fingerprint(se.view(KeySlot.SIGNATURE).public_key_pem)


def _bound(se: SecureElement) -> SecureElement:
    if se.registration_id is None:
        se.bind(REGISTRATION, _pem(SERVICE_KEY))
    elif se.service_statement_key_pem is None:
        se.pin_service_statement_key(_pem(SERVICE_KEY))
    return se


def statement_for(se: SecureElement, **changes) -> dict[str, str]:
    """A genuine statement for ``se``, signed by SERVICE_KEY, with ``changes`` to how it is issued."""
    key = changes.pop("key", SERVICE_KEY)
    issued = reset_authorisation.issue(key, changes.pop("registration_id", se.registration_id),
                                       changes.pop("fingerprint", _fingerprint(se)), secrets.token_hex(16),
                                       **changes)
    return issued.to_json()


def authorised_reset(se: SecureElement, new_password: str) -> None:
    """Reset as the app does after the service's answer: with a genuine signed statement."""
    _bound(se)
    se.reset_signature_password(new_password, statement_for(se))


def _assert_unchanged(se: SecureElement, tries_left: int = 5) -> None:
    assert se.view(KeySlot.SIGNATURE).tries_left == tries_left
    with pytest.raises(WrongSecret):
        se.sign(KeySlot.SIGNATURE, "RESET2026PW", b"data")  # the new one was not set
    assert se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")  # the old one still works (and refills the tries)


# -- in the secure element ---------------------------------------------------------------------

def test_the_genuine_statement_resets_the_password(se):
    authorised_reset(se, "reset2026pw")
    assert se.sign(KeySlot.SIGNATURE, "RESET2026PW", b"data")


def _past() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)


FORGERIES = {
    "no authorisation (the old unsigned boolean)": lambda se: None,
    "reset_allowed alone": lambda se: {"reset_allowed": True},
    "no signature": lambda se: {k: v for k, v in statement_for(se).items() if k != "signature"},
    "empty signature": lambda se: statement_for(se) | {"signature": ""},
    "signed by another key": lambda se: statement_for(se, key=ed25519.Ed25519PrivateKey.generate()),
    "registration id altered after signing": lambda se: statement_for(se) | {"registration_id": "b" * 32},
    "expiry altered after signing": lambda se: statement_for(se) | {"expires_at": "2099-01-01T00:00:00Z"},
    "signed for another registration": lambda se: statement_for(se, registration_id="b" * 32),
    "signed for another signature key": lambda se: statement_for(se, fingerprint="0" * 64),
    "expired": lambda se: statement_for(se, now=_past()),
    "issued in the future": lambda se: statement_for(se, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
    "too long a life": lambda se: statement_for(se, lifetime=dt.timedelta(days=1)),
    "another purpose": lambda se: _resigned(statement_for(se) | {"purpose": "unlock"}),
}


def _resigned(document: dict[str, str]) -> dict[str, str]:
    statement = reset_authorisation.ResetAuthorisation.from_json(document)
    return document | {"signature": base64.b64encode(SERVICE_KEY.sign(statement.message())).decode()}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_or_stale_statement_is_refused_and_the_password_stays(se, forgery):
    _bound(se)
    with pytest.raises(ResetRefused, match="password is unchanged"):
        se.reset_signature_password("RESET2026PW", FORGERIES[forgery](se))
    _assert_unchanged(se)


def test_a_statement_serves_once(se):
    _bound(se)
    statement = statement_for(se)
    se.reset_signature_password("RESET2026PW", statement)
    with pytest.raises(ResetRefused, match="already used"):
        se.reset_signature_password("OTHER2026PW", statement)
    assert se.sign(KeySlot.SIGNATURE, "RESET2026PW", b"data")


def test_an_se_with_no_pinned_key_refuses_and_a_pinned_key_is_never_replaced(se):
    se.bind(REGISTRATION)  # as bound before the service sent its statement key
    with pytest.raises(ResetRefused, match="no service statement key"):
        se.reset_signature_password("RESET2026PW", statement_for(se))
    _assert_unchanged(se)
    se.pin_service_statement_key(_pem(SERVICE_KEY))
    se.pin_service_statement_key(_pem(SERVICE_KEY))  # the same again: fine
    with pytest.raises(ResetRefused, match="another service statement key"):
        se.pin_service_statement_key(_pem(ed25519.Ed25519PrivateKey.generate()))
    assert se.service_statement_key_pem == _pem(SERVICE_KEY)


def test_the_pinned_key_goes_with_the_registration(se):
    _bound(se)
    se.delete_registration()
    assert se.service_statement_key_pem is None


# -- through the real service -------------------------------------------------------------------

@pytest.fixture
def card(ca_server, tmp_path: Path) -> CardReader:
    path = tmp_path / "card.json"
    write_card(issue_card(ca_server.store, ca_server.settings, PersonIn(**PERSON), CARD_PASSWORD, CARD_PIN), path)
    return CardReader(path)


def _service_statement(phone: flows.Phone, card: CardReader) -> dict:
    registration_id = phone.se.registration_id
    challenge = phone.service.challenge(Action.RESET_PASSWORD, registration_id)
    proof = Proof(challenge.challenge_id, card.sign_proof(CARD_PASSWORD, challenge.message()),
                  card_certificate_pem=card.signature_certificate_pem)
    return phone.service.reset_password(registration_id, proof)


@pytest.mark.e2e
def test_the_service_signs_the_reset_and_the_se_refuses_a_forgery(service_server, card, tmp_path):
    phone = flows.open_phone(tmp_path / "phone", service_server.url)
    registration = flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)
    published = httpx.get(f"{service_server.url}/api/v1/service-keys/statement").json()
    assert published["algorithm"] == "Ed25519"
    assert phone.se.service_statement_key_pem == published["public_key_pem"] == registration.statement_key_pem

    statement = _service_statement(phone, card)
    assert statement["registration_id"] == registration.registration_id
    assert statement["key_fingerprint"] == _fingerprint(phone.se)
    assert statement["purpose"] == "password-reset" and statement["signature"]

    for forged in (statement | {"registration_id": "b" * 32},
                   {k: v for k, v in statement.items() if k != "signature"},
                   statement_for(phone.se),  # well formed, but signed by a key that is not the service's
                   None):
        with pytest.raises(ResetRefused):
            phone.se.reset_signature_password("RESET2026PW", forged)
        _assert_unchanged(phone.se)

    phone.se.reset_signature_password("RESET2026PW", statement)  # the genuine one
    assert phone.se.sign(KeySlot.SIGNATURE, "RESET2026PW", b"data")
    with pytest.raises(ResetRefused, match="already used"):
        phone.se.reset_signature_password("THIRD2026PW", statement)


@pytest.mark.e2e
def test_an_se_registered_before_pins_the_published_key_at_its_first_reset(service_server, card, tmp_path):
    phone = flows.open_phone(tmp_path / "phone", service_server.url)
    flows.register(phone, card, CARD_PASSWORD, PHONE_PASSWORD, PHONE_PIN)
    state_file = phone.se.folder / "state.json"
    state = json.loads(state_file.read_text())
    del state["service_statement_key_pem"]  # as an SE bound before the service sent its key
    state_file.write_text(json.dumps(state))

    flows.reset_password(phone, card, CARD_PASSWORD, "renewed2026")

    assert phone.se.service_statement_key_pem is not None
    assert phone.se.sign(KeySlot.SIGNATURE, "RENEWED2026", b"data")
