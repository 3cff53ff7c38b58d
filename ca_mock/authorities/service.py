"""Making the CA hierarchy once (``jpki-ca init``) and loading it for every later use.

Root -> signature CA and user-authentication CA -> a delegated OCSP signer under each; and a
time-stamping authority (RFC 3161) directly under the root, so that a verifier who trusts the
root alone can validate its tokens.
The hierarchy is never regenerated silently: init on an initialised store is refused unless
the caller explicitly accepts the existing one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import weakref
from dataclasses import dataclass, field
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from ca_mock import urls
from ca_mock.authorities.models import Authority, CAMeta
from ca_mock.problems import AlreadyInitialised, NotInitialised, UnknownAuthority
from ca_mock.settings import CASettings
from jpki_common import keys
from jpki_common.private_files import private_folder
from jpki_common.problems import StoreUnusable
from jpki_common.profiles import AUTHENTICATION_CA, ROOT, SIGNATURE_CA
from jpki_common.store import Store, utcnow

ISSUING_CAS = (SIGNATURE_CA, AUTHENTICATION_CA)
CRL_ISSUERS = (ROOT, *ISSUING_CAS)
TSA = "tsa"  # the time-stamping authority's signer; absent from stores initialised before it existed

_COMMON_NAMES = {
    ROOT: "JPKI Mock Root CA",
    SIGNATURE_CA: "JPKI Mock Signature CA",
    AUTHENTICATION_CA: "JPKI Mock User Authentication CA",
    TSA: "JPKI Mock Time-Stamping Authority",
}


def ocsp_signer_name(issuing: str) -> str:
    return f"{issuing}-ocsp"


@dataclass(frozen=True)
class LoadedAuthority:
    name: str
    role: str
    certificate: x509.Certificate
    der: bytes
    key: keys.CAPrivateKey
    # CertID hashes by algorithm name: (issuerNameHash, issuerKeyHash), for OCSP matching.
    cert_id_hashes: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Hierarchy:
    public_url: str
    key_algorithm: str  # of the CA keys; simulated cards follow it
    authorities: dict[str, LoadedAuthority]

    def get(self, name: str) -> LoadedAuthority:
        try:
            return self.authorities[name]
        except KeyError:
            raise UnknownAuthority(f"no authority named {name!r}; known: {', '.join(self.authorities)}") from None

    def ocsp_signer(self, issuing: str) -> LoadedAuthority:
        return self.get(ocsp_signer_name(issuing))

    def issuer_for_cert_id(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> LoadedAuthority | None:
        for name in ISSUING_CAS:
            authority = self.authorities[name]
            if authority.cert_id_hashes.get(algorithm) == (name_hash, key_hash):
                return authority
        return None


def _cert_id_hashes(cert: x509.Certificate) -> dict[str, tuple[bytes, bytes]]:
    # RFC 6960 CertID: hash of the issuer's DER subject name and of its subjectPublicKey BIT STRING value.
    from asn1crypto import x509 as asn1_x509

    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    name_der = parsed.subject.dump()
    key_bits = parsed.public_key["public_key"].contents[1:]  # drop the unused-bits octet
    return {
        alg: (hashlib.new(alg, name_der).digest(), hashlib.new(alg, key_bits).digest())
        for alg in ("sha1", "sha256")
    }


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI Mock (J-LIS stand-in)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject_name: str,
    key: keys.CAPrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: keys.CAPrivateKey,
    years: int,
    public_url: str,
    issuer_name: str,
) -> x509.Certificate:
    now = utcnow()
    subject = _name(_COMMON_NAMES[subject_name])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer_cert is None else 0), True)
        .add_extension(
            keys.key_usage(key_cert_sign=True, crl_sign=True),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl_url(public_url, issuer_name))],
                                        None, None, None)]
            ),
            False,
        ).add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(urls.ca_certificate_url(public_url, issuer_name)),
                )]
            ),
            False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _common_name(certificate: x509.Certificate) -> str:
    # A commonName is a string attribute (only X.500 unique identifiers carry bytes).
    return cast(str, certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _ocsp_signer_certificate(
    issuing: LoadedAuthority, key: keys.CAPrivateKey
) -> x509.Certificate:
    now = utcnow()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"{_common_name(issuing.certificate)} OCSP Responder"))
        .issuer_name(issuing.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * 2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            keys.key_usage(digital_signature=True),
            True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
        .add_extension(x509.OCSPNoCheck(), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing.key.public_key()), False)
        .sign(issuing.key, hashes.SHA256())
    )


def _tsa_certificate(root_cert: x509.Certificate, root_key: keys.CAPrivateKey, key: keys.CAPrivateKey,
                     public_url: str) -> x509.Certificate:
    """The TSA's signing certificate, issued by the root (RFC 3161 section 2.3: the only EKU is
    id-kp-timeStamping, critical). Revocation is checked through the root's CRL."""
    now = utcnow()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(_COMMON_NAMES[TSA]))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * 10))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            keys.key_usage(digital_signature=True, content_commitment=True),
            True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl_url(public_url, ROOT))],
                                        None, None, None)]
            ),
            False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(x509.AuthorityInformationAccessOID.CA_ISSUERS,
                                        x509.UniformResourceIdentifier(urls.ca_certificate_url(public_url, ROOT)))]
            ),
            False,
        )
        .sign(root_key, hashes.SHA256())
    )


