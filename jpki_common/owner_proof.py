"""The owner-proof protocol shared by the service and the phone app: one place, so both sides
sign and check exactly the same bytes.

Every owner request is proven by a signature over a fresh, single-use, short-lived challenge
from the service, bound to the action and the registration (DESIGN.md section 5). The signed
message is line-based UTF-8::

    jpki-lifecycle-proof/1
    <action>
    <registration id, or "-" when registering>
    <challenge id>
    <nonce, base64url>

RSA keys sign with PKCS#1 v1.5 / SHA-256, P-256 keys with ECDSA / SHA-256; signatures travel
base64-encoded.
"""
from __future__ import annotations

import base64
import binascii
import enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

PROOF_VERSION = "jpki-lifecycle-proof/1"


class Action(str, enum.Enum):
    """What a challenge may be spent on; a proof for one action never serves another."""

    REGISTER = "register"
    REVOKE = "revoke"
    RESET_PASSWORD = "reset-password"
    UNINSTALL = "uninstall"
    STALE_CERTIFICATE = "stale-certificate"
    LIFT_SUSPENSION = "lift-suspension"
    LOGIN = "login"


def proof_message(action: Action | str, registration_id: str | None, challenge_id: str, nonce: str) -> bytes:
    action = Action(action)
    return "\n".join([PROOF_VERSION, action.value, registration_id or "-", challenge_id, nonce]).encode()


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
