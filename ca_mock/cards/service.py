"""The municipal-office step: make a simulated My Number card with certificates from this CA.

A card file holds the card's two key pairs, each encrypted under its own secret (so reading the
file does not give the key), its two certificates, the CA chain, and the retry counters the
card reader (``app_client``) decrements. It never holds the Individual Number.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca_mock.authorities.service import load_hierarchy
from ca_mock.certificates.schemas import IssueRequest, PersonIn
from ca_mock.certificates.service import issue_certificate
from ca_mock.settings import CASettings
from jpki_common import keys
from jpki_common.card_rules import (
    CARD_FORMAT,
    PIN_TRIES,
    SIGNATURE_PASSWORD_TRIES,
    check_pin,
    normalise_signature_password,
)
from jpki_common.profiles import AUTHENTICATION_CA, ROOT, SIGNATURE_CA
from jpki_common.store import Store


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def issue_card(
    store: Store, settings: CASettings, person: PersonIn, signature_password: str, pin: str
) -> dict[str, Any]:
    """Make the card's keys, have this CA certify them, and return the card's content."""
    signature_password = normalise_signature_password(signature_password)
    pin = check_pin(pin)
    hierarchy = load_hierarchy(store)
    card_id = uuid.uuid4().hex
    slots = {}
    for slot, profile, secret, tries in (
        ("signature", "card-signature", signature_password, SIGNATURE_PASSWORD_TRIES),
        ("authentication", "card-authentication", pin, PIN_TRIES),
    ):
        key = keys.generate_private_key(hierarchy.key_algorithm)
        issued = issue_certificate(store, settings, IssueRequest(
            operation_id=f"card-{card_id}-{slot}", profile=profile, csr_pem=keys.csr_pem(key, "card"),
            person=person if profile == "card-signature" else None,
        ))
        slots[slot] = {
            "certificate_pem": issued["certificate_pem"],
            "serial": issued["serial"],
            "private_key_pem": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(secret.encode()),
            ).decode(),
            "tries_left": tries,
            "max_tries": tries,
        }
    return {
        "format": CARD_FORMAT,
        "card_id": card_id,
        "signature": slots["signature"],
        "authentication": slots["authentication"],
        "chain": {
            name: _pem(hierarchy.get(name).certificate) for name in (ROOT, SIGNATURE_CA, AUTHENTICATION_CA)
        },
    }


def write_card(card: dict[str, Any], path: Path) -> None:
    """Write the card file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(card, handle, ensure_ascii=False, indent=2)
