"""The call centre's use cases (DESIGN.md 2.7 and 2.8): find, suspend, lift, revoke, history,
and reading the audit trail.

Each one checks the operator's role first (:func:`jpki_service.operators.roles.require`), then
changes the registration through :func:`~jpki_service.registrations.transitions.apply_event`
and writes the audit entry *in the same transaction*: an act without its audit entry cannot
exist. Look-ups are audited too, without what was searched for (that is personal data).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jpki_service import holder_data
from jpki_service.adapters.context import ServiceContext
from jpki_service.audit import service as audit
from jpki_service.ca_commands import service as ca_commands
from jpki_service.callcentre.schemas import FindRequest, LiftRequest, RevokeRequest, SuspendRequest
from jpki_service.common.problems import InvalidInput, NothingFound, RoleForbidden
from jpki_service.lifecycle import Event
from jpki_service.operators.roles import Permission, require
from jpki_service.operators.service import SignedIn
from jpki_service.registrations.models import PhoneCertificate, Registration
from jpki_service.registrations.transitions import (
    apply_event,
    carry_quietly,
    history,
    load_by_case_reference,
    signature_reissue_needed,
)

MAX_RESULTS = 20


def _recorded(case_reference: str | None) -> str | None:
    """A case reference as typed, for the audit entry of a refusal: normalised when it is one, else left out."""
    if case_reference is None:
        return None
    try:
        return holder_data.normalise_case_reference(case_reference)
    except InvalidInput:
        return None


def require_permission(ctx: ServiceContext, who: SignedIn, permission: Permission,
                       case_reference: str | None = None) -> None:
    """The role check; a refusal is itself audited (someone tried what their role does not allow)."""
    try:
        require(who.role, permission)
    except RoleForbidden:
        with ctx.store.transaction() as session:
            audit.record(session, ctx.keys.audit_chain, who.actor, "refused", _recorded(case_reference),
                         {"attempted": permission.value})
        raise


def summary(ctx: ServiceContext, session: Session, registration: Registration) -> dict[str, Any]:
    sync = ca_commands.registration_sync(session, registration.id)
    certificates = session.scalars(select(PhoneCertificate).where(PhoneCertificate.registration_id == registration.id)
                                   .order_by(PhoneCertificate.id))
    return {
        "case_reference": registration.case_reference,
        "masked_name": holder_data.mask_name(holder_data.open_name(ctx.keys.holder_seal, registration.holder_sealed)),
        "registered_at": registration.created_at.isoformat(),
        "device_model": registration.device_model,
        "state": registration.state,
        "reason": registration.reason,
        "certificates": [{"kind": c.kind, "serial": c.serial, "status": c.status, "current": c.current}
                         for c in certificates],
        "ca_sync": sync.state,
        "ca_sync_reason": sync.reason,
        "signature_reissue_needed": signature_reissue_needed(session, registration),
    }


def find_registrations(ctx: ServiceContext, who: SignedIn, query: FindRequest) -> list[dict[str, Any]]:
    """Registrations matching the caller's card items or suspension code, newest first; 404 if none."""
    require_permission(ctx, who, Permission.FIND)
    if query.code is not None:
        condition = Registration.suspension_code_index == holder_data.suspension_code_index(
            ctx.keys.holder_index, query.code)
        by = "suspension code"
    else:
        condition = Registration.holder_index == holder_data.holder_index(
            ctx.keys.holder_index, query.name or "", query.birth or "", query.address or "")
        by = "name, birth date and address"
    with ctx.store.transaction() as session:
        found = list(session.scalars(select(Registration).where(condition)
                                     .order_by(Registration.created_at.desc()).limit(MAX_RESULTS)))
        results = [summary(ctx, session, r) for r in found]
        # Last, so the chain's head stays locked only for the append and the commit.
        audit.record(session, ctx.keys.audit_chain, who.actor, "find", None,
                     {"by": by, "results": len(found), "registrations": [r.case_reference for r in found]})
    if not results:
        raise NothingFound(f"no registration matches this {by}; check the spelling with the caller "
                           "(the look-up ignores spaces and full-width/half-width differences)")
    return results


