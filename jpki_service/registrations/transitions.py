"""The one way a registration changes state, and carrying the result to the CA.

Every use case (the owner's in :mod:`.service`, the call centre's in
:mod:`jpki_service.callcentre.service`) ends in :func:`apply_event` inside its transaction: it
asks the lifecycle table, writes the new state and a history row, and records what the CA must
do (hold, release, revoke, issue) and whether the owner must be told. Afterwards
:func:`carry_quietly` tries to carry the CA commands at once; the background dispatcher finishes
whatever the CA did not take.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from jpki_common.i18n import Sentence
from jpki_service import holder_data, lifecycle
from jpki_service.adapters.ca_client import CAUnavailable
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import utcnow
from jpki_service.ca_commands import service as ca_commands
from jpki_service.common.faults import crash_point
from jpki_service.common.problems import InvalidInput, RegistrationNotFound, StateConflict
from jpki_service.lifecycle import Actor, CertKind, Event, State, TransitionRefused
from jpki_service.notifications import service as notifications
from jpki_service.registrations.models import PhoneCertificate, Registration, RegistrationEvent

log = logging.getLogger("jpki_service.transitions")



@dataclass(frozen=True)
class NewKey:
    """A new key pair made in the phone's SE, for a certificate the transition reissues."""

    csr_pem: str
    public_key_pem: str


NOTE_MAX = 200  # registration_events.note


@dataclass(frozen=True)
class Reissue:
    keys: dict[CertKind, NewKey]
    card_serial: str


def current_certificates(session: Session, registration_id: str) -> list[PhoneCertificate]:
    return list(session.scalars(
        select(PhoneCertificate)
        .where(PhoneCertificate.registration_id == registration_id, PhoneCertificate.current.is_(True))
        .order_by(PhoneCertificate.id)
    ))


def load_registration(session: Session, registration_id: str, lock: bool = False) -> Registration:
    query = select(Registration).where(Registration.id == registration_id)
    registration = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if registration is None:
        raise RegistrationNotFound(f"no registration {registration_id}", field="registration_id")
    return registration


def load_by_case_reference(session: Session, case_reference: str, lock: bool = False) -> Registration:
    """The registration staff name by ``case_reference`` (as typed: any case, width or hyphens)."""
    reference = holder_data.normalise_case_reference(case_reference)
    query = select(Registration).where(Registration.case_reference == reference)
    registration = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if registration is None:
        raise RegistrationNotFound(Sentence("no registration with case reference {reference}", reference=reference),
                                   field="case_reference")
    return registration


def holder_matches(key: bytes, name: str, birth: str, address: str) -> ColumnElement[bool]:
    """The registrations of this holder by the blind index (``holder_data.holder_index``): made under
    the rules now, or under older rules for a row the service has not recomputed yet (its signature
    certificate not issued yet, or not opened: ``registrations/service.py``, ``reindex_holders``)."""
    return or_(Registration.holder_index == holder_data.holder_index(key, name, birth, address),
               *(and_(Registration.holder_index == holder_data.holder_index(key, name, birth, address, rules),
                      Registration.holder_index_rules == rules)
                 for rules in range(1, holder_data.HOLDER_INDEX_RULES)))


def history(session: Session, registration_id: str) -> list[RegistrationEvent]:
    return list(session.scalars(select(RegistrationEvent).where(RegistrationEvent.registration_id == registration_id)
                                .order_by(RegistrationEvent.id)))


def signature_reissue_needed(session: Session, registration: Registration) -> bool:
    return lifecycle.signature_reissue_needed(
        State(registration.state), [Event(e.event) for e in history(session, registration.id)])


def issue_payload(kind: CertKind, csr_pem: str, card_serial: str) -> dict:
    """What an issue command carries to the CA: no personal data (the CA takes a signature certificate's
    four items from its own record of the card)."""
    return {"profile": f"phone-{kind.value}", "csr_pem": csr_pem, "card_serial": card_serial}


def allowed_now(registration: Registration, event: Event) -> lifecycle.Transition:
    """The lifecycle's rule for ``event`` in the registration's state, or 409 saying why not."""
    try:
        return lifecycle.transition(State(registration.state), event)
    except TransitionRefused as refused:
        raise StateConflict(refused.sentence, state=registration.state) from None


