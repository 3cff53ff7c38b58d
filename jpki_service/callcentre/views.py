"""The call centre over the API: what ``jpki-operator`` and scripts call (bearer session).

Personal data never travels in a URL: a look-up is a POST with the items in its body.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from jpki_common.http import problem_responses
from jpki_common.problems import BodyTooLarge, Problem
from jpki_service.adapters.context import ServiceContext
from jpki_service.callcentre import service
from jpki_service.callcentre.schemas import (
    ApprovalsOut,
    AuditOut,
    FindOut,
    FindRequest,
    HistoryOut,
    LiftRequest,
    RegistrationSummary,
    RevokeRequest,
    SuspendRequest,
)
from jpki_service.common.faults import crash_point
from jpki_service.common.problems import (
    ApprovalExpired,
    ApprovalNotFound,
    InvalidInput,
    NothingFound,
    RegistrationNotFound,
    RoleForbidden,
    SecondPersonNeeded,
    StateConflict,
)
from jpki_service.operators.service import SignedIn
from jpki_service.operators.views import SESSION_PROBLEMS, signed_in

router = APIRouter(prefix="/api/v1/operator", tags=["operator"])


def _problems(*kinds: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """A call-centre call's problems: the session's, the role's (audited), bad input, and ``kinds``."""
    return problem_responses(*SESSION_PROBLEMS, RoleForbidden, InvalidInput, *kinds)


_ACT_PROBLEMS = _problems(RegistrationNotFound, StateConflict, BodyTooLarge)
_DECISION_PROBLEMS = (ApprovalNotFound, ApprovalExpired, StateConflict)
# A case reference as an operator may type it (any case or width, with or without hyphens): the
# service normalises it and says what is wrong (holder_data.normalise_case_reference).
CaseReferencePath = Path(min_length=1, max_length=40, description="The case reference, like ABCD-EFGH-JKMN")
_ON_ITS_WAY: dict[int | str, dict[str, Any]] = {
    202: {"model": RegistrationSummary, "description": "Recorded; on its way to the CA (ca_sync pending)"},
}
_ON_ITS_WAY_OR_WAITING: dict[int | str, dict[str, Any]] = {
    202: {"model": RegistrationSummary, "description": "Recorded and on its way to the CA (ca_sync pending), or "
                                                      "waiting for a second supervisor (awaiting_approval)"},
}
ApprovalIdPath = Path(min_length=1, max_length=40, description="The approval id (16 hex digits)")

# Examples for the API documents (/docs, /redoc): what a call-centre script sends and gets.
_SUMMARY_EXAMPLE = {
    "case_reference": "ABCD-EFGH-JKMN", "masked_name": "山田 *郎", "registered_at": "2026-04-01T03:00:12+00:00",
    "device_model": "Pixel 9", "state": "suspended", "reason": "lost",
    "certificates": [{"kind": "signature", "serial": "4F2A91C0D3", "status": "held", "current": True},
                     {"kind": "authentication", "serial": "4F2A91C0D4", "status": "held", "current": True}],
    "pending_approvals": [], "ca_sync": "done", "ca_sync_reason": None, "signature_reissue_needed": False,
}
_SUMMARY: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"example": _SUMMARY_EXAMPLE}}}}
FindBody = Body(openapi_examples={
    "card items": {"summary": "The caller's name, birth date and address, as the card prints them",
                   "value": {"name": "山田 太郎", "birth": "1990-01-02", "address": "東京都千代田区千代田1-1"}},
    "suspension code": {"summary": "The suspension code the app showed", "value": {"code": "7KQM-3XHD-PW9R"}},
})
SuspendBody = Body(openapi_examples={
    "owner": {"summary": "The owner lost the phone", "value": {"caller": "self", "reason": "lost",
                                                              "ticket": "CC-2026-0001", "channel": "phone"}},
    "proxy": {"summary": "A relative calls for the owner", "value": {
        "caller": "proxy", "relationship": "spouse", "reason": "stolen", "ticket": "CC-2026-0002"}},
})
LiftBody = Body(openapi_examples={"owner": {"summary": "The owner found the phone", "value": {
    "caller": "self", "reason": "phone found, caller verified", "ticket": "CC-2026-0003"}}})