def is_initialised(store: Store) -> bool:
    with store.sessions() as session:
        return session.get(CAMeta, "public_url") is not None


def initialise(store: Store, settings: CASettings, exist_ok: bool = False) -> Hierarchy:
    """Create the hierarchy and the two API tokens, or (with ``exist_ok``) keep the one that exists and
    write only a token file it lacks (a CA made before the administrator credential has no admin-token)."""
    if is_initialised(store):
        if exist_ok:
            _write_missing_token_files(settings)
            return load_hierarchy(store)
        raise AlreadyInitialised(
            "this store already holds a CA; its keys are kept. Use a new --data folder or database "
            "for a new CA (pass --exist-ok to accept the existing one)."
        )
    public_url = settings.public_url.rstrip("/")
    made: dict[str, tuple[x509.Certificate, keys.CAPrivateKey]] = {}
    root_key = keys.generate_private_key(settings.key_algorithm)
    made[ROOT] = (_ca_certificate(ROOT, root_key, None, root_key, 20, public_url, ROOT), root_key)
    for name in ISSUING_CAS:
        key = keys.generate_private_key(settings.key_algorithm)
        made[name] = (_ca_certificate(name, key, made[ROOT][0], root_key, 10, public_url, ROOT), key)
    with store.transaction() as session:
        session.add(CAMeta(key="public_url", value=public_url))
        session.add(CAMeta(key="key_algorithm", value=settings.key_algorithm))
        for name, (cert, key) in made.items():
            session.add(
                Authority(
                    name=name, role="root" if name == ROOT else "issuing",
                    parent=None if name == ROOT else ROOT,
                    certificate_der=cert.public_bytes(serialization.Encoding.DER),
                    private_key_pem=keys.private_key_to_pem(key),
                    crl_number=0, crl_dirty=True,
                )
            )
        session.flush()
        for name in ISSUING_CAS:
            cert, key = made[name]
            issuing = LoadedAuthority(name, "issuing", cert, b"", key)
            signer_key = keys.generate_private_key(settings.key_algorithm)
            signer_cert = _ocsp_signer_certificate(issuing, signer_key)
            session.add(
                Authority(
                    name=ocsp_signer_name(name), role="ocsp-signer", parent=name,
                    certificate_der=signer_cert.public_bytes(serialization.Encoding.DER),
                    private_key_pem=keys.private_key_to_pem(signer_key),
                    crl_number=0, crl_dirty=False,
                )
            )
        # pyHanko's RFC 3161 responder (ca_mock.tsa) signs with RSA only: the TSA key is RSA-2048
        # whatever the CA's key algorithm.
        tsa_key = keys.generate_private_key("rsa2048")
        tsa_cert = _tsa_certificate(made[ROOT][0], root_key, tsa_key, public_url)
        session.add(
            Authority(
                name=TSA, role="tsa", parent=ROOT,
                certificate_der=tsa_cert.public_bytes(serialization.Encoding.DER),
                private_key_pem=keys.private_key_to_pem(tsa_key),
                crl_number=0, crl_dirty=False,
            )
        )
    _write_missing_token_files(settings)
    _HIERARCHIES.pop(store, None)
    return load_hierarchy(store)


def _write_missing_token_files(settings: CASettings) -> None:
    """Write a fresh token into each token file that is missing and not replaced by its variable."""
    private_folder(settings.data_dir)
    for given, path in ((settings.api_token, settings.token_file),
                        (settings.admin_token, settings.admin_token_file)):
        if given or path.exists():
            continue
        # Created 0600 from the first byte: no moment where another user could read it. O_EXCL: a
        # concurrent init that wrote it first wins, and its token is the one kept.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")


_HIERARCHIES: weakref.WeakKeyDictionary[Store, Hierarchy] = weakref.WeakKeyDictionary()


def load_hierarchy(store: Store) -> Hierarchy:
    """The hierarchy of this store, read once per process: CA keys do not change after init."""
    cached = _HIERARCHIES.get(store)
    if cached is not None:
        return cached
    with store.sessions() as session:
        meta = session.get(CAMeta, "public_url")
        algorithm = session.get(CAMeta, "key_algorithm")
        if meta is None or algorithm is None:
            raise NotInitialised("no CA in this store yet; run `jpki-ca init` first")
        loaded = {}
        for row in session.scalars(select(Authority)):
            cert = x509.load_der_x509_certificate(row.certificate_der)
            key = keys.private_key_from_pem(row.private_key_pem, cert)
            if key is None:
                raise StoreUnusable(f"the private key of {row.name} in this store is not its certificate's")
            loaded[row.name] = LoadedAuthority(
                name=row.name, role=row.role, certificate=cert, der=row.certificate_der, key=key,
                cert_id_hashes=_cert_id_hashes(cert) if row.role == "issuing" else {},
            )
    hierarchy = Hierarchy(public_url=meta.value, key_algorithm=algorithm.value, authorities=loaded)
    _HIERARCHIES[store] = hierarchy
    return hierarchy
