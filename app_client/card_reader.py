"""The phone's NFC reader, pointed at a simulated My Number card file (``jpki-ca card issue``).

The card file (format ``jpki-mock-card/1``, see ca_mock/cards/service.py) holds each slot's key
PKCS#8-encrypted under that slot's secret, so "the card checks the password" here means the
decryption succeeds. A failure spends a try that is written back into the card file at once
(``tries_left``); at 0 the slot is locked and the right secret is refused too, as on the card.
Secrets are never logged, stored or echoed.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app_client import storage
from app_client.errors import AppError
from app_client.messages import _
from app_client.owner_secrets import CARD_PASSWORD, CARD_PIN, OwnerSecret
from app_client.retry_counter import spend_try
from jpki_common.card_rules import CARD_FORMAT
from jpki_common.keys import CAPrivateKey
from jpki_common.owner_proof import sign_message


@dataclass(frozen=True)
class _Slot:
    name: str
    secret: OwnerSecret


SIGNATURE = _Slot("signature", CARD_PASSWORD)
AUTHENTICATION = _Slot("authentication", CARD_PIN)


class CardReader:
    def __init__(self, card_file: Path) -> None:
        self.card_file = card_file
        card = self._read()
        self.card_id: str = card["card_id"]
        self.signature_certificate_pem: str = card["signature"]["certificate_pem"]
        self.authentication_certificate_pem: str = card["authentication"]["certificate_pem"]
        self.chain: dict[str, str] = dict(card["chain"])  # root, sign, auth: the CA's certificates

    def tries_left(self, slot: _Slot = SIGNATURE) -> int:
        return int(self._read()[slot.name]["tries_left"])

    def sign_proof(self, card_password: str, message: bytes) -> str:
        """Unlock the card signature key with the card password and sign a proof message."""
        return sign_message(self._unlock(SIGNATURE, card_password), message)

    def sign_with_pin(self, pin: str, message: bytes) -> str:
        """Unlock the card user-authentication key with the card PIN and sign ``message``."""
        return sign_message(self._unlock(AUTHENTICATION, pin), message)

    def _unlock(self, slot: _Slot, secret: str) -> CAPrivateKey:
        # A secret that breaks the card's rule is refused by the app before the card sees it: no try spent.
        candidate = slot.secret.check(secret)
        with storage.exclusive(self.card_file.parent):
            card = self._read()
            data = card[slot.name]
            key = spend_try(data, lambda: storage.write_json(self.card_file, card),
                            functools.partial(_decrypt, data["private_key_pem"], candidate), slot.secret.name,
                            _("the municipal office can reset it"))
            return cast(CAPrivateKey, key)  # mypy cannot solve T | None against a two-type union

    def _read(self) -> dict[str, Any]:
        try:
            card = storage.read_json(self.card_file)
        except FileNotFoundError:
            raise AppError(_("no card file at {path}").format(path=self.card_file)) from None
        except ValueError as exc:
            raise AppError(_("{path} is not a card file: {reason}").format(path=self.card_file, reason=exc)) from None
        if card.get("format") != CARD_FORMAT:
            raise AppError(_("{path} is not a card file of format {format}").format(path=self.card_file,
                                                                                  format=CARD_FORMAT))
        return card


def _decrypt(private_key_pem: str, secret: str) -> CAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=secret.encode())
    except ValueError:  # wrong secret: the decryption fails
        return None
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return key