RevokeBody = Body(openapi_examples={"owner": {"summary": "The phone is gone for good", "value": {
    "caller": "self", "reason": "keyCompromise", "ticket": "CC-2026-0004", "note": "stolen abroad"}}})


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.context


def _synced(summary: dict[str, Any], response: Response) -> dict[str, Any]:
    """200 when done and at the CA; 202 when on its way to the CA, or waiting for a second supervisor."""
    crash_point("before-reply")
    response.status_code = 200 if summary["ca_sync"] == "done" and not summary.get("awaiting_approval") else 202
    return summary


@router.post("/registrations/search", response_model=FindOut, summary="Find by card items or suspension code",
             responses={200: {"content": {"application/json": {"example": {"results": [_SUMMARY_EXAMPLE]}}}},
                        **_problems(NothingFound, BodyTooLarge)})
def find(request: Request, body: FindRequest = FindBody, who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"results": service.find_registrations(_ctx(request), who, body)}


@router.post("/registrations/{case_reference}/suspend", response_model=RegistrationSummary,
             responses={**_SUMMARY, **_ON_ITS_WAY, **_ACT_PROBLEMS},
             summary="Suspend: both certificates on hold (operator, supervisor)")
def suspend(request: Request, response: Response, body: SuspendRequest = SuspendBody,
            case_reference: str = CaseReferencePath,
            who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.suspend_registration(_ctx(request), who, case_reference, body), response)


@router.post("/registrations/{case_reference}/lift", response_model=RegistrationSummary,
             responses={**_SUMMARY, **_ON_ITS_WAY_OR_WAITING, **_ACT_PROBLEMS},
             summary="Lift a suspension (supervisor); the owner's app then gets a new signature certificate")
def lift(request: Request, response: Response, body: LiftRequest = LiftBody,
         case_reference: str = CaseReferencePath,
         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.lift_suspension(_ctx(request), who, case_reference, body), response)


@router.post("/registrations/{case_reference}/revoke", response_model=RegistrationSummary,
             responses={**_SUMMARY, **_ON_ITS_WAY_OR_WAITING, **_ACT_PROBLEMS},
             summary="Revoke for good (supervisor)")
def revoke(request: Request, response: Response, body: RevokeRequest = RevokeBody,
           case_reference: str = CaseReferencePath,
           who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.revoke_registration(_ctx(request), who, case_reference, body), response)


@router.get("/registrations/{case_reference}/history", response_model=HistoryOut, summary="State and history",
            responses=_problems(RegistrationNotFound))
def registration_history(request: Request, case_reference: str = CaseReferencePath,
                         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return service.registration_history(_ctx(request), who, case_reference)


@router.get("/approvals", response_model=ApprovalsOut, summary="Acts waiting for a second supervisor (supervisor)",
            responses=_problems())
def approvals(request: Request, all_states: bool = Query(False, alias="all", description="Decided and expired too"),
              who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"approvals": service.pending_approvals(_ctx(request), who, None if all_states else "pending")}


@router.post("/approvals/{approval_id}/approve", response_model=RegistrationSummary,
             responses={**_ON_ITS_WAY, **_problems(*_DECISION_PROBLEMS, SecondPersonNeeded)},
             summary="Approve another supervisor's act: it is done now (supervisor, never the one who asked)")
def approve(request: Request, response: Response, approval_id: str = ApprovalIdPath,
            who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.decide_approval(_ctx(request), who, approval_id, approve=True), response)


@router.post("/approvals/{approval_id}/reject", response_model=RegistrationSummary,
             responses=_problems(*_DECISION_PROBLEMS),
             summary="Reject a pending act, or withdraw one's own (supervisor); nothing is done")
def reject(request: Request, approval_id: str = ApprovalIdPath, who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return service.decide_approval(_ctx(request), who, approval_id, approve=False)


@router.get("/audit", response_model=AuditOut, summary="The audit trail, newest first (auditor)",
            responses=_problems())
def audit_trail(request: Request, after_seq: int | None = Query(None, ge=0), limit: int = Query(100, ge=1, le=1000),
                case_reference: str | None = Query(None, min_length=1, max_length=40),
                who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"entries": service.audit_trail(_ctx(request), who, after_seq, limit, case_reference)}
