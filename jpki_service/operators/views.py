"""Operator sessions over the API (bearer tokens, for ``jpki-operator`` and scripts).

The console signs in through the same :mod:`.service` with a cookie instead
(jpki_service/console). A bearer token is never sent by a browser on its own, so the API needs
no CSRF token; the console's cookie does, and checks one on every form.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jpki_common.http import problem_responses
from jpki_common.problems import BodyTooLarge
from jpki_service.common.problems import (
    InvalidInput,
    LoginRefused,
    NotSignedIn,
    PasswordChangeRequired,
    StorageUnavailable,
    TooManyAttempts,
)
from jpki_service.operators import service
from jpki_service.operators.schemas import LoginRequest, PasswordChangedOut, PasswordChangeRequest, SessionOut
from jpki_service.operators.service import SignedIn

router = APIRouter(prefix="/api/v1/operator", tags=["operator"])
# Declared in the OpenAPI document (Swagger UI's Authorize button); checked by session_for_token, which
# answers its own 401 problem (not-signed-in), hence auto_error=False.
operator_session = HTTPBearer(auto_error=False, scheme_name="operatorSession",
                              description="The token from the answer to POST /api/v1/operator/session")
# What every call with a session may answer: no or an ended session; an account that must change its password
# first (except the calls that change it); the database away.
SESSION_PROBLEMS = (NotSignedIn, PasswordChangeRequired, StorageUnavailable)
_OWN_SESSION = problem_responses(NotSignedIn, StorageUnavailable)


def bearer_token(credentials: HTTPAuthorizationCredentials | None = Security(operator_session)) -> str | None:
    """FastAPI dependency: the bearer token, or None without one."""
    return credentials.credentials if credentials else None


def signed_in(request: Request, token: str | None = Depends(bearer_token)) -> SignedIn:
    """FastAPI dependency: the operator of the bearer token, or 401."""
    ctx = request.app.state.context
    return service.session_for_token(ctx.store, ctx.settings, token)


def signed_in_to_change_password(request: Request, token: str | None = Depends(bearer_token)) -> SignedIn:
    """As :func:`signed_in`, but a session that must change its password is let through."""
    ctx = request.app.state.context
    return service.session_for_token(ctx.store, ctx.settings, token, password_change=True)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_out(who: SignedIn) -> dict[str, Any]:
    return {"username": who.username, "role": who.role, "expires_at": who.expires_at.isoformat(), "token": who.token,
            "must_change_password": who.must_change_password}


@router.post("/session", status_code=201, response_model=SessionOut, summary="Sign in; the answer holds the token",
             responses=problem_responses(LoginRefused, TooManyAttempts, InvalidInput, BodyTooLarge,
                                         StorageUnavailable))
def log_in(body: LoginRequest, request: Request) -> dict[str, Any]:
    ctx = request.app.state.context
    who = service.log_in(ctx.store, ctx.settings, ctx.keys.audit_chain, body.username, body.password,
                         client_of(request))
    return _session_out(who)


@router.get("/session", response_model=SessionOut, summary="Who this token belongs to", responses=_OWN_SESSION)
def whoami(who: SignedIn = Depends(signed_in_to_change_password)) -> dict[str, Any]:
    return _session_out(who)


@router.delete("/session", status_code=204, summary="Sign out", responses=_OWN_SESSION)
def log_out(request: Request, _who: SignedIn = Depends(signed_in_to_change_password),
            token: str | None = Depends(bearer_token)) -> Response:
    ctx = request.app.state.context
    service.log_out(ctx.store, token or "")
    return Response(status_code=204)


@router.post("/password", response_model=PasswordChangedOut,
             summary="Change the signed-in operator's own password (the only use of a session after a reset)",
             responses=problem_responses(NotSignedIn, InvalidInput, BodyTooLarge, StorageUnavailable))
def change_password(body: PasswordChangeRequest, request: Request,
                    who: SignedIn = Depends(signed_in_to_change_password),
                    token: str | None = Depends(bearer_token)) -> dict[str, Any]:
    ctx = request.app.state.context
    ended = service.change_password(ctx.store, ctx.keys.audit_chain, who, token or "",
                                    body.current_password, body.new_password)
    return {"username": who.username, "other_sessions_ended": ended}
