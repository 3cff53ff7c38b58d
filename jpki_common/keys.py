"""Key making and raw signing for the CA's own keys (RSA-2048 or P-256, always SHA-256)."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from jpki_common.problems import PolicyViolation

CAPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_private_key(algorithm: str) -> CAPrivateKey:
    if algorithm == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key algorithm {algorithm!r}; use rsa2048 or p256")


def key_usage(*, digital_signature: bool = False, content_commitment: bool = False,
              key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    """A KeyUsage naming only the bits this CA ever sets; the others are always off."""
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=content_commitment, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def csr_pem(key: CAPrivateKey, common_name: str) -> str:
    """A PKCS#10 request for ``key``. The CA ignores its subject (it writes its own): the request
    only proves possession of the key, which is what the card office and the phone need it for."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def private_key_to_pem(key: CAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_pem(pem: bytes, certificate: x509.Certificate) -> CAPrivateKey | None:
    """The CA's own key, kept in its store beside ``certificate``; None if the two are not a pair.

    cryptography checks an RSA private key's numbers as it loads it: 40 ms for a 2048-bit key, a third of a
    CA process's start with its six keys. That check guards keys that come from outside; these the CA made
    itself (``jpki-ca init``), so the load skips it and checks instead that the key is its certificate's."""
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    if key.public_key() != certificate.public_key():
        return None
    return key


def signature_algorithm(key: CAPrivateKey) -> str:
    """The signature algorithm of ``key`` as asn1crypto names it (for a CRL's AlgorithmIdentifier)."""
    return "sha256_rsa" if isinstance(key, rsa.RSAPrivateKey) else "sha256_ecdsa"


def sign_sha256(key: CAPrivateKey, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def check_subject_key(public_key: object, field: str = "csr_pem") -> None:
    """Refuse keys the statute or our policy does not allow: RSA below 2048 bits, curves but P-256."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise PolicyViolation(
                f"RSA key of {public_key.key_size} bits; the statute requires at least 2048", field=field
            )
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise PolicyViolation(f"EC curve {public_key.curve.name}; only P-256 is allowed", field=field)
        return
    raise PolicyViolation(f"key type {type(public_key).__name__} is not allowed; use RSA-2048+ or P-256", field=field)


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo, in hex: one value per key, whatever certifies it."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()
