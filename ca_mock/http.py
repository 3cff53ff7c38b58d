"""Shared HTTP pieces of the CA: problem responses, the bearer check and the body-size limit."""
from __future__ import annotations

import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ca_mock.problems import CAProblem

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Unauthorised(CAProblem):
    status, title, slug = 401, "Unauthorised", "unauthorised"


def problem_response(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": f"https://jpki-mock.invalid/problems/{slug}", "title": title, "status": status,
            "detail": detail, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="jpki-ca"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def require_bearer(request: Request) -> None:
    """FastAPI dependency: the lifecycle service's bearer credential, compared in constant time."""
    expected: str | None = request.app.state.api_token
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorised("missing bearer credential: send 'Authorization: Bearer <token>'")
    if expected is None or not secrets.compare_digest(credential.strip().encode(), expected.encode()):
        raise Unauthorised("bearer credential not accepted")


class BodySizeLimit:
    """Refuse request bodies above ``limit`` bytes with 413, before any handler reads them."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        messages = []
        while True:  # buffer at most ``limit`` bytes, then replay to the app
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = problem_response(
            413, "Request body too large", f"request bodies are limited to {self.limit} bytes",
            "body-too-large",
        )
        await response(scope, receive, send)
