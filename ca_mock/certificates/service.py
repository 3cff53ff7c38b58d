"""The CA's use cases on certificates: issue from a CSR, revoke, hold, release, look up.

Each runs in one transaction that also re-signs the certificate's OCSP answers and records the
operation id, so a committed change is visible at OCSP at once and a retried call is harmless.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca_mock.authorities.models import Authority
from ca_mock.authorities.service import load_hierarchy
from ca_mock.certificates.models import IssuedCertificate, StatusEvent
from ca_mock.certificates.profiles import build_certificate
from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.status_rules import CertStatus, StatusAction, next_status
from ca_mock.crl import partitions
from ca_mock.crl.entries import encode_entry
from ca_mock.ocsp.service import prepare_responses
from ca_mock.operations import service as operations
from ca_mock.problems import InvalidCSR, InvalidRequest, KeyAlreadyCertified, UnknownCertificate
from ca_mock.settings import CASettings
from jpki_common import keys
from jpki_common.problems import PolicyViolation, pem_reason
from jpki_common.profiles import PROFILES, PersonalData, Profile, personal_data_of
from jpki_common.store import Store, utcnow


def normalise_serial(serial: str | int) -> str:
    """Serials are stored as lower-case hex without leading zeros: one spelling per certificate."""
    if isinstance(serial, int):
        return format(serial, "x")
    try:
        return format(int(serial, 16), "x")
    except ValueError:
        raise InvalidRequest(f"serial {serial!r} is not a hexadecimal number", field="serial") from None


def certificate_view(cert: IssuedCertificate) -> dict[str, Any]:
    pem = x509.load_der_x509_certificate(cert.der).public_bytes(serialization.Encoding.PEM).decode()
    return {
        "serial": cert.serial, "profile": cert.profile, "authority": cert.authority,
        "status": cert.status, "reason": cert.reason,
        "revoked_at": _iso(cert.revoked_at), "invalidity_date": _iso(cert.invalidity_date),
        "not_before": _iso(cert.not_before), "not_after": _iso(cert.not_after),
        "card_serial": cert.card_serial, "certificate_pem": pem,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _load_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidCSR(f"csr_pem is not a PEM PKCS#10 request: {pem_reason(exc, 'CERTIFICATE REQUEST')}",
                         field="csr_pem") from None
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported algorithm inside an otherwise parseable request
        raise InvalidCSR(f"csr_pem signature cannot be checked: {exc}", field="csr_pem") from None
    if not valid:
        raise InvalidCSR("csr_pem self-signature does not verify: the request was altered or "
                         "not signed by the key it carries", field="csr_pem")
    return csr


def _validity(
    request: IssueRequest, settings: CASettings, card: IssuedCertificate | None, now: dt.datetime,
    issuer_not_after: dt.datetime,
) -> dt.datetime:
    profile = PROFILES[request.profile]
    days = settings.phone_validity_days if profile.is_phone else settings.card_validity_days
    policy_limit = now + dt.timedelta(days=days)
    limit, limit_name = policy_limit, f"the issuing policy ({days} days)"
    if card is not None and card.not_after < limit:
        limit, limit_name = card.not_after, f"the card certificate's notAfter ({card.not_after.isoformat()})"
    if issuer_not_after < limit:
        limit, limit_name = issuer_not_after, f"the issuing CA's notAfter ({issuer_not_after.isoformat()})"
    if request.not_after is None:
        return limit
    wanted = request.not_after
    if wanted.tzinfo is None:
        raise InvalidRequest("not_after must carry a time zone", field="not_after")
    wanted = wanted.astimezone(dt.UTC).replace(microsecond=0)
    if wanted <= now:
        raise PolicyViolation("not_after is not in the future", field="not_after")
    if wanted > limit:
        raise PolicyViolation(f"not_after {wanted.isoformat()} is beyond {limit_name}", field="not_after")
    return wanted


def _card_for(session: Session, request: IssueRequest) -> IssuedCertificate | None:
    profile = PROFILES[request.profile]
    if not profile.is_phone:
        if request.card_serial is not None:
            raise InvalidRequest("card_serial is only for phone profiles", field="card_serial")
        return None
    if request.card_serial is None:
        raise InvalidRequest(f"{profile.name} needs card_serial: the card signature certificate it "
                             "derives from", field="card_serial")
    card = session.get(IssuedCertificate, normalise_serial(request.card_serial))
    if card is None or card.profile != "card-signature":
        raise PolicyViolation(f"card_serial {request.card_serial} is not a card signature certificate "
                              "of this CA", field="card_serial")
    if card.not_after <= utcnow():
        raise PolicyViolation(f"the card signature certificate expired at {card.not_after.isoformat()}",
                              field="card_serial")
    if card.status != CertStatus.GOOD.value:
        raise PolicyViolation(f"the card signature certificate is {card.status}; a phone certificate "
                              "cannot derive from it", field="card_serial")
    return card


def _personal_data(request: IssueRequest, card: IssuedCertificate | None) -> PersonalData | None:
    """The four items the certificate will carry: a card signature certificate's from the request, a
    phone signature certificate's from this CA's own record of the card (a ``person`` sent with it
    must agree), none for the authentication profiles."""
    profile = PROFILES[request.profile]
    given = PersonalData(**request.person.model_dump()) if request.person is not None else None
    if not profile.carries_personal_data:
        if given is not None:
            raise InvalidRequest(f"{profile.name} certificates carry no personal data; omit person",
                                 field="person")
        return None
    if card is None:
        if given is None:
            raise InvalidRequest(f"{profile.name} certificates carry the holder's four items; person is "
                                 "required", field="person")
        return given
    on_card = personal_data_of(x509.load_der_x509_certificate(card.der))
    if given is not None and given != on_card:
        raise PolicyViolation(f"person disagrees with the card signature certificate {card.serial}: a "
                              f"{profile.name} certificate carries the card's four items, as this CA "
                              "recorded them; omit person", field="person")
    return on_card


def _check_key_not_certified(session: Session, key_fingerprint: str) -> None:
    certified = session.scalar(select(IssuedCertificate.serial)
                               .where(IssuedCertificate.public_key_sha256 == key_fingerprint))
    if certified is not None:
        raise KeyAlreadyCertified(f"csr_pem carries a public key this CA already certified (certificate "
                                  f"{certified}); one key, one certificate: make a new key pair",
                                  field="csr_pem")


def issue_certificate(store: Store, settings: CASettings, request: IssueRequest) -> dict[str, Any]:
    """Issue one certificate from a PKCS#10 request, for a key never certified before; the four items
    of a signature certificate come from ``request.person`` (card) or the card's record (phone)."""
    csr = _load_csr(request.csr_pem)
    keys.check_subject_key(csr.public_key())
    key_fingerprint = keys.public_key_fingerprint(csr.public_key())
    content = request.model_dump(mode="json", exclude={"operation_id"})
    print_ = operations.fingerprint("issue", content)
    try:
        return _issue_once(store, settings, request, csr, key_fingerprint, print_)
    except (IntegrityError, KeyAlreadyCertified):
        # A concurrent call with the same operation id committed first (its key is certified now, its
        # operation id taken): answer with its result. Otherwise another request certified this key.
        with store.sessions() as session:
            previous = operations.previous_result(session, request.operation_id, "issue", print_)
            if previous is not None:
                return previous
            _check_key_not_certified(session, key_fingerprint)
        raise


