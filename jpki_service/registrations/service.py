"""The owner's use cases: register, look up, revoke, authorise a password reset, uninstall,
stale certificate, and the card cascade.

Each one checks its proof, then records the lifecycle change and the CA commands it needs in
one transaction, then tries to carry those commands to the CA at once. If the CA is away, the
change stands and the background dispatcher finishes the job (``ca_sync: pending``).
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca_mock.keys import check_subject_key
from jpki_service import lifecycle
from jpki_service.ca_client import CAClient, CAUnavailable
from jpki_service.ca_commands import service as ca_commands
from jpki_service.cards import verify_card_proof
from jpki_service.challenges.service import spend_challenge
from jpki_service.db import Store, utcnow
from jpki_service.lifecycle import Actor, CertKind, Event, State, TransitionRefused
from jpki_service.problems import InvalidInput, ProofRejected, RegistrationNotFound, StateConflict
from jpki_service.protocol import Action, signature_verifies
from jpki_service.registrations.models import Person, PhoneCertificate, Registration, RegistrationEvent
from jpki_service.registrations.schemas import OwnerProof, RegisterRequest
from jpki_service.service_keys import ServiceKeys
from jpki_service.settings import ServiceSettings


@dataclass
class ServiceContext:
    """What every use case needs: the store, the CA adapter, settings, the service's keys."""

    store: Store
    ca: CAClient
    settings: ServiceSettings
    keys: ServiceKeys


# -- reading ---------------------------------------------------------------------------------
def _current_certificates(session: Session, registration_id: str) -> list[PhoneCertificate]:
    return list(session.scalars(
        select(PhoneCertificate)
        .where(PhoneCertificate.registration_id == registration_id, PhoneCertificate.current.is_(True))
        .order_by(PhoneCertificate.id)
    ))


def registration_document(session: Session, registration: Registration) -> dict[str, Any]:
    pending, failed = ca_commands.pending_counts(session, registration.id)
    certificates = session.scalars(
        select(PhoneCertificate).where(PhoneCertificate.registration_id == registration.id)
        .order_by(PhoneCertificate.id)
    )
    return {
        "registration_id": registration.id, "state": registration.state, "reason": registration.reason,
        "device_model": registration.device_model,
        "created_at": registration.created_at.isoformat(), "updated_at": registration.updated_at.isoformat(),
        "certificates": [
            {"kind": c.kind, "serial": c.serial, "status": c.status, "current": c.current,
             "certificate_pem": c.certificate_pem}
            for c in certificates
        ],
        "ca_sync": "failed" if failed else ("pending" if pending else "done"),
        "pending_ca_operations": pending,
    }


def get_registration(ctx: ServiceContext, registration_id: str) -> dict[str, Any]:
    with ctx.store.sessions() as session:
        return registration_document(session, _get(session, registration_id))


def _get(session: Session, registration_id: str, lock: bool = False) -> Registration:
    query = select(Registration).where(Registration.id == registration_id)
    registration = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if registration is None:
        raise RegistrationNotFound(f"no registration {registration_id}", field="registration_id")
    return registration


# -- the one way a registration changes state ------------------------------------------------------
def _apply(session: Session, registration: Registration, event: Event) -> None:
    """Apply ``event`` per :mod:`lifecycle`: new state, history, and the CA commands it needs."""
    source = State(registration.state)
    try:
        rule = lifecycle.transition(source, event)
    except TransitionRefused as refused:
        raise StateConflict(str(refused), state=source.value) from None
    target = rule.target or source
    now = utcnow()
    registration.state, registration.updated_at = target.value, now
    if target is not source:
        # The reason says why a registration is not (or no longer) active; none while it is.
        registration.reason = None if target in (State.PENDING, State.ACTIVE) else event.value
    session.add(RegistrationEvent(registration_id=registration.id, at=now, event=event.value,
                                  actor=rule.actor.value, from_state=source.value, to_state=target.value))
    for certificate in _current_certificates(session, registration.id):
        if CertKind(certificate.kind) in rule.revoke and certificate.status != "revoked":
            ca_commands.enqueue(session, certificate, "revoke", rule.ca_reason)
            certificate.status = "revoked"  # decided now; ca_sync tells whether the CA knows yet


