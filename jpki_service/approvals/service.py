"""The two-person rule: which supervisor acts wait for a second supervisor, and their approvals.

Policy (``JPKI_TWO_PERSON_ACTS``, default ``lift,revoke:keyCompromise``): a supervisor's lift, and a
revocation for keyCompromise, are not done when asked for. They wait as a *pending approval* until a
second supervisor, never the one who asked, approves; then the act is done in the approval's
transaction, as if asked for then. An approval expires (``JPKI_APPROVAL_TTL_SECONDS``): it can no longer
be approved, and the act must be asked for again. Asking, approving and rejecting are each audited
(``callcentre/service.py`` runs them; this module holds the policy and the rows).
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jpki_common.i18n import Sentence
from jpki_service.adapters.db import utcnow
from jpki_service.approvals.models import Approval
from jpki_service.common.problems import ApprovalExpired, ApprovalNotFound, SecondPersonNeeded, StateConflict
from jpki_service.common.settings import ServiceSettings

PENDING, APPROVED, REJECTED, EXPIRED = "pending", "approved", "rejected", "expired"


def needs_approval(settings: ServiceSettings, action: str, reason: str | None = None) -> bool:
    """Whether ``action`` (lift | revoke, with its revocation ``reason``) waits for a second supervisor."""
    policy = {item.strip() for item in settings.two_person_acts.split(",") if item.strip()}
    return action in policy or (reason is not None and f"{action}:{reason}" in policy)


def state_of(approval: Approval, now: dt.datetime | None = None) -> str:
    """pending, approved, rejected, or expired (a pending one past its time)."""
    if approval.state == PENDING and approval.expires_at <= (now or utcnow()):
        return EXPIRED
    return approval.state


def document(approval: Approval) -> dict[str, Any]:
    return {"approval_id": approval.id, "case_reference": approval.case_reference, "action": approval.action,
            "request": json.loads(approval.request_json), "requested_by": approval.requested_by,
            "requested_at": approval.requested_at.isoformat(), "expires_at": approval.expires_at.isoformat(),
            "state": state_of(approval), "decided_by": approval.decided_by,
            "decided_at": approval.decided_at.isoformat() if approval.decided_at else None}


def waiting(session: Session, registration_id: str, action: str | None = None) -> list[Approval]:
    """The registration's approvals still waiting (pending and not expired), oldest first."""
    query = (select(Approval).where(Approval.registration_id == registration_id, Approval.state == PENDING,
                                    Approval.expires_at > utcnow()).order_by(Approval.requested_at))
    if action is not None:
        query = query.where(Approval.action == action)
    return list(session.scalars(query))


def ask(session: Session, settings: ServiceSettings, registration_id: str, case_reference: str, action: str,
        request: dict[str, Any], username: str) -> Approval:
    """A new pending approval, in the caller's transaction (which holds the registration's row lock)."""
    already = waiting(session, registration_id, action)
    if already:
        raise StateConflict(Sentence("a {action} of this registration already waits for approval ({approval}, asked "
                                     "by {by}): approve or reject that one", action=action, approval=already[0].id,
                                     by=already[0].requested_by), state="approval-pending")
    now = utcnow()
    approval = Approval(id=secrets.token_hex(8), registration_id=registration_id, case_reference=case_reference,
                        action=action, request_json=json.dumps(request, sort_keys=True, ensure_ascii=False),
                        requested_by=username, requested_at=now,
                        expires_at=now + dt.timedelta(seconds=settings.approval_ttl_seconds), state=PENDING)
    session.add(approval)
    session.flush()
    return approval


def take(session: Session, approval_id: str, username: str, approving: bool) -> Approval:
    """The approval under a row lock, ready to be decided by ``username``; refused with the reason otherwise."""
    approval = session.scalars(select(Approval).where(Approval.id == approval_id.strip().lower())
                               .with_for_update()).one_or_none()
    if approval is None:
        raise ApprovalNotFound(f"no approval {approval_id!r}", field="approval_id")
    state = state_of(approval)
    if state == EXPIRED:
        raise ApprovalExpired(Sentence("approval {approval} expired at {at}: the {action} was not done; ask for it "
                                       "again if it is still needed", approval=approval.id,
                                       at=approval.expires_at.isoformat(), action=approval.action))
    if state != PENDING:
        raise StateConflict(Sentence("approval {approval} was already {state} by {by}", approval=approval.id,
                                     state=state, by=approval.decided_by), state=state)
    if approving and approval.requested_by == username:
        raise SecondPersonNeeded(Sentence("you asked for this {action}: a second supervisor must approve it (the "
                                          "two-person rule); you may reject it to withdraw it",
                                          action=approval.action))
    return approval


def decide(approval: Approval, username: str, approved: bool) -> None:
    approval.state = APPROVED if approved else REJECTED
    approval.decided_by, approval.decided_at = username, utcnow()


def listing(session: Session, state: str | None = PENDING, limit: int = 100) -> list[dict[str, Any]]:
    """Approvals newest first; ``state``: pending (waiting, not expired), or None for all."""
    query = select(Approval).order_by(Approval.requested_at.desc()).limit(limit)
    if state == PENDING:
        query = query.where(Approval.state == PENDING, Approval.expires_at > utcnow())
    return [document(a) for a in session.scalars(query)]