def _issue_once(store: Store, settings: CASettings, request: IssueRequest, csr: x509.CertificateSigningRequest,
                key_fingerprint: str, print_: str) -> dict[str, Any]:
    hierarchy = load_hierarchy(store)
    profile = PROFILES[request.profile]
    # Replays and refusals first, in a read that changes nothing (the issuance transaction
    # checks again): only an issuance expected to succeed takes a CRL partition place.
    with store.sessions() as session:
        previous = operations.previous_result(session, request.operation_id, "issue", print_)
        if previous is not None:
            return previous
        card = _card_for(session, request)
        person = _personal_data(request, card)  # a card's four items never change: read once
        _check_key_not_certified(session, key_fingerprint)
        _validity(request, settings, card, utcnow(),
                  hierarchy.get(profile.authority).certificate.not_valid_after_utc)
    # Its own short transaction, before the issuance's (see crl/partitions.py).
    partition = partitions.allocate(store, settings, profile.authority)
    with store.transaction() as session:
        previous = operations.previous_result(session, request.operation_id, "issue", print_)
        if previous is not None:
            return previous
        now = utcnow()
        card = _card_for(session, request)
        _check_key_not_certified(session, key_fingerprint)
        issuer = hierarchy.get(profile.authority)
        not_after = _validity(request, settings, card, now, issuer.certificate.not_valid_after_utc)
        serial = x509.random_serial_number()
        cert = build_certificate(profile, csr.public_key(), person, serial, now, not_after,
                                 issuer, hierarchy.public_url, partition)
        row = IssuedCertificate(
            serial=normalise_serial(serial), authority=issuer.name, profile=profile.name,
            card_serial=card.serial if card else None, not_before=now, not_after=not_after,
            der=cert.public_bytes(serialization.Encoding.DER), status=CertStatus.GOOD.value,
            status_changed_at=now, public_key_sha256=key_fingerprint,
        )
        session.add(row)
        session.flush()  # the certificate row first: certificate_partitions refers to it
        partitions.record(session, row.serial, issuer.name, partition)
        session.add(StatusEvent(serial=row.serial, at=now, status="good", reason=None,
                                operation_id=request.operation_id))
        session.flush()
        prepare_responses(session, hierarchy, row, dt.timedelta(hours=settings.ocsp_validity_hours))
        result = certificate_view(row)
        operations.record_result(session, request.operation_id, "issue", print_, result)
        return result


