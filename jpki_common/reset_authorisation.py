"""The password-reset authorisation: a statement signed by the lifecycle service that the secure
element checks before it accepts a new phone signature password (issue 12, item 7).

The service issues it once the card that registered the phone has proven itself
(``POST /api/v1/registrations/{id}/reset-password``); the SE verifies it with the service's
statement key, pinned when the phone registered, and refuses an unsigned, forged, expired or
foreign one (another registration, another key). Defined here once, so both sides build exactly
the same bytes (docs/service-api.md, "The reset authorisation").

The signed statement is UTF-8, seven lines joined by "\\n", no trailing newline::

    jpki-reset-authorisation/1
    password-reset
    <registration id>
    <key fingerprint: lower-case hex SHA-256 of the SubjectPublicKeyInfo DER of the phone signature key>
    <statement id: the id of the reset-password challenge the card signed>
    <issued at: YYYY-MM-DDTHH:MM:SSZ, UTC>
    <expires at: YYYY-MM-DDTHH:MM:SSZ, UTC>

signed with the service's Ed25519 statement key; the signature travels base64-encoded.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from jpki_common.keys import public_key_fingerprint

STATEMENT_VERSION = "jpki-reset-authorisation/1"
PURPOSE_PASSWORD_RESET = "password-reset"
LIFETIME = dt.timedelta(minutes=5)  # what the service gives a statement
MAX_LIFETIME = dt.timedelta(minutes=10)  # the longest the SE accepts, whatever the statement says
CLOCK_SKEW = dt.timedelta(minutes=2)  # a statement "issued" this far in the SE's future still passes
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = ("version", "purpose", "registration_id", "key_fingerprint", "statement_id", "issued_at", "expires_at",
           "signature")


class StatementRefused(Exception):
    """The reset authorisation is not one the SE may act on; the message says why."""


def key_fingerprint(public_key_pem: str) -> str:
    """Lower-case hex SHA-256 of a PEM public key's SubjectPublicKeyInfo DER (:func:`keys.public_key_fingerprint`)."""
    return public_key_fingerprint(serialization.load_pem_public_key(public_key_pem.encode()))


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str, field: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise StatementRefused(f"the reset authorisation's {field} is not a UTC time like 2026-01-31T12:00:00Z") \
            from None


@dataclass(frozen=True)
class ResetAuthorisation:
    """One statement as it travels (JSON, every value a string)."""

    registration_id: str
    key_fingerprint: str
    statement_id: str
    issued_at: str
    expires_at: str
    signature: str = ""
    purpose: str = PURPOSE_PASSWORD_RESET
    version: str = STATEMENT_VERSION

    def message(self) -> bytes:
        """The exact bytes the service signs."""
        return "\n".join([self.version, self.purpose, self.registration_id, self.key_fingerprint, self.statement_id,
                          self.issued_at, self.expires_at]).encode()

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, document: Any) -> ResetAuthorisation:
        """The statement in an answer; StatementRefused when it is missing, unsigned or malformed."""
        if not isinstance(document, dict):
            raise StatementRefused("the service's answer carries no reset authorisation: an unsigned reset "
                                   "is refused")
        values = {}
        for name in _FIELDS:
            value = document.get(name)
            if not isinstance(value, str) or not value or "\n" in value:
                what = "signature" if name == "signature" else f"a valid {name}"
                raise StatementRefused(f"the reset authorisation has no {what}: refused")
            values[name] = value
        return cls(**values)


def issue(signing_key: ed25519.Ed25519PrivateKey, registration_id: str, signature_key_fingerprint: str,
          statement_id: str, now: dt.datetime | None = None, lifetime: dt.timedelta = LIFETIME) -> ResetAuthorisation:
    """The service's statement that this registration's SE may reset the password of that key."""
    now = now or dt.datetime.now(dt.UTC)
    unsigned = ResetAuthorisation(registration_id, signature_key_fingerprint, statement_id, format_time(now),
                                  format_time(now + lifetime))
    signature = base64.b64encode(signing_key.sign(unsigned.message())).decode()
    return ResetAuthorisation(registration_id, signature_key_fingerprint, statement_id, unsigned.issued_at,
                              unsigned.expires_at, signature)


def verify(authorisation: ResetAuthorisation, service_key_pem: str, registration_id: str,
           signature_key_fingerprint: str, now: dt.datetime | None = None) -> None:
    """Accept only a statement signed by the service's key, for a password reset of this very
    registration and key, and fresh; StatementRefused saying why otherwise."""
    service_key = serialization.load_pem_public_key(service_key_pem.encode())
    if not isinstance(service_key, ed25519.Ed25519PublicKey):
        raise StatementRefused("the pinned service statement key is not an Ed25519 key")
    try:
        signature = base64.b64decode(authorisation.signature, validate=True)
        service_key.verify(signature, authorisation.message())
    except (binascii.Error, ValueError, InvalidSignature):
        raise StatementRefused("the reset authorisation is not signed by the service's statement key: "
                               "forged or altered, refused") from None
    if authorisation.version != STATEMENT_VERSION or authorisation.purpose != PURPOSE_PASSWORD_RESET:
        raise StatementRefused(f"the statement is a {authorisation.version} {authorisation.purpose}, "
                               f"not a {STATEMENT_VERSION} {PURPOSE_PASSWORD_RESET}")
    if authorisation.registration_id != registration_id:
        raise StatementRefused(f"the reset authorisation is for registration {authorisation.registration_id}, "
                               f"not {registration_id}")
    if authorisation.key_fingerprint != signature_key_fingerprint:
        raise StatementRefused("the reset authorisation is for another signature key than the one in this "
                               "secure element")
    now = now or dt.datetime.now(dt.UTC)
    issued_at = _parse_time(authorisation.issued_at, "issued_at")
    expires_at = _parse_time(authorisation.expires_at, "expires_at")
    if issued_at > now + CLOCK_SKEW:
        raise StatementRefused(f"the reset authorisation is issued in the future ({authorisation.issued_at})")
    if expires_at - issued_at > MAX_LIFETIME:
        raise StatementRefused(f"the reset authorisation claims to live longer than {MAX_LIFETIME}")
    if now >= expires_at:
        raise StatementRefused(f"the reset authorisation expired at {authorisation.expires_at}; ask again")
