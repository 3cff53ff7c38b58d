"""The call centre's use cases (DESIGN.md 2.7 and 2.8): find, suspend, lift, revoke, history,
and reading the audit trail.

Each one checks the operator's role first (:func:`jpki_service.operators.roles.require`), then
changes the registration through :func:`~jpki_service.registrations.transitions.apply_event`
and writes the audit entry *in the same transaction*: an act without its audit entry cannot
exist. Look-ups are audited too, without what was searched for (that is personal data).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jpki_common.i18n import Sentence
from jpki_service import holder_data
from jpki_service.adapters.context import ServiceContext
from jpki_service.approvals import service as approvals
from jpki_service.audit import service as audit
from jpki_service.ca_commands import service as ca_commands
from jpki_service.callcentre.schemas import FindRequest, LiftRequest, RevokeRequest, SuspendRequest
from jpki_service.common.problems import InvalidInput, NothingFound, RoleForbidden
from jpki_service.lifecycle import Event
from jpki_service.operators.roles import Permission, require
from jpki_service.operators.service import SignedIn
from jpki_service.registrations.models import PhoneCertificate, Registration
from jpki_service.registrations.transitions import (
    allowed_now,
    apply_event,
    carry_quietly,
    history,
    holder_matches,
    load_by_case_reference,
    load_registration,
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
        "pending_approvals": [approvals.document(a) for a in approvals.waiting(session, registration.id)],
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
        condition = holder_matches(ctx.keys.holder_index, query.name or "", query.birth or "", query.address or "")
        by = "name, birth date and address"
    with ctx.store.transaction() as session:
        found = list(session.scalars(select(Registration).where(condition)
                                     .order_by(Registration.created_at.desc()).limit(MAX_RESULTS)))
        results = [summary(ctx, session, r) for r in found]
        # Last, so the chain's head stays locked only for the append and the commit.
        audit.record(session, ctx.keys.audit_chain, who.actor, "find", None,
                     {"by": by, "results": len(found), "registrations": [r.case_reference for r in found]})
    if not results:
        if query.code is not None:
            raise NothingFound(Sentence("no registration matches this suspension code; check it with the caller "
                                        "(the look-up ignores case, spaces and hyphens, and reads O as 0, I and L "
                                        "as 1)"))
        raise NothingFound(Sentence("no registration matches this name, birth date and address; check the spelling "
                                    "with the caller (the look-up ignores spaces and full-width/half-width "
                                    "differences, takes an era date as the ISO one and an address's 丁目, 番地, 番 "
                                    "and 号 as its hyphen form)"))
    return results


@dataclass(frozen=True)
class _Act:
    """What a call-centre act does: its event, its audit entry's details, the change it makes."""

    event: Event
    details: dict[str, Any]
    change: dict[str, Any]


def _suspend_act(request: SuspendRequest) -> _Act:
    return _Act(Event.SUSPENDED,
                {"reason": request.reason.value, "caller": request.caller.value, "relationship": request.relationship,
                 "ticket": request.ticket, "channel": request.channel.value},
                {"suspension_reason": request.reason.value,
                 "note": f"{request.reason.value}; caller {request.caller_text()}; ticket {request.ticket}"})


def _lift_act(request: LiftRequest) -> _Act:
    return _Act(Event.SUPERVISOR_LIFTED,
                {"reason": request.reason, "ticket": request.ticket, "caller": request.caller.value,
                 "relationship": request.relationship},
                {"note": f"{request.reason}; caller {request.caller_text()}; ticket {request.ticket}"})


def _revoke_act(request: RevokeRequest) -> _Act:
    note = (f"{request.reason}; caller {request.caller_text()}; ticket {request.ticket}"
            + (f"; {request.note}" if request.note else ""))
    return _Act(Event.SUPERVISOR_REVOKED,
                {"reason": request.reason, "ticket": request.ticket, "note": request.note,
                 "caller": request.caller.value, "relationship": request.relationship},
                {"ca_reason": request.reason, "note": note})


# The acts a second supervisor may have to approve: their request model and what they do.
_APPROVABLE: dict[str, tuple[type[LiftRequest] | type[RevokeRequest], Callable[[Any], _Act]]] = {
    "lift": (LiftRequest, _lift_act), "revoke": (RevokeRequest, _revoke_act),
}


def _apply(ctx: ServiceContext, session: Session, who: SignedIn, registration: Registration, action: str, act: _Act,
           extra: dict[str, Any] | None = None) -> None:
    """The act and its audit entry, in the caller's transaction (the registration row locked)."""
    apply_event(session, registration, act.event, operator=who.username, **act.change)
    audit.record(session, ctx.keys.audit_chain, who.actor, action, registration.case_reference,
                 {**act.details, **(extra or {})})


