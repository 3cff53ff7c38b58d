"""Making OCSP responses (RFC 6960), signed by the issuing CA's delegated responder.

:func:`prepare_responses` runs inside every issuance and status change, in the same
transaction, so the pre-produced answer and the status can never disagree once committed.
"""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca_mock.authorities.service import Hierarchy, LoadedAuthority
from ca_mock.certificates.models import IssuedCertificate
from ca_mock.ocsp.models import PreparedOCSPResponse
from jpki_common.store import Store, utcnow

HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}


def build_response(
    hierarchy: Hierarchy,
    issuer: LoadedAuthority,
    serial: int,
    hash_algorithm: str,
    status: str,
    reason: str | None,
    revoked_at: dt.datetime | None,
    validity: dt.timedelta,
    nonce: bytes | None = None,
) -> tuple[bytes, dt.datetime, dt.datetime]:
    """One signed response. ``status`` is good, held, revoked or unknown."""
    signer = hierarchy.ocsp_signer(issuer.name)
    name_hash, key_hash = issuer.cert_id_hashes[hash_algorithm]
    this_update = utcnow()
    next_update = this_update + validity
    if status == "good":
        cert_status, rev_time, rev_reason = ocsp.OCSPCertStatus.GOOD, None, None
    elif status == "unknown":
        cert_status, rev_time, rev_reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    else:
        cert_status, rev_time = ocsp.OCSPCertStatus.REVOKED, revoked_at
        rev_reason = x509.ReasonFlags(reason) if reason else None
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash, issuer_key_hash=key_hash, serial_number=serial,
            algorithm=HASHES[hash_algorithm](), cert_status=cert_status,
            this_update=this_update, next_update=next_update,
            revocation_time=rev_time, revocation_reason=rev_reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
        .certificates([signer.certificate])
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(signer.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER), this_update, next_update


def prepare_responses(
    session: Session, hierarchy: Hierarchy, cert: IssuedCertificate, validity: dt.timedelta
) -> None:
    """(Re)sign the nonce-less answers for ``cert``, one per CertID hash algorithm."""
    issuer = hierarchy.get(cert.authority)
    for algorithm in HASHES:
        der, this_update, next_update = build_response(
            hierarchy, issuer, int(cert.serial, 16), algorithm, cert.status, cert.reason,
            cert.revoked_at, validity,
        )
        session.merge(
            PreparedOCSPResponse(serial=cert.serial, hash_algorithm=algorithm, authority=cert.authority, der=der,
                                 this_update=this_update, next_update=next_update)
        )


def refresh_ageing_responses(
    store: Store, hierarchy: Hierarchy, validity: dt.timedelta, limit: int = 500
) -> int:
    """Re-sign responses past half their life, so a response never reaches its nextUpdate.

    Each certificate is re-signed under its row lock, like a status change: without it, a
    revocation committed between our read and our write would be overwritten by a stale answer.
    """
    due = utcnow() + validity / 2
    with store.sessions() as session:  # idle rounds stay read-only
        serials = session.scalars(
            select(PreparedOCSPResponse.serial).where(PreparedOCSPResponse.next_update < due).distinct().limit(limit)
        ).all()
    for serial in serials:
        with store.transaction() as session:
            cert = session.scalars(
                select(IssuedCertificate).where(IssuedCertificate.serial == serial).with_for_update()
            ).one_or_none()
            if cert is not None:
                prepare_responses(session, hierarchy, cert, validity)
    return len(serials)
