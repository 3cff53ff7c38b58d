"""The My Number card as every part knows it: the format of its file (written by the CA's card
office, read by the phone app) and its secret rules, which the phone's secure element copies.

Signature password: 6-16 characters of A-Z and 0-9, with at least one of each (lower case is
folded to upper, as the app does). User-authentication PIN: exactly 4 digits.
"""
from __future__ import annotations

import re

CARD_FORMAT = "jpki-mock-card/1"

SIGNATURE_PASSWORD_TRIES = 5
PIN_TRIES = 3

_PASSWORD = re.compile(r"^[A-Z0-9]{6,16}$")
_PIN = re.compile(r"^[0-9]{4}$")


class SecretRuleViolation(ValueError):
    """The secret breaks the card rule; the message says which part, never the secret."""


def normalise_signature_password(password: str) -> str:
    folded = password.upper()
    if not _PASSWORD.match(folded):
        raise SecretRuleViolation("the signature password must be 6-16 characters of A-Z and 0-9")
    if folded.isdigit() or folded.isalpha():
        raise SecretRuleViolation("the signature password must contain both letters and digits")
    return folded


def check_pin(pin: str) -> str:
    if not _PIN.match(pin):
        raise SecretRuleViolation("the PIN must be exactly 4 digits")
    return pin
