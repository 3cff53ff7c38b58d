"""The CA's API on certificates: issue, look up, revoke, hold, release.

Reads need either credential; what each credential may change is :func:`ca_mock.credentials.check_scope`."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from ca_mock.certificates import service
from ca_mock.certificates.schemas import (
    CertificateOut,
    IssueRequest,
    RevokeRequest,
    StatusChangeRequest,
)
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.credentials import Credential, OutsideCredentialScope, check_scope
from ca_mock.http import Unauthorised, require_bearer
from ca_mock.problems import (
    InvalidCSR,
    InvalidRequest,
    KeyAlreadyCertified,
    OperationConflict,
    StatusChangeRefused,
    UnknownCertificate,
)
from jpki_common.http import problem_responses
from jpki_common.problems import BodyTooLarge, PolicyViolation
from jpki_common.profiles import PROFILES

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"], dependencies=[Depends(require_bearer)],
                   responses=problem_responses(Unauthorised, InvalidRequest))
_CHANGE = problem_responses(Unauthorised, InvalidRequest, OutsideCredentialScope, UnknownCertificate,
                            StatusChangeRefused, OperationConflict, BodyTooLarge)
SerialPath = Path(min_length=1, max_length=40, pattern=r"^[0-9A-Fa-f]+$", description="Serial in hex")


def _check_may_change(request: Request, credential: Credential, serial: str, action: StatusAction) -> None:
    check_scope(credential, service.profile_of(request.app.state.store, serial), action.value)


@router.post("", status_code=201, response_model=CertificateOut, summary="Issue a certificate from a CSR",
             responses=problem_responses(Unauthorised, InvalidRequest, InvalidCSR, PolicyViolation,
                                         OutsideCredentialScope, KeyAlreadyCertified, OperationConflict,
                                         BodyTooLarge))
def issue(body: IssueRequest, request: Request,
          credential: Credential = Depends(require_bearer)) -> dict[str, Any]:
    check_scope(credential, PROFILES[body.profile], "issue")
    return service.issue_certificate(request.app.state.store, request.app.state.settings, body)


@router.get("", response_model=list[CertificateOut], summary="Certificates derived from a card certificate")
def derived_from_card(
    request: Request, card_serial: str = Query(min_length=1, max_length=40, pattern=r"^[0-9A-Fa-f]+$")
) -> list[dict[str, Any]]:
    return service.certificates_of_card(request.app.state.store, card_serial)


@router.get("/{serial}", summary="Look up a certificate, its status and history",
            responses=problem_responses(Unauthorised, InvalidRequest, UnknownCertificate))
def look_up(request: Request, serial: str = SerialPath) -> dict[str, Any]:
    return service.get_certificate(request.app.state.store, serial)


@router.post("/{serial}/revoke", response_model=CertificateOut, summary="Revoke for good", responses=_CHANGE)
def revoke(body: RevokeRequest, request: Request, serial: str = SerialPath,
           credential: Credential = Depends(require_bearer)) -> dict[str, Any]:
    _check_may_change(request, credential, serial, StatusAction.REVOKE)
    return service.change_status(request.app.state.store, request.app.state.settings, serial,
                                 StatusAction.REVOKE, body.operation_id, body.reason, body.invalidity_date)


@router.post("/{serial}/hold", response_model=CertificateOut, summary="Suspend (certificateHold)", responses=_CHANGE)
def hold(body: StatusChangeRequest, request: Request, serial: str = SerialPath,
         credential: Credential = Depends(require_bearer)) -> dict[str, Any]:
    _check_may_change(request, credential, serial, StatusAction.HOLD)
    return service.change_status(request.app.state.store, request.app.state.settings, serial,
                                 StatusAction.HOLD, body.operation_id)


@router.post("/{serial}/release", response_model=CertificateOut, summary="Lift a hold", responses=_CHANGE)
def release(body: StatusChangeRequest, request: Request, serial: str = SerialPath,
            credential: Credential = Depends(require_bearer)) -> dict[str, Any]:
    _check_may_change(request, credential, serial, StatusAction.RELEASE)
    return service.change_status(request.app.state.store, request.app.state.settings, serial,
                                 StatusAction.RELEASE, body.operation_id)