def _on_issued(session: Session, registration_id: str) -> None:
    registration = session.get_one(Registration, registration_id)
    issued = all(c.serial for c in _current_certificates(session, registration_id))
    if issued and registration.state == State.PENDING.value:
        _apply(session, registration, Event.CERTIFICATES_ISSUED)


def _on_refused(session: Session, registration_id: str, _error: str) -> None:
    registration = session.get_one(Registration, registration_id)
    if registration.state == State.PENDING.value:
        _apply(session, registration, Event.ISSUANCE_REFUSED)


def carry_to_ca(ctx: ServiceContext, registration_id: str | None = None) -> ca_commands.DispatchReport:
    """Carry recorded changes to the CA now (all due ones, or one registration's)."""
    return ca_commands.dispatch(
        ctx.store, ctx.ca, _on_issued, _on_refused, registration_id=registration_id,
        max_backoff=dt.timedelta(seconds=ctx.settings.max_retry_backoff_seconds),
    )


# -- input checks ----------------------------------------------------------------------------
def _csr_public_key_pem(pem: str, field: str) -> str:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a PEM PKCS#10 request: {exc}", field=field) from None
    if not csr.is_signature_valid:
        raise InvalidInput(f"{field}: the request's self-signature does not verify", field=field)
    check_subject_key(csr.public_key())
    return csr.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _public_key(pem: str, field: str):
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{field} is not a PEM public key: {exc}", field=field) from None
    check_subject_key(key)
    return key


def _lock_person(session: Session, person_key: str) -> None:
    """Serialise registrations of one person (PostgreSQL row lock; SQLite writers are serial)."""
    try:
        with session.begin_nested():
            session.add(Person(person_key=person_key))
    except IntegrityError:
        pass
    session.scalars(select(Person).where(Person.person_key == person_key).with_for_update()).one()


# -- use cases -----------------------------------------------------------------------------
def register(ctx: ServiceContext, request: RegisterRequest) -> dict[str, Any]:
    """Register this phone from the card; supersede the same person's other phones."""
    message = spend_challenge(ctx.store, request.proof.challenge_id, Action.REGISTER, None)
    if not request.proof.card_certificate_pem:
        raise InvalidInput("registering needs proof.card_certificate_pem", field="proof.card_certificate_pem")
    card = verify_card_proof(ctx.ca, request.proof.card_certificate_pem, message, request.proof.signature,
                             ctx.keys.person_index)
    keys = {
        CertKind.SIGNATURE: _csr_public_key_pem(request.signature_csr_pem, "signature_csr_pem"),
        CertKind.AUTHENTICATION: _csr_public_key_pem(request.authentication_csr_pem, "authentication_csr_pem"),
    }
    csrs = {CertKind.SIGNATURE: request.signature_csr_pem, CertKind.AUTHENTICATION: request.authentication_csr_pem}
    _public_key(request.device.device_public_key_pem, "device.device_public_key_pem")
    registration_id = secrets.token_hex(16)
    with ctx.store.transaction() as session:
        _lock_person(session, card.person_key)
        superseded = []
        for old in session.scalars(
            select(Registration).where(Registration.person_key == card.person_key,
                                       Registration.state.in_([s.value for s in lifecycle.LIVE]))
            .with_for_update()
        ):
            _apply(session, old, Event.SUPERSEDED)
            superseded.append(old.id)
        now = utcnow()
        initial = lifecycle.TRANSITIONS[Event.REGISTERED]
        session.add(Registration(
            id=registration_id, state=initial.target.value, reason=None, person_key=card.person_key,
            card_serial=card.serial, device_model=request.device.model,
            device_public_key_pem=request.device.device_public_key_pem, created_at=now, updated_at=now,
        ))
        session.add(RegistrationEvent(registration_id=registration_id, at=now, event=Event.REGISTERED.value,
                                      actor=Actor.OWNER.value, from_state="-", to_state=initial.target.value))
        session.flush()
        for kind in lifecycle.BOTH:
            certificate = PhoneCertificate(registration_id=registration_id, kind=kind.value,
                                           public_key_pem=keys[kind], status="pending", current=True)
            session.add(certificate)
            session.flush()
            ca_commands.enqueue(session, certificate, "issue", payload={
                "profile": f"phone-{kind.value}", "csr_pem": csrs[kind], "card_serial": card.serial,
                "person": card.person if kind is CertKind.SIGNATURE else None,
            })
    for affected in (registration_id, *superseded):
        _carry_quietly(ctx, affected)
    document = get_registration(ctx, registration_id)
    document["superseded"] = superseded
    return document


