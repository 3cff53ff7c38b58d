"""The simulated secure-element maker: it certifies each simulated SE's attestation key, as a real
maker certifies a chip's key at the factory (Android key attestation). jpki_common/se_attestation.py
has its root certificate, which the lifecycle service trusts by default.

THIS IS A SIMULATION, and this file says so in the one place it matters: the maker's private key is
below, in the source, beside the simulator. Anyone with this source can certify any key as an SE's,
so an attestation under this key proves the protocol works, never that a real chip spoke. A real
deployment trusts real makers' roots (JPKI_SE_MAKER_CA_FILE) and no key of theirs is ever here.
"""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jpki_common.se_attestation import SIMULATED_MAKER_CA_PEM

_SIMULATED_MAKER_KEY_PEM = b"""\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDOw97fH4nQyFZwaO
Z7fOYUA7b8tPO1zq3NA9YKUecc6hRANCAATzdPOiw3e0LJwYUdpKqFPjy2UvNh06
OJpyZofguZmnnL9rvKDhxW2CBQjYR5S0RHC9Isb1ib7vsV6VCsB2Rc6y
-----END PRIVATE KEY-----
"""


def certify_attestation_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """The maker's certificate (PEM) for a new SE's attestation key, good for twenty years (a chip's life)."""
    key = serialization.load_pem_private_key(_SIMULATED_MAKER_KEY_PEM, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    root = x509.load_pem_x509_certificate(SIMULATED_MAKER_CA_PEM.encode())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Simulated secure element")]))
        .issuer_name(root.subject).public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(min(now + dt.timedelta(days=7300),
                                                                             root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
