"""The carrier API (docs/carriers.md): a token for client credentials, and the lost-phone report.

``POST /api/v1/carrier/token`` follows RFC 6749 sections 4.4 and 5: the client authenticates with HTTP
Basic, the form says ``grant_type=client_credentials``, the answer is a bearer token and is never cached.
Its refusals are problem documents that also carry the OAuth2 ``error`` code.
"""
from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Body, Depends, Form, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from jpki_common.http import problem_answer, problem_responses
from jpki_common.problems import BodyTooLarge
from jpki_service.carriers import service
from jpki_service.carriers.schemas import ReportOut, ReportRequest, TokenOut
from jpki_service.carriers.service import SignedCarrier
from jpki_service.common.problems import (
    CarrierClientRefused,
    CarrierTokenRefused,
    InvalidInput,
    StorageUnavailable,
    TooManyAttempts,
    UnsupportedGrant,
)
from jpki_service.operators.views import client_of

router = APIRouter(prefix="/api/v1/carrier", tags=["carrier"])
# Checked by the service, which answers its own 401 problems, hence auto_error=False.
carrier_client = HTTPBasic(auto_error=False, scheme_name="carrierClient",
                           description="The carrier's client id and client secret (jpki-service carrier add)")
carrier_token = HTTPBearer(auto_error=False, scheme_name="carrierToken",
                           description="The access_token from POST /api/v1/carrier/token")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 section 5.1


def signed_carrier(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(carrier_token)) -> SignedCarrier:
    """FastAPI dependency: the carrier of the bearer token, or 401."""
    return service.carrier_for_token(request.app.state.context.store, credentials.credentials if credentials else None)


@router.post("/token", response_model=TokenOut, summary="An access token for the carrier's client credentials",
             responses=problem_responses(CarrierClientRefused, UnsupportedGrant, InvalidInput, TooManyAttempts,
                                         BodyTooLarge, StorageUnavailable))
def token(request: Request, grant_type: Annotated[str, Form(max_length=64, examples=["client_credentials"])],
          credentials: HTTPBasicCredentials | None = Security(carrier_client)) -> Any:
    if grant_type != "client_credentials":
        raise UnsupportedGrant("grant_type must be client_credentials", error="unsupported_grant_type",
                               field="grant_type")
    ctx = request.app.state.context
    try:
        # RFC 6749 section 2.3.1: the id and the secret are form-encoded before Basic encoding.
        answer = service.issue_token(ctx, unquote(credentials.username) if credentials else None,
                                     unquote(credentials.password) if credentials else None, client_of(request))
    except CarrierClientRefused as refused:
        response = problem_answer(refused)
        response.headers["WWW-Authenticate"] = 'Basic realm="jpki-carrier"'
        return response
    return JSONResponse(answer, headers=_NO_STORE)


ReportBody = Body(openapi_examples={
    "lost": {"summary": "A subscriber reports a lost phone", "value": {
        "case_number": "DC-2026-000123", "kind": "lost",
        "subscriber": {"name": "山田 太郎", "birth": "1990-01-02", "address": "東京都千代田区千代田1-1"}}},
    "remote wipe": {"summary": "The carrier is about to wipe the phone", "value": {
        "case_number": "DC-2026-000124", "kind": "remote-wipe",
        "subscriber": {"name": "山田 太郎", "birth": "平成2年1月2日", "address": "東京都千代田区千代田一丁目1番"}}},
})


@router.post("/reports", response_model=ReportOut,
             summary="A lost or stolen phone, or a remote wipe: the subscriber's active registrations are suspended",
             responses=problem_responses(CarrierTokenRefused, InvalidInput, TooManyAttempts, BodyTooLarge,
                                         StorageUnavailable))
def report(request: Request, response: Response, body: ReportRequest = ReportBody,
           carrier: SignedCarrier = Depends(signed_carrier)) -> dict[str, Any]:
    outcome = service.report(request.app.state.context, carrier, body)
    if outcome.repeated:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.answer
