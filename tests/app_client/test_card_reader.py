"""The NFC card reader on a card file made by the mock CA: proofs, and the card's own retry
counters, written back into the card file."""
from __future__ import annotations

import json
import stat

import pytest
from cryptography import x509

from app_client.card_reader import AUTHENTICATION, SIGNATURE, CardReader
from app_client.errors import AppError, SecretLocked, WrongSecret
from jpki_common.card_rules import SecretRuleViolation
from jpki_common.owner_proof import proof_message, signature_verifies
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, card_slot

MESSAGE = proof_message("register", None, "challenge-1", "nonce")


def _verifies(certificate_pem: str, signature: str) -> bool:
    return signature_verifies(x509.load_pem_x509_certificate(certificate_pem.encode()).public_key(), MESSAGE,
                              signature)


def test_the_card_signs_a_proof_its_certificate_verifies(card_file):
    reader = CardReader(card_file)
    signature = reader.sign_proof(CARD_PASSWORD, MESSAGE)
    assert _verifies(reader.signature_certificate_pem, signature)
    assert not _verifies(reader.authentication_certificate_pem, signature)
    assert set(reader.chain) == {"root", "sign", "auth"}
    # Lower case is folded, as the app does when the owner types it.
    assert _verifies(reader.signature_certificate_pem, reader.sign_proof(CARD_PASSWORD.lower(), MESSAGE))


def test_a_wrong_card_password_is_counted_in_the_card_file(card_file):
    reader = CardReader(card_file)
    with pytest.raises(WrongSecret, match="wrong card signature password: 4 tries left") as refused:
        reader.sign_proof("WRONG999", MESSAGE)
    assert "WRONG999" not in str(refused.value)
    assert card_slot(card_file)["tries_left"] == 4
    assert CardReader(card_file).tries_left(SIGNATURE) == 4
    # The card file keeps its format and its owner-only mode.
    card = json.loads(card_file.read_text())
    assert card["format"] == "jpki-mock-card/1" and card["signature"]["max_tries"] == 5
    assert stat.S_IMODE(card_file.stat().st_mode) == 0o600
    assert CARD_PASSWORD not in card_file.read_text()


def test_five_wrong_card_passwords_lock_the_card_signature_key(card_file):
    reader = CardReader(card_file)
    for _ in range(4):
        with pytest.raises(WrongSecret):
            reader.sign_proof("WRONG999", MESSAGE)
    with pytest.raises(WrongSecret, match="now locked; the municipal office can reset it"):
        reader.sign_proof("WRONG999", MESSAGE)
    assert card_slot(card_file)["tries_left"] == 0

    with pytest.raises(SecretLocked, match="card signature password is locked after 5 wrong entries"):
        CardReader(card_file).sign_proof(CARD_PASSWORD, MESSAGE)
    assert card_slot(card_file)["tries_left"] == 0
    # The PIN slot has its own counter.
    assert card_slot(card_file, "authentication")["tries_left"] == 3


def test_the_right_card_password_resets_the_counter(card_file):
    reader = CardReader(card_file)
    for _ in range(2):
        with pytest.raises(WrongSecret):
            reader.sign_proof("WRONG999", MESSAGE)
    reader.sign_proof(CARD_PASSWORD, MESSAGE)
    assert card_slot(card_file)["tries_left"] == 5


def test_three_wrong_card_pins_lock_the_pin_slot(card_file):
    reader = CardReader(card_file)
    assert _verifies(reader.authentication_certificate_pem, reader.sign_with_pin(CARD_PIN, MESSAGE))
    for left in (2, 1, 0):
        with pytest.raises(WrongSecret) as refused:
            reader.sign_with_pin("0000", MESSAGE)
        assert refused.value.tries_left == left
    with pytest.raises(SecretLocked):
        reader.sign_with_pin(CARD_PIN, MESSAGE)
    assert reader.tries_left(AUTHENTICATION) == 0
    assert reader.tries_left(SIGNATURE) == 5


def test_a_malformed_secret_never_reaches_the_card(card_file):
    reader = CardReader(card_file)
    with pytest.raises(SecretRuleViolation):
        reader.sign_proof("abc", MESSAGE)
    with pytest.raises(SecretRuleViolation):
        reader.sign_with_pin("12", MESSAGE)
    assert reader.tries_left(SIGNATURE) == 5 and reader.tries_left(AUTHENTICATION) == 3


def test_what_is_not_a_card_is_refused_clearly(tmp_path):
    with pytest.raises(AppError, match="no card file at"):
        CardReader(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(AppError, match="is not a card file"):
        CardReader(tmp_path / "text.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(AppError, match="jpki-mock-card/1"):
        CardReader(tmp_path / "other.json")