def _answer(ctx: ServiceContext, registration_id: str) -> dict[str, Any]:
    """After the commit: carry the change to the CA now if it answers, and say where it stands."""
    carry_quietly(ctx, registration_id)
    with ctx.store.sessions() as session:
        return summary(ctx, session, session.get_one(Registration, registration_id))


def _act(ctx: ServiceContext, who: SignedIn, case_reference: str, action: str, act: _Act) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        registration = load_by_case_reference(session, case_reference, lock=True)
        registration_id = registration.id
        _apply(ctx, session, who, registration, action, act)
    return _answer(ctx, registration_id)


def _act_or_ask(ctx: ServiceContext, who: SignedIn, case_reference: str, action: str,
                request: LiftRequest | RevokeRequest, reason: str | None) -> dict[str, Any]:
    """Done now, or, under the two-person rule, recorded as a pending approval (the summary then carries it)."""
    act = _APPROVABLE[action][1](request)
    if not approvals.needs_approval(ctx.settings, action, reason):
        return _act(ctx, who, case_reference, action, act)
    with ctx.store.transaction() as session:
        registration = load_by_case_reference(session, case_reference, lock=True)
        allowed_now(registration, act.event)  # refused now (409) if it could not be done now
        approval = approvals.ask(session, ctx.settings, registration.id, registration.case_reference, action,
                                 request.model_dump(mode="json"), who.username)
        audit.record(session, ctx.keys.audit_chain, who.actor, "approval-requested", registration.case_reference,
                     {"approval": approval.id, "act": action, **act.details})
        registration_id, asked = registration.id, approvals.document(approval)
    with ctx.store.sessions() as session:
        return {**summary(ctx, session, session.get_one(Registration, registration_id)), "awaiting_approval": asked}


def suspend_registration(ctx: ServiceContext, who: SignedIn, case_reference: str,
                         request: SuspendRequest) -> dict[str, Any]:
    """Both certificates on hold at the CA at once (certificateHold); the owner is told."""
    require_permission(ctx, who, Permission.SUSPEND, case_reference)
    return _act(ctx, who, case_reference, "suspend", _suspend_act(request))


def lift_suspension(ctx: ServiceContext, who: SignedIn, case_reference: str, request: LiftRequest) -> dict[str, Any]:
    """Authentication released, signature revoked; the owner's app then reissues the signature.
    Under the two-person rule (default) it waits for a second supervisor's approval."""
    require_permission(ctx, who, Permission.LIFT, case_reference)
    return _act_or_ask(ctx, who, case_reference, "lift", request, None)


def revoke_registration(ctx: ServiceContext, who: SignedIn, case_reference: str,
                        request: RevokeRequest) -> dict[str, Any]:
    """For good: the phone is gone, or its keys are compromised. Both certificates revoked. Under the
    two-person rule (default: for keyCompromise) it waits for a second supervisor's approval."""
    require_permission(ctx, who, Permission.REVOKE, case_reference)
    return _act_or_ask(ctx, who, case_reference, "revoke", request, request.reason)


def decide_approval(ctx: ServiceContext, who: SignedIn, approval_id: str, approve: bool) -> dict[str, Any]:
    """A second supervisor approves (the act is done now, in this transaction) or rejects a pending act;
    the one who asked may reject (withdraw) but never approve. Answers the registration's summary."""
    require_permission(ctx, who, Permission.APPROVE)
    with ctx.store.transaction() as session:
        approval = approvals.take(session, approval_id, who.username, approving=approve)
        registration = load_registration(session, approval.registration_id, lock=True)
        registration_id = registration.id
        if approve:
            model, act_of = _APPROVABLE[approval.action]
            request = model.model_validate(json.loads(approval.request_json))
            _apply(ctx, session, who, registration, approval.action, act_of(request),
                   {"approval": approval.id, "requested_by": approval.requested_by})
        approvals.decide(approval, who.username, approve)
        audit.record(session, ctx.keys.audit_chain, who.actor, "approval-" + ("granted" if approve else "rejected"),
                     registration.case_reference, {"approval": approval.id, "act": approval.action,
                                                   "requested_by": approval.requested_by})
        decided = approvals.document(approval)
    return {**_answer(ctx, registration_id), "decided_approval": decided}


def pending_approvals(ctx: ServiceContext, who: SignedIn,
                      state: str | None = approvals.PENDING) -> list[dict[str, Any]]:
    require_permission(ctx, who, Permission.APPROVE)
    with ctx.store.sessions() as session:
        return approvals.listing(session, state)


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
           "revoke_registration", "decide_approval", "pending_approvals", "registration_history", "audit_trail",
           "summary"]
