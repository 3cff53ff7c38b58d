"""The call centre over the API: what ``jpki-operator`` and scripts call (bearer session).

Personal data never travels in a URL: a look-up is a POST with the items in its body.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

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
from jpki_service.operators.service import SignedIn
from jpki_service.operators.views import signed_in

router = APIRouter(prefix="/api/v1/operator", tags=["operator"])
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


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.context


def _synced(summary: dict[str, Any], response: Response) -> dict[str, Any]:
    """200 when done and at the CA; 202 when on its way to the CA, or waiting for a second supervisor."""
    crash_point("before-reply")
    response.status_code = 200 if summary["ca_sync"] == "done" and not summary.get("awaiting_approval") else 202
    return summary


@router.post("/registrations/search", response_model=FindOut, summary="Find by card items or suspension code")
def find(body: FindRequest, request: Request, who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"results": service.find_registrations(_ctx(request), who, body)}


@router.post("/registrations/{case_reference}/suspend", response_model=RegistrationSummary, responses=_ON_ITS_WAY,
             summary="Suspend: both certificates on hold (operator, supervisor)")
def suspend(body: SuspendRequest, request: Request, response: Response, case_reference: str = CaseReferencePath,
            who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.suspend_registration(_ctx(request), who, case_reference, body), response)


@router.post("/registrations/{case_reference}/lift", response_model=RegistrationSummary,
             responses=_ON_ITS_WAY_OR_WAITING,
             summary="Lift a suspension (supervisor); the owner's app then gets a new signature certificate")
def lift(body: LiftRequest, request: Request, response: Response, case_reference: str = CaseReferencePath,
         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.lift_suspension(_ctx(request), who, case_reference, body), response)


@router.post("/registrations/{case_reference}/revoke", response_model=RegistrationSummary,
             responses=_ON_ITS_WAY_OR_WAITING,
             summary="Revoke for good (supervisor)")
def revoke(body: RevokeRequest, request: Request, response: Response, case_reference: str = CaseReferencePath,
           who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.revoke_registration(_ctx(request), who, case_reference, body), response)


@router.get("/registrations/{case_reference}/history", response_model=HistoryOut, summary="State and history")
def registration_history(request: Request, case_reference: str = CaseReferencePath,
                         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return service.registration_history(_ctx(request), who, case_reference)


@router.get("/approvals", response_model=ApprovalsOut, summary="Acts waiting for a second supervisor (supervisor)")
def approvals(request: Request, all_states: bool = Query(False, alias="all", description="Decided and expired too"),
              who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"approvals": service.pending_approvals(_ctx(request), who, None if all_states else "pending")}


@router.post("/approvals/{approval_id}/approve", response_model=RegistrationSummary, responses=_ON_ITS_WAY,
             summary="Approve another supervisor's act: it is done now (supervisor, never the one who asked)")
def approve(request: Request, response: Response, approval_id: str = ApprovalIdPath,
            who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.decide_approval(_ctx(request), who, approval_id, approve=True), response)


@router.post("/approvals/{approval_id}/reject", response_model=RegistrationSummary,
             summary="Reject a pending act, or withdraw one's own (supervisor); nothing is done")
def reject(request: Request, approval_id: str = ApprovalIdPath, who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return service.decide_approval(_ctx(request), who, approval_id, approve=False)


@router.get("/audit", response_model=AuditOut, summary="The audit trail, newest first (auditor)")
def audit_trail(request: Request, after_seq: int | None = Query(None, ge=0), limit: int = Query(100, ge=1, le=1000),
                case_reference: str | None = Query(None, min_length=1, max_length=40),
                who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"entries": service.audit_trail(_ctx(request), who, after_seq, limit, case_reference)}
