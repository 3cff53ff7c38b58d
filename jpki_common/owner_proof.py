"""The owner-proof protocol shared by the service and the phone app: one place, so both sides
sign and check exactly the same bytes.

Every owner request is proven by a signature over a fresh, single-use, short-lived challenge
from the service, bound to the action, the registration and everything the request authorises
(DESIGN.md section 5; docs/service-api.md, "Owner proofs"). The signed message is line-based
UTF-8, lines joined by "\n", no trailing newline::

    jpki-lifecycle-proof/2
    <action>
    <target: the registration id; the case reference for card-revoke and card-suspend; "-" when
     registering and for card-list>
    <challenge id>
    <nonce, base64url>
    <authorised: lower-case hex SHA-256 of what the request authorises, or "-" when it carries no key>

The *authorised* digest (:func:`authorised_digest`) is the SHA-256 of these lines, UTF-8, joined
by "\n", no trailing newline, each value the lower-case hex SHA-256 of a DER encoding, "-" when
the request carries no such item::

    jpki-authorised/1
    signature-csr <SHA-256 of the signature CSR's DER (the bytes inside its PEM armour)>
    authentication-csr <SHA-256 of the authentication CSR's DER>
    device-key <SHA-256 of the device public key's SubjectPublicKeyInfo DER>

so a CSR or a device key swapped after the owner signed no longer matches the signature.

Version 1 (``jpki-lifecycle-proof/1``: the first five lines, no *authorised* line) covers no key.
It is accepted only for a request that carries none (revoke, uninstall, stale certificate,
password reset, relying-party login); a request carrying a CSR or a device key (register, lift)
needs version 2 (:func:`version_accepted`). The version is the message's first line, so a proof
names no version on the wire: the verifier rebuilds each accepted version's message and sees
which one the signature covers (:func:`signed_version`).

RSA keys sign with PKCS#1 v1.5 / SHA-256, P-256 keys with ECDSA / SHA-256; signatures travel
base64-encoded.
"""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

PROOF_VERSION = "jpki-lifecycle-proof/2"
PROOF_VERSION_1 = "jpki-lifecycle-proof/1"
PROOF_VERSIONS = (PROOF_VERSION, PROOF_VERSION_1)  # newest first: the order a verifier tries them in
AUTHORISED_FORMAT = "jpki-authorised/1"
NOTHING_AUTHORISED = "-"


class Action(str, enum.Enum):
    """What a challenge may be spent on; a proof for one action never serves another."""

    REGISTER = "register"
    REVOKE = "revoke"
    RESET_PASSWORD = "reset-password"
    UNINSTALL = "uninstall"
    STALE_CERTIFICATE = "stale-certificate"
    LIFT_SUSPENSION = "lift-suspension"
    OWNER_TOKEN = "owner-token"  # the device key asks for a new owner token (reads the registration)
    LOGIN = "login"
    # The card alone, from any phone or PC with a card reader (docs/service-api.md, "The card as the owner's
    # master key"): the owner's registrations found by the card's person key, each named by its case reference.
    CARD_LIST = "card-list"
    CARD_REVOKE = "card-revoke"
    CARD_SUSPEND = "card-suspend"
    EMAIL = "email"  # the card sets (or clears) the e-mail address owner notices go to
    # A dealer's erasure receipt: the secure element's attestation key signs what it holds (no registration;
    # jpki_common/se_attestation.py, docs/dealers.md).
    DEALER_RECEIPT = "dealer-receipt"


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def csr_der(csr_pem: str) -> bytes:
    """The DER of a PEM PKCS#10 request (ValueError if it is not one)."""
    return x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)


