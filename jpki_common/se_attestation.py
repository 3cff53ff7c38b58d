"""How a phone's secure element shows what it holds: a statement signed by its *attestation key*,
whose certificate the SE's maker issued (as Android key attestation does). Shared by the phone app,
which makes the statement, and the lifecycle service, which checks it (docs/dealers.md).

The statement is UTF-8 JSON, sent as the exact bytes the SE signed (base64), so nobody has to
re-encode it the same way; the signature is the owner-proof protocol's (ECDSA P-256 / SHA-256,
base64: :func:`jpki_common.owner_proof.sign_message`)::

    {"format": "jpki-se-statement/1", "action": "dealer-receipt", "challenge_id": ..., "nonce": ...,
     "held": [{"registration_id": <id or null>, "slots": ["signature", ...]}],
     "ended": [<registration ids whose keys this SE deleted, newest last>]}

held is empty when the SE holds no JPKI key or certificate. The *device* is named by the
lower-case hex SHA-256 of the attestation key's SubjectPublicKeyInfo DER (:func:`device_id`).

THIS IS A SIMULATION. A real maker's attestation root key lives in the maker's HSM and the
attestation key in the chip. Here the simulated maker's key is in app_client/se_maker.py, beside
the simulator, so anyone with this source can make an attestation the service accepts: the
attestation proves the protocol, not real hardware. :data:`SIMULATED_MAKER_CA_PEM` is the
simulated maker's root certificate, the service's default trust (JPKI_SE_MAKER_CA_FILE replaces it).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from jpki_common.owner_proof import Action, signature_verifies

STATEMENT_FORMAT = "jpki-se-statement/1"
DEALER_ACTION = Action.DEALER_RECEIPT.value

SIMULATED_MAKER_CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIICCDCCAa2gAwIBAgIUPzMTgsmwvAWDzGAKfHb6x+SFI0IwCgYIKoZIzj0EAwIw
YDEwMC4GA1UECgwnU2ltdWxhdGVkIFNFIG1ha2VyIChqcGtpLWFwcCBzaW11bGF0
b3IpMSwwKgYDVQQDDCNTaW11bGF0ZWQgU0UgbWFrZXIgYXR0ZXN0YXRpb24gcm9v
dDAeFw0yNjAxMDEwMDAwMDBaFw00NjAxMDEwMDAwMDBaMGAxMDAuBgNVBAoMJ1Np
bXVsYXRlZCBTRSBtYWtlciAoanBraS1hcHAgc2ltdWxhdG9yKTEsMCoGA1UEAwwj
U2ltdWxhdGVkIFNFIG1ha2VyIGF0dGVzdGF0aW9uIHJvb3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATzdPOiw3e0LJwYUdpKqFPjy2UvNh06OJpyZofguZmnnL9r
vKDhxW2CBQjYR5S0RHC9Isb1ib7vsV6VCsB2Rc6yo0UwQzASBgNVHRMBAf8ECDAG
AQH/AgEAMA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUQV3LbzQ0Wue2zVreyqso
2kjrHqEwCgYIKoZIzj0EAwIDSQAwRgIhAL2v8gP6/zXaxjDAMLY9LJ7+Ye1rTpbf
KdqhDT19rSedAiEAp2xKU+9/dhxJ3rpCMtn6z//mJuDdR0mc+ppAl/uyMAo=
-----END CERTIFICATE-----
"""


class AttestationRefused(ValueError):
    """The attestation certificate, the statement or its signature is not good (the reason says which)."""


@dataclass(frozen=True)
class Statement:
    """What the SE said, once its signature and attestation certificate are checked."""

    device: str  # SHA-256 of the attestation key (hex)
    challenge_id: str
    nonce: str
    held: tuple[dict[str, Any], ...]
    ended: tuple[str, ...]


def device_id(public_key: Any) -> str:
    """The device's name in receipts: lower-case hex SHA-256 of the attestation key's SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def statement_bytes(challenge_id: str, nonce: str, held: list[dict[str, Any]], ended: list[str]) -> bytes:
    """The bytes the SE signs (any JSON encoding would do: the verifier reads the bytes it was sent)."""
    return json.dumps({"format": STATEMENT_FORMAT, "action": DEALER_ACTION, "challenge_id": challenge_id,
                       "nonce": nonce, "held": held, "ended": ended}, sort_keys=True).encode()


def load_maker_roots(pem: str | bytes) -> list[x509.Certificate]:
    """The maker CA certificates in a PEM bundle (ValueError if there is none)."""
    return x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem)


def verify_statement(attestation_certificate_pem: str, statement: bytes, signature_b64: str,
                     maker_roots: list[x509.Certificate], now: dt.datetime | None = None) -> Statement:
    """Check that a maker's CA certified the attestation key (directly), that the key signed statement,
    and that the statement is well formed; AttestationRefused otherwise. The challenge is the caller's."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        certificate = x509.load_pem_x509_certificate(attestation_certificate_pem.encode())
    except ValueError:
        raise AttestationRefused("attestation_certificate_pem is not a PEM X.509 certificate") from None
    issuer = next((root for root in maker_roots if root.subject == certificate.issuer), None)
    if issuer is None:
        raise AttestationRefused(f"the attestation certificate's issuer ({certificate.issuer.rfc4514_string()}) "
                                 "is not a secure-element maker this service trusts")
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise AttestationRefused("the attestation certificate is not signed by the maker CA it names") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise AttestationRefused("the attestation certificate is not valid now")
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            raise AttestationRefused("the attestation certificate is a CA certificate, not an SE's key")
    except x509.ExtensionNotFound:
        pass
    if not signature_verifies(certificate.public_key(), statement, signature_b64):
        raise AttestationRefused("the statement's signature is not the attestation key's")
    try:
        document = json.loads(statement)
    except ValueError:
        raise AttestationRefused("the statement is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != STATEMENT_FORMAT \
            or document.get("action") != DEALER_ACTION:
        raise AttestationRefused(f"the statement is not a {STATEMENT_FORMAT} {DEALER_ACTION} statement")
    held, ended = document.get("held"), document.get("ended")
    if not isinstance(held, list) or not all(isinstance(h, dict) for h in held) \
            or not isinstance(ended, list) or not all(isinstance(e, str) for e in ended):
        raise AttestationRefused("the statement's held and ended lists are malformed")
    challenge_id, nonce = document.get("challenge_id"), document.get("nonce")
    if not isinstance(challenge_id, str) or not isinstance(nonce, str):
        raise AttestationRefused("the statement names no challenge")
    return Statement(device_id(certificate.public_key()), challenge_id, nonce, tuple(held), tuple(ended))