def _carry_quietly(ctx: ServiceContext, registration_id: str) -> None:
    try:
        carry_to_ca(ctx, registration_id)
    except CAUnavailable:
        pass  # recorded; the background dispatcher carries it later


def _owner_event(ctx: ServiceContext, registration_id: str, event: Event) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        _apply(session, _get(session, registration_id, lock=True), event)
    _carry_quietly(ctx, registration_id)
    return get_registration(ctx, registration_id)


def _check_key(pem: str, message: bytes, signature: str, what: str) -> None:
    if not signature_verifies(serialization.load_pem_public_key(pem.encode()), message, signature):
        raise ProofRejected(f"the {what} did not sign this challenge", field="proof.signature")


def revoke_registration(ctx: ServiceContext, registration_id: str, proof: OwnerProof) -> dict[str, Any]:
    """The owner revokes (before selling): proven by the phone signature key."""
    with ctx.store.sessions() as session:
        _get(session, registration_id)
        signature_key = next(c.public_key_pem for c in _current_certificates(session, registration_id)
                             if c.kind == CertKind.SIGNATURE.value)
    message = spend_challenge(ctx.store, proof.challenge_id, Action.REVOKE, registration_id)
    _check_key(signature_key, message, proof.signature, "phone signature key")
    return _owner_event(ctx, registration_id, Event.OWNER_REVOKED)


def authorise_password_reset(ctx: ServiceContext, registration_id: str, proof: OwnerProof) -> dict[str, Any]:
    """The card that registered this phone proves itself; the SE may then set a new password."""
    with ctx.store.sessions() as session:
        card_serial = _get(session, registration_id).card_serial
    message = spend_challenge(ctx.store, proof.challenge_id, Action.RESET_PASSWORD, registration_id)
    if not proof.card_certificate_pem:
        raise InvalidInput("a password reset needs proof.card_certificate_pem", field="proof.card_certificate_pem")
    card = verify_card_proof(ctx.ca, proof.card_certificate_pem, message, proof.signature, ctx.keys.person_index)
    if card.serial != card_serial:
        raise ProofRejected("this card is not the one that registered this phone", field="proof.card_certificate_pem")
    with ctx.store.transaction() as session:
        _apply(session, _get(session, registration_id, lock=True), Event.PASSWORD_RESET)
    return {"registration_id": registration_id, "reset_allowed": True}


def report_device_event(ctx: ServiceContext, registration_id: str, proof: OwnerProof, event: Event) -> dict[str, Any]:
    """Uninstall or stale certificate at reinstall: proven by the device key, no secret."""
    action = Action.UNINSTALL if event is Event.UNINSTALLED else Action.STALE_CERTIFICATE
    with ctx.store.sessions() as session:
        registration = _get(session, registration_id)
        device_key, state = registration.device_public_key_pem, State(registration.state)
    message = spend_challenge(ctx.store, proof.challenge_id, action, registration_id)
    _check_key(device_key, message, proof.signature, "device key")
    if state.is_final and event is Event.STALE_CERTIFICATE:
        return get_registration(ctx, registration_id)  # already dead: the phone may delete its copy
    return _owner_event(ctx, registration_id, event)


def apply_card_cascade(ctx: ServiceContext) -> int:
    """Revoke the phone signature certificates derived from cards revoked at the CA."""
    revoked_cards = ctx.ca.revoked_card_serials()
    if not revoked_cards:
        return 0
    with ctx.store.sessions() as session:
        candidates = session.execute(
            select(Registration.id, Registration.card_serial)
            .join(PhoneCertificate, PhoneCertificate.registration_id == Registration.id)
            .where(Registration.state.in_([State.ACTIVE.value, State.SUSPENDED.value]),
                   PhoneCertificate.kind == CertKind.SIGNATURE.value, PhoneCertificate.current.is_(True),
                   PhoneCertificate.status != "revoked")
        ).all()
    affected = [registration_id for registration_id, card_serial in candidates if card_serial in revoked_cards]
    for registration_id in affected:
        with ctx.store.transaction() as session:
            registration = _get(session, registration_id, lock=True)
            if registration.state in (State.ACTIVE.value, State.SUSPENDED.value):
                _apply(session, registration, Event.CARD_REVOKED)
        _carry_quietly(ctx, registration_id)
    return len(affected)