def public_key_der(public_key_pem: str) -> bytes:
    """The SubjectPublicKeyInfo DER of a PEM public key (ValueError if it is not one)."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def authorised_digest(*, signature_csr_pem: str | None = None, authentication_csr_pem: str | None = None,
                      device_public_key_pem: str | None = None) -> str:
    """The *authorised* line of a proof: what the request asks to have certified or registered.

    ``"-"`` when the request carries none of them; ValueError for a malformed CSR or key (the
    service checks its input before it builds this).
    """
    items = [
        ("signature-csr", csr_der(signature_csr_pem) if signature_csr_pem is not None else None),
        ("authentication-csr", csr_der(authentication_csr_pem) if authentication_csr_pem is not None else None),
        ("device-key", public_key_der(device_public_key_pem) if device_public_key_pem is not None else None),
    ]
    if all(der is None for _, der in items):
        return NOTHING_AUTHORISED
    lines = [AUTHORISED_FORMAT] + [f"{label} {_sha256_hex(der) if der is not None else '-'}" for label, der in items]
    return _sha256_hex("\n".join(lines).encode())


EMAIL_FORMAT = "jpki-notice-address/1"


def email_digest(email: str | None, login_notices: bool) -> str:
    """The *authorised* line of an e-mail change (action ``email``): the lower-case hex SHA-256 of
    ``jpki-notice-address/1``, the address (or "-" to remove it) and ``login-notices yes|no``, UTF-8,
    joined by "\n", no trailing newline: an address swapped after the card signed no longer matches."""
    lines = [EMAIL_FORMAT, email if email is not None else "-", f"login-notices {'yes' if login_notices else 'no'}"]
    return _sha256_hex("\n".join(lines).encode())


def proof_message(action: Action | str, registration_id: str | None, challenge_id: str, nonce: str,
                  authorised: str = NOTHING_AUTHORISED, *, version: str = PROOF_VERSION) -> bytes:
    """The exact bytes an owner signs. ``authorised``: :func:`authorised_digest` of the request.
    ``registration_id``: the target (for card-revoke and card-suspend, the case reference)."""
    action = Action(action)
    lines = [version, action.value, registration_id or "-", challenge_id, nonce]
    if version == PROOF_VERSION:
        lines.append(authorised)
    elif version != PROOF_VERSION_1:
        raise ValueError(f"unknown proof version {version!r}")
    elif authorised != NOTHING_AUTHORISED:
        raise ValueError(f"{PROOF_VERSION_1} covers no key: it cannot prove a request that carries one")
    return "\n".join(lines).encode()


def version_accepted(version: str, authorised: str) -> bool:
    """Whether a proof of ``version`` may prove a request with this *authorised* digest."""
    return version == PROOF_VERSION or (version == PROOF_VERSION_1 and authorised == NOTHING_AUTHORISED)


@dataclass(frozen=True)
class ProofChallenge:
    """A spent challenge: what, besides the request's keys, every proof for it signs."""

    action: Action
    registration_id: str | None
    challenge_id: str
    nonce: str

    def message(self, authorised: str = NOTHING_AUTHORISED, version: str = PROOF_VERSION) -> bytes:
        return proof_message(self.action, self.registration_id, self.challenge_id, self.nonce, authorised,
                             version=version)

    def signed_version(self, public_key: object, authorised: str, signature_b64: str) -> str | None:
        """The proof version whose message (for this request's ``authorised``) the signature covers.

        Version 1 is tried whatever the request carries, so that a version-1 proof of a request
        carrying keys can be refused by name (:func:`version_accepted`); None: it covers none.
        """
        for version in PROOF_VERSIONS:
            message = self.message(authorised if version == PROOF_VERSION else NOTHING_AUTHORISED, version)
            if signature_verifies(public_key, message, signature_b64):
                return version
        return None


def sign_message(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, message: bytes) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        raise TypeError(f"unsupported key type {type(private_key).__name__}")
    return base64.b64encode(signature).decode()


def verify_signature(public_key: object, message: bytes, signature: bytes,
                     algorithm: hashes.HashAlgorithm | None = None) -> bool:
    """True only for a signature by ``public_key`` over ``message`` (RSA PKCS#1 v1.5 or ECDSA)."""
    algorithm = algorithm or hashes.SHA256()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def signature_verifies(public_key: object, message: bytes, signature_b64: str) -> bool:
    """True only for a well-formed base64 signature by ``public_key`` over ``message``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    return verify_signature(public_key, message, signature)
