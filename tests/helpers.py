"""Small builders the tests share: key pairs, CSRs and issue requests."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PERSON = {"name": "山田 太郎", "date_of_birth": "1990-01-02", "gender": "1", "address": "東京都千代田区千代田1-1"}

_KEYS: list = []


def rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (a few are cached: key generation dominates test time otherwise)."""
    if len(_KEYS) < 4:
        _KEYS.append(rsa.generate_private_key(65537, 2048))
        return _KEYS[-1]
    return _KEYS[len(_KEYS) % 4]


def csr_pem(key=None, common_name: str = "ignored by the CA") -> str:
    key = key or rsa_key()
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def p256_csr_pem() -> str:
    return csr_pem(ec.generate_private_key(ec.SECP256R1()))


def issue_body(profile: str, operation_id: str, card_serial: str | None = None, **extra) -> dict:
    body = {"operation_id": operation_id, "profile": profile, "csr_pem": csr_pem()}
    if profile.endswith("signature"):
        body["person"] = PERSON
    if card_serial:
        body["card_serial"] = card_serial
    body.update(extra)
    return body
