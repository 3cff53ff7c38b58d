"""Checking a My Number card's proof, as a relying party of the CA would.

The card certificate must be a card-signature certificate of the CA's signature CA (chained to
the root), within its validity, good at the OCSP responder it names, and its key must have
signed the challenge. What the service keeps of the card: its certificate serial and a keyed
hash of its four items (to find the same person's other phones), never the items themselves.

The person key hashes the items as ``holder_data.normalise_item`` spells them (the birth date as
``normalise_birth_date``, the address as ``normalise_address``, the gender code as it is), so a
renewed card that writes the name with an ideographic space, or the address with full-width digits
or as 一丁目1番 for 1-1, is the same person. Keys made before that rule hashed the raw items, and keys
made before spoken addresses spelled the address by ``normalise_item`` alone: ``legacy_person_key``
and ``previous_person_key`` are kept so the registration can find such a person and re-key them
(``registrations/service.py``, ``_lock_person``). An address that has no block number spoken out
(1-1) keeps the key it had.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from jpki_common.owner_proof import signature_verifies
from jpki_common.problems import pem_reason
from jpki_common.profiles import PROFILES, personal_data_of
from jpki_service.adapters.ca_client import CAClient, CAUnavailable
from jpki_service.adapters.ocsp_verification import OCSPAnswerRefused
from jpki_service.common.problems import CAUnreachable, InvalidInput, ProofRejected, StatusUnverified
from jpki_service.holder_data import normalise_address, normalise_birth_date, normalise_item

CARD_SIGNATURE_POLICY = x509.ObjectIdentifier(PROFILES["card-signature"].policy_oid)


@dataclass(frozen=True)
class VerifiedCard:
    serial: str
    person: dict[str, str]  # the four items, for the phone signature certificate only; not stored
    person_key: str
    legacy_person_key: str  # the key as made before items were normalised; to find and re-key old rows
    previous_person_key: str  # the key as made before spoken addresses (block numbers); likewise


def load_certificate(pem: str, field: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a PEM certificate: {pem_reason(exc, 'CERTIFICATE')}", field=field) from None


def _person(certificate: x509.Certificate) -> dict[str, str]:
    try:
        person = personal_data_of(certificate)
    except x509.ExtensionNotFound:
        raise ProofRejected("the card certificate carries no subjectAltName: not a signature certificate") from None
    except (KeyError, ValueError):
        raise ProofRejected("the card certificate lacks one of the four items") from None
    return {"name": person.name, "gender": person.gender, "address": person.address,
            "date_of_birth": person.date_of_birth.isoformat()}


_PERSON_KEY_VERSION = "person-key/2"


def person_of_certificate(pem: str) -> dict[str, str] | None:
    """The four items a (phone or card) signature certificate carries, or None if it carries none."""
    try:
        return _person(x509.load_pem_x509_certificate(pem.encode()))
    except (ValueError, ProofRejected):
        return None


def person_key(secret: bytes, person: dict[str, str], address: Callable[[str], str] = normalise_address) -> str:
    """The keyed hash of the four items, each in its one canonical spelling: equal person, equal key.
    (``address``: the address's spelling; only ``previous_person_key`` passes another.)"""
    items = (normalise_item(person["name"]), normalise_birth_date(person["date_of_birth"], "date_of_birth"),
             person["gender"], address(person["address"]))
    material = "\x1f".join((_PERSON_KEY_VERSION, *items))
    return hmac.new(secret, material.encode(), hashlib.sha256).hexdigest()


def previous_person_key(secret: bytes, person: dict[str, str]) -> str:
    """The key as made before spoken addresses (the address by ``normalise_item`` alone); only to find old rows."""
    return person_key(secret, person, address=normalise_item)


def legacy_person_key(secret: bytes, person: dict[str, str]) -> str:
    """The key of the raw items, as made before ``person_key`` normalised them; only to find old rows."""
    material = "\x1f".join(person[k] for k in ("name", "date_of_birth", "gender", "address"))
    return hmac.new(secret, material.encode(), hashlib.sha256).hexdigest()


def verify_card_proof(ca: CAClient, certificate_pem: str, message: bytes, signature: str,
                      secret: bytes) -> VerifiedCard:
    card = load_certificate(certificate_pem, "proof.card_certificate_pem")
    try:
        sign_ca, root = ca.ca_certificate("sign"), ca.ca_certificate("root")
        try:
            card.verify_directly_issued_by(sign_ca)
            sign_ca.verify_directly_issued_by(root)
        except Exception:
            raise ProofRejected("the card certificate was not issued by the JPKI signature CA") from None
        try:
            policies = card.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except x509.ExtensionNotFound:
            policies = x509.CertificatePolicies([])
        if CARD_SIGNATURE_POLICY not in [p.policy_identifier for p in policies]:
            raise ProofRejected("the certificate is not a card signature certificate")
        now = dt.datetime.now(dt.UTC)
        if not card.not_valid_before_utc <= now <= card.not_valid_after_utc:
            raise ProofRejected("the card certificate is outside its validity period")
        if not signature_verifies(card.public_key(), message, signature):
            raise ProofRejected("the card's signature over the challenge does not verify")
        answer = ca.ocsp_status(card, sign_ca)
    except CAUnavailable as exc:
        raise CAUnreachable(f"the card cannot be checked now: {exc}") from None
    except OCSPAnswerRefused as exc:
        raise StatusUnverified(f"the card's status could not be verified: {exc}") from None
    if answer.status != "good":
        raise ProofRejected(f"the card certificate is {answer.status} at the CA"
                            + (f" ({answer.reason})" if answer.reason else ""))
    person = _person(card)
    return VerifiedCard(format(card.serial_number, "x"), person, person_key(secret, person),
                        legacy_person_key(secret, person), previous_person_key(secret, person))
