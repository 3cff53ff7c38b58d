"""The service's own secrets: where they come from and what each is for.

Two secrets, each from settings or else from an owner-only file made once under ``data_dir``
(and a signing key, below):

- the *person key* (``JPKI_PERSON_KEY``, file ``person-key``): the keyed hash of the card's four
  items that finds one person's other phones (issue 3; kept apart so existing stores keep working);
- the *data key* (``JPKI_DATA_KEY``, file ``data-key``): the root of the keys that protect
  personal data at rest and the audit chain. Sub-keys are derived with HKDF, one per use, so a
  key used to seal names can never be confused with one used to index them.

Losing the data key makes sealed names unreadable and look-ups impossible; keep it with the
database backups, but not inside them.

The audit chain's key is derived from the data key, unless ``JPKI_AUDIT_KEY_FILE`` names a file
(best outside ``data_dir``, on storage the database's writers cannot read): then it is derived
from that file's secret (made owner-only at the first start if absent), so someone holding the data
folder cannot write entries that verify. Entries written under one key do not verify under the
other: choose before the first entry (docs/security.md).

A signature needs an asymmetric key, which HKDF cannot give: the *statement key* (file
``statement-key``, an owner-only Ed25519 private key in PKCS#8 PEM, made once) signs the
password-reset authorisations the phone's secure element checks (jpki_common/reset_authorisation.py).
Its public half is published at ``GET /api/v1/service-keys/statement`` and in the answer to a
registration, where the phone pins it. Every instance serving one database must share the file;
replacing it makes the phones registered before refuse resets until they register again.

The *receipt key* (file ``receipt-key``, an owner-only ECDSA P-256 private key, made once) signs the
dealers' erasure receipts (CMS, jpki_service/receipts); its certificate, ``receipt-certificate.pem``, is a
self-signed "receipt authority" certificate made from it at the same time and published at
``GET /api/v1/receipts/certificate``: a verifier trusts that certificate (openssl cms -CAfile). Like the
statement key, every instance shares the files; a new key makes a new certificate, which verifies only the
receipts signed after it (docs/dealers.md).
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from jpki_common.private_files import private_folder
from jpki_service.common.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceKeys:
    person_index: bytes  # HMAC: person key of registrations (superseding, cascade)
    holder_seal: bytes  # AES-256-GCM: the holder's name at rest
    holder_index: bytes  # HMAC: blind index of name + birth date + address, and of suspension codes
    audit_chain: bytes  # HMAC: the audit trail's chain
    # Ed25519: signs the reset authorisations (None only for read-only commands on a folder without one)
    statement: ed25519.Ed25519PrivateKey | None = None

    def statement_public_key_pem(self) -> str:
        if self.statement is None:
            raise MissingKey("this process has no statement key")
        return self.statement.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class MissingKey(Exception):
    """A key file that a read-only command will not create."""


def _key_file(path: Path, create: bool) -> str:
    if not path.exists() and not create:
        raise MissingKey(f"no key file {path} (and no key in the environment): wrong --data folder?")
    if not path.exists():
        # Whole before it appears: two worker processes starting on a new folder once made it at the same
        # time, and the one that lost read the file before the other had written it (an empty key).
        _write_once(path, secrets.token_hex(32).encode())
    key = path.read_text().strip()
    if not key:
        raise MissingKey(f"the key file {path} is empty: restore it from a copy of the data folder; a new key would "
                         "make the sealed data and the indexes unreadable")
    return key


def _write_once(path: Path, content: bytes) -> None:
    """Write ``path`` owner-only, whole before it appears; if another process made it first, theirs is kept."""
    private_folder(path.parent)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    try:
        os.link(draft, path)  # fails if another process made it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def _statement_key(path: Path, create: bool) -> ed25519.Ed25519PrivateKey | None:
    """The Ed25519 statement key in ``path``, made once (owner-only, whole before it appears)."""
    if not path.exists():
        if not create:
            return None
        _write_once(path, ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise MissingKey(f"{path} does not hold an Ed25519 private key")
    return key


RECEIPT_AUTHORITY = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI smartphone certificate lifecycle"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "Erasure receipt authority")])


@dataclass(frozen=True)
class ReceiptSigner:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def receipt_signer(data_dir: Path, create: bool = True) -> ReceiptSigner:
    """The receipt key and its self-signed receipt-authority certificate, made once under ``data_dir``."""
    key_path, certificate_path = data_dir / "receipt-key", data_dir / "receipt-certificate.pem"
    if not key_path.exists():
        if not create:
            raise MissingKey(f"no receipt key {key_path}: wrong --data folder?")
        _write_once(key_path, ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise MissingKey(f"{key_path} does not hold an EC private key")
    if not certificate_path.exists():
        if not create:
            raise MissingKey(f"no receipt certificate {certificate_path}")
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(RECEIPT_AUTHORITY).issuer_name(RECEIPT_AUTHORITY)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
        _write_once(certificate_path, certificate.public_bytes(serialization.Encoding.PEM))
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    if certificate.public_key() != key.public_key():
        raise MissingKey(f"{certificate_path} does not certify the key in {key_path}")
    return ReceiptSigner(key, certificate)


def _derive(root: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"jpki-service/{purpose}".encode()).derive(root)


def load_service_keys(settings: ServiceSettings, create: bool = True) -> ServiceKeys:
    """The keys; ``create=False`` for commands that only read (a new key would hide a wrong folder)."""
    person = settings.person_key or _key_file(settings.data_dir / "person-key", create)
    data = (settings.data_key or _key_file(settings.data_dir / "data-key", create)).encode()
    audit = _key_file(settings.audit_key_file, create).encode() if settings.audit_key_file else data
    return ServiceKeys(
        person_index=person.encode(),
        holder_seal=_derive(data, "holder-seal"),
        holder_index=_derive(data, "holder-index"),
        audit_chain=_derive(audit, "audit-chain"),
        statement=_statement_key(settings.data_dir / "statement-key", create),
    )