def _act(ctx: ServiceContext, who: SignedIn, case_reference: str, event: Event, action: str,
         details: dict[str, Any], **change: Any) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        registration = load_by_case_reference(session, case_reference, lock=True)
        registration_id = registration.id
        apply_event(session, registration, event, operator=who.username, **change)
        audit.record(session, ctx.keys.audit_chain, who.actor, action, registration.case_reference, details)
    carry_quietly(ctx, registration_id)
    with ctx.store.sessions() as session:
        return summary(ctx, session, session.get_one(Registration, registration_id))


def suspend_registration(ctx: ServiceContext, who: SignedIn, case_reference: str,
                         request: SuspendRequest) -> dict[str, Any]:
    """Both certificates on hold at the CA at once (certificateHold); the owner is told."""
    require_permission(ctx, who, Permission.SUSPEND, case_reference)
    details = {"reason": request.reason.value, "caller": request.caller.value,
               "relationship": request.relationship, "ticket": request.ticket, "channel": request.channel.value}
    return _act(ctx, who, case_reference, Event.SUSPENDED, "suspend", details,
                suspension_reason=request.reason.value,
                note=f"{request.reason.value}; caller {request.caller.value}"
                     + (f" ({request.relationship})" if request.relationship else "") + f"; ticket {request.ticket}")


def lift_suspension(ctx: ServiceContext, who: SignedIn, case_reference: str, request: LiftRequest) -> dict[str, Any]:
    """Authentication released, signature revoked; the owner's app then reissues the signature."""
    require_permission(ctx, who, Permission.LIFT, case_reference)
    return _act(ctx, who, case_reference, Event.SUPERVISOR_LIFTED, "lift",
                {"reason": request.reason, "ticket": request.ticket}, note=f"{request.reason}; ticket {request.ticket}")


def revoke_registration(ctx: ServiceContext, who: SignedIn, case_reference: str,
                        request: RevokeRequest) -> dict[str, Any]:
    """For good: the phone is gone, or its keys are compromised. Both certificates revoked."""
    require_permission(ctx, who, Permission.REVOKE, case_reference)
    note = f"{request.reason}; ticket {request.ticket}" + (f"; {request.note}" if request.note else "")
    return _act(ctx, who, case_reference, Event.SUPERVISOR_REVOKED, "revoke",
                {"reason": request.reason, "ticket": request.ticket, "note": request.note},
                ca_reason=request.reason, note=note)


def registration_history(ctx: ServiceContext, who: SignedIn, case_reference: str) -> dict[str, Any]:
    require_permission(ctx, who, Permission.HISTORY, case_reference)
    with ctx.store.transaction() as session:
        registration = load_by_case_reference(session, case_reference)
        document = {
            "registration": summary(ctx, session, registration),
            "events": [{"at": e.at.isoformat(), "event": e.event, "actor": e.actor, "operator": e.operator,
                        "from_state": e.from_state, "to_state": e.to_state, "note": e.note}
                       for e in history(session, registration.id)],
        }
        audit.record(session, ctx.keys.audit_chain, who.actor, "view-history", registration.case_reference, {})
        return document


def audit_trail(ctx: ServiceContext, who: SignedIn, after_seq: int | None = None, limit: int = 100,
                case_reference: str | None = None) -> list[dict[str, Any]]:
    require_permission(ctx, who, Permission.READ_AUDIT, case_reference)
    wanted = None if case_reference is None else holder_data.normalise_case_reference(case_reference)
    with ctx.store.sessions() as session:
        return audit.entries(session, after_seq=after_seq, limit=limit, case_reference=wanted)


__all__ = ["require_permission", "find_registrations", "suspend_registration", "lift_suspension",
           "revoke_registration", "registration_history", "audit_trail", "summary"]