def apply_event(session: Session, registration: Registration, event: Event, *, operator: str | None = None,
                note: str | None = None, suspension_reason: str | None = None, ca_reason: str | None = None,
                reissue: Reissue | None = None, actor: Actor | None = None) -> None:
    """Apply ``event`` per :mod:`jpki_service.lifecycle`: state, history, CA commands, notice.
    ``actor``: who causes it when the table lets another than its first actor (a carrier's suspension)."""
    source = State(registration.state)
    rule = allowed_now(registration, event)
    acting = rule.actor if actor is None else actor
    rule.proof_of(acting)  # a use case naming an actor the table does not allow is a bug, not a refusal
    if rule.revoke and rule.ca_reason is None and ca_reason is None:
        raise InvalidInput(f"{event.value} needs a revocation reason", field="reason")
    if rule.reissue and (reissue is None or set(reissue.keys) != set(rule.reissue)):
        raise InvalidInput(f"{event.value} needs new keys for: {', '.join(k.value for k in rule.reissue)}")
    target = rule.target or source
    now = utcnow()
    registration.state, registration.updated_at = target.value, now
    if target is not source:
        # The reason says why a registration is not (or no longer) active; none while it is.
        if target in (State.PENDING, State.ACTIVE):
            registration.reason = None
        else:
            registration.reason = suspension_reason if target is State.SUSPENDED else event.value
    if note is not None and len(note) > NOTE_MAX:  # the audit entry keeps the whole of what was said
        note = note[:NOTE_MAX - 1] + "…"
    session.add(RegistrationEvent(registration_id=registration.id, at=now, event=event.value, actor=acting.value,
                                  from_state=source.value, to_state=target.value, operator=operator, note=note))
    revocation_reason = rule.ca_reason or ca_reason
    for certificate in current_certificates(session, registration.id):
        kind = CertKind(certificate.kind)
        if kind in rule.release and certificate.status == "held":
            ca_commands.enqueue(session, certificate, "release")
            certificate.status = "good"  # decided now; ca_sync tells whether the CA knows yet
        # A certificate still being issued (a lift's new signature certificate while the CA was away) is
        # held too: its hold is queued after its issue, so it never becomes good on a suspended phone.
        if kind in rule.hold and certificate.status in ("good", "pending"):
            ca_commands.enqueue(session, certificate, "hold")
            certificate.status = "held"
        # Revoked stays revoked, but a later keyCompromise must still reach the CA (RFC 5280 lets the
        # reason strengthen): relying parties then distrust signatures made before the first revocation.
        if kind in rule.revoke and (certificate.status != "revoked" or revocation_reason == "keyCompromise"):
            ca_commands.enqueue(session, certificate, "revoke", revocation_reason)
            certificate.status = "revoked"
        if kind in rule.reissue:
            certificate.current = False
    if reissue is not None:
        for kind, key in reissue.keys.items():
            replacement = PhoneCertificate(registration_id=registration.id, kind=kind.value, status="pending",
                                           public_key_pem=key.public_key_pem, current=True)
            session.add(replacement)
            session.flush()
            ca_commands.enqueue(session, replacement, "issue",
                                payload=issue_payload(kind, key.csr_pem, reissue.card_serial))
    if rule.notify_owner:
        who = f"{acting.value}:{operator}" if operator else acting.value
        notifications.enqueue(session, registration.id, registration.case_reference, event.value, who)


def _on_issued(session: Session, registration_id: str) -> None:
    registration = session.get_one(Registration, registration_id)
    issued = all(c.serial for c in current_certificates(session, registration_id))
    if issued and registration.state == State.PENDING.value:
        apply_event(session, registration, Event.CERTIFICATES_ISSUED)


def _on_refused(session: Session, registration_id: str, _error: str) -> None:
    registration = session.get_one(Registration, registration_id)
    if registration.state == State.PENDING.value:
        apply_event(session, registration, Event.ISSUANCE_REFUSED)


def carry_to_ca(ctx: ServiceContext, registration_id: str | None = None) -> ca_commands.DispatchReport:
    """Carry recorded changes to the CA now (all due ones, or one registration's)."""
    return ca_commands.dispatch(
        ctx.store, ctx.ca, _on_issued, _on_refused, seal_key=ctx.keys.holder_seal, registration_id=registration_id,
        max_backoff=dt.timedelta(seconds=ctx.settings.max_retry_backoff_seconds),
    )


def carry_quietly(ctx: ServiceContext, registration_id: str) -> None:
    """Try to carry a recorded change now. Whatever goes wrong, the change is recorded and the
    background dispatcher carries it later: the caller answers 202 ``ca_sync: pending``, never 500."""
    crash_point("after-record")
    try:
        carry_to_ca(ctx, registration_id)
    except CAUnavailable:
        pass
    except Exception:  # e.g. a deadlock victim on PostgreSQL: retried by the dispatcher
        log.exception("carrying registration %s to the CA failed; the dispatcher will retry", registration_id)