def change_status(
    store: Store,
    settings: CASettings,
    serial: str,
    action: StatusAction,
    operation_id: str,
    reason: str | None = None,
    invalidity_date: dt.datetime | None = None,
) -> dict[str, Any]:
    """Revoke, hold or release one certificate under the rules of :mod:`status_rules`."""
    hierarchy = load_hierarchy(store)
    serial = normalise_serial(serial)
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise InvalidRequest("invalidity_date must carry a time zone", field="invalidity_date")
        invalidity_date = invalidity_date.astimezone(dt.UTC).replace(microsecond=0)
        if invalidity_date > utcnow():
            raise InvalidRequest("invalidity_date is in the future", field="invalidity_date")
    print_ = operations.fingerprint(action.value, {"serial": serial, "reason": reason,
                                                   "invalidity_date": _iso(invalidity_date)})
    try:
        return _change_status_once(store, settings, hierarchy, serial, action, operation_id, reason,
                                   invalidity_date, print_)
    except IntegrityError:
        # The same operation id committed concurrently (for this or another certificate).
        with store.sessions() as session:
            previous = operations.previous_result(session, operation_id, action.value, print_)
        if previous is None:
            raise
        return previous


def _change_status_once(store, settings, hierarchy, serial, action, operation_id, reason, invalidity_date,
                        print_) -> dict[str, Any]:
    with store.transaction() as session:
        # Lock the row first: a concurrent retry of the same operation then waits and replays.
        cert = session.scalars(
            select(IssuedCertificate).where(IssuedCertificate.serial == serial).with_for_update()
        ).one_or_none()
        if cert is None:
            raise _unknown_certificate(serial)
        previous = operations.previous_result(session, operation_id, action.value, print_)
        if previous is not None:
            return previous
        change = next_status(CertStatus(cert.status), cert.reason, action, reason)
        now = utcnow()
        if change.status is CertStatus.GOOD:
            cert.revoked_at, cert.invalidity_date, cert.crl_entry_der = None, None, None
        else:
            # A certificate revoked after a hold keeps the hold's date: it was not to be
            # trusted from the moment it was suspended.
            cert.revoked_at = cert.revoked_at or now
            cert.invalidity_date = invalidity_date or cert.invalidity_date
            assert change.reason is not None  # next_status gives a revocation or a hold its reason
            cert.crl_entry_der = encode_entry(int(serial, 16), cert.revoked_at, change.reason,
                                              cert.invalidity_date)
        cert.status, cert.reason, cert.status_changed_at = change.status.value, change.reason, now
        session.add(StatusEvent(serial=serial, at=now, status=cert.status, reason=cert.reason,
                                operation_id=operation_id))
        prepare_responses(session, hierarchy, cert, dt.timedelta(hours=settings.ocsp_validity_hours))
        result = certificate_view(cert)
        operations.record_result(session, operation_id, action.value, print_, result)
        # Last, to hold the issuer row's lock as briefly as possible.
        partitions.mark_dirty(session, serial)
        session.execute(update(Authority).where(Authority.name == cert.authority).values(crl_dirty=True))
        return result


def _unknown_certificate(serial: str) -> UnknownCertificate:
    return UnknownCertificate(f"no certificate with serial {serial} was issued by this CA", field="serial")


def profile_of(store: Store, serial: str) -> Profile:
    """The profile of an issued certificate (it never changes)."""
    with store.sessions() as session:
        name = session.scalar(select(IssuedCertificate.profile)
                              .where(IssuedCertificate.serial == normalise_serial(serial)))
    if name is None:
        raise _unknown_certificate(serial)
    return PROFILES[name]


def get_certificate(store: Store, serial: str) -> dict[str, Any]:
    with store.sessions() as session:
        cert = session.get(IssuedCertificate, normalise_serial(serial))
        if cert is None:
            raise _unknown_certificate(serial)
        view = certificate_view(cert)
        view["history"] = [
            {"at": e.at.isoformat(), "status": e.status, "reason": e.reason, "operation_id": e.operation_id}
            for e in session.scalars(
                select(StatusEvent).where(StatusEvent.serial == cert.serial).order_by(StatusEvent.id)
            )
        ]
        return view


def certificates_of_card(store: Store, card_serial: str) -> list[dict[str, Any]]:
    """The phone certificates issued from one card signature certificate (for the card cascade)."""
    with store.sessions() as session:
        rows = session.scalars(
            select(IssuedCertificate)
            .where(IssuedCertificate.card_serial == normalise_serial(card_serial))
            .order_by(IssuedCertificate.not_before)
        )
        return [certificate_view(row) for row in rows]
