"""Operator sessions over the API (bearer tokens, for ``jpki-operator`` and scripts).

The console signs in through the same :mod:`.service` with a cookie instead
(jpki_service/console). A bearer token is never sent by a browser on its own, so the API needs
no CSRF token; the console's cookie does, and checks one on every form.
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from jpki_service.operators import service
from jpki_service.operators.schemas import LoginRequest, PasswordChangedOut, PasswordChangeRequest, SessionOut
from jpki_service.operators.service import SignedIn

router = APIRouter(prefix="/api/v1/operator", tags=["operator"])


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def signed_in(request: Request) -> SignedIn:
    """FastAPI dependency: the operator of the bearer token, or 401."""
    ctx = request.app.state.context
    return service.session_for_token(ctx.store, ctx.settings, bearer_token(request))


def signed_in_to_change_password(request: Request) -> SignedIn:
    """As :func:`signed_in`, but a session that must change its password is let through."""
    ctx = request.app.state.context
    return service.session_for_token(ctx.store, ctx.settings, bearer_token(request), password_change=True)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session_out(who: SignedIn) -> dict[str, Any]:
    return {"username": who.username, "role": who.role, "expires_at": who.expires_at.isoformat(), "token": who.token,
            "must_change_password": who.must_change_password}


@router.post("/session", status_code=201, response_model=SessionOut, summary="Sign in; the answer holds the token")
def log_in(body: LoginRequest, request: Request) -> dict[str, Any]:
    ctx = request.app.state.context
    who = service.log_in(ctx.store, ctx.settings, ctx.keys.audit_chain, body.username, body.password,
                         client_of(request))
    return _session_out(who)


@router.get("/session", response_model=SessionOut, summary="Who this token belongs to")
def whoami(who: SignedIn = Depends(signed_in_to_change_password)) -> dict[str, Any]:
    return _session_out(who)


@router.delete("/session", status_code=204, summary="Sign out")
def log_out(request: Request, _who: SignedIn = Depends(signed_in_to_change_password)) -> Response:
    ctx = request.app.state.context
    service.log_out(ctx.store, bearer_token(request) or "")
    return Response(status_code=204)


@router.post("/password", response_model=PasswordChangedOut,
             summary="Change the signed-in operator's own password (the only use of a session after a reset)")
def change_password(body: PasswordChangeRequest, request: Request,
                    who: SignedIn = Depends(signed_in_to_change_password)) -> dict[str, Any]:
    ctx = request.app.state.context
    ended = service.change_password(ctx.store, ctx.keys.audit_chain, who, bearer_token(request) or "",
                                    body.current_password, body.new_password)
    return {"username": who.username, "other_sessions_ended": ended}
