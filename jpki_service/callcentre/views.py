"""The call centre over the API: what ``jpki-operator`` and scripts call (bearer session).

Personal data never travels in a URL: a look-up is a POST with the items in its body.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from jpki_service.adapters.context import ServiceContext
from jpki_service.callcentre import service
from jpki_service.callcentre.schemas import (
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
RegistrationIdPath = Path(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")
_ON_ITS_WAY: dict[int | str, dict[str, Any]] = {
    202: {"model": RegistrationSummary, "description": "Recorded; on its way to the CA (ca_sync pending)"},
}


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.context


def _synced(summary: dict[str, Any], response: Response) -> dict[str, Any]:
    crash_point("before-reply")
    response.status_code = 200 if summary["ca_sync"] == "done" else 202
    return summary


@router.post("/registrations/search", response_model=FindOut, summary="Find by card items or suspension code")
def find(body: FindRequest, request: Request, who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"results": service.find_registrations(_ctx(request), who, body)}


@router.post("/registrations/{registration_id}/suspend", response_model=RegistrationSummary, responses=_ON_ITS_WAY,
             summary="Suspend: both certificates on hold (operator, supervisor)")
def suspend(body: SuspendRequest, request: Request, response: Response, registration_id: str = RegistrationIdPath,
            who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.suspend_registration(_ctx(request), who, registration_id, body), response)


@router.post("/registrations/{registration_id}/lift", response_model=RegistrationSummary, responses=_ON_ITS_WAY,
             summary="Lift a suspension (supervisor); the owner's app then gets a new signature certificate")
def lift(body: LiftRequest, request: Request, response: Response, registration_id: str = RegistrationIdPath,
         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.lift_suspension(_ctx(request), who, registration_id, body), response)


@router.post("/registrations/{registration_id}/revoke", response_model=RegistrationSummary, responses=_ON_ITS_WAY,
             summary="Revoke for good (supervisor)")
def revoke(body: RevokeRequest, request: Request, response: Response, registration_id: str = RegistrationIdPath,
           who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return _synced(service.revoke_registration(_ctx(request), who, registration_id, body), response)


@router.get("/registrations/{registration_id}/history", response_model=HistoryOut, summary="State and history")
def registration_history(request: Request, registration_id: str = RegistrationIdPath,
                         who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return service.registration_history(_ctx(request), who, registration_id)


@router.get("/audit", response_model=AuditOut, summary="The audit trail, newest first (auditor)")
def audit_trail(request: Request, after_seq: int | None = Query(None, ge=0), limit: int = Query(100, ge=1, le=1000),
                registration_id: str | None = Query(None, pattern=r"^[0-9a-f]{32}$"),
                who: SignedIn = Depends(signed_in)) -> dict[str, Any]:
    return {"entries": service.audit_trail(_ctx(request), who, after_seq, limit, registration_id)}
