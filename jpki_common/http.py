"""The HTTP pieces every server of the project shares: problem responses and their handlers, the
OpenAPI description of a problem, and the request-body size limit.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jpki_common.http_server import short_reason
from jpki_common.problems import Problem

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemOut(BaseModel):
    """An RFC 9457 problem document, as every refusal and error of the CA and the service is sent."""

    model_config = ConfigDict(extra="allow")  # the problem's own members: field, state, retry_after...

    type: str
    title: str
    status: int
    detail: str


_PROBLEM = {"description": "A problem document (RFC 9457)",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}}
# For FastAPI(responses=...): every operation may answer with a problem document, and a 422 is one.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {**_PROBLEM, "model": ProblemOut}, "5XX": {**_PROBLEM, "model": ProblemOut},
    422: {**_PROBLEM, "model": ProblemOut},
}


def problem_response(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": f"https://jpki-mock.invalid/problems/{slug}", "title": title, "status": status,
            "detail": detail, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="jpki"'} if status == 401 else {}  # CA and service alike
    if status in (429, 503) and "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _plain(message: str) -> str:
    """A validator's message without pydantic's "Value error, " prefix."""
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def install_problem_handlers(app: FastAPI, log: logging.Logger) -> None:
    """Every error leaves as a problem document; an unexpected one says nothing of its cause."""

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.slug, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and pydantic's plain message only: never its input, context or errors.pydantic.dev URL.
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": _plain(e["msg"])} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "Invalid request", detail, "invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI reports a body that is not UTF-8 as a bare 400; it is invalid input like any other.
            return problem_response(422, "Invalid request", "body: not UTF-8 encoded JSON", "invalid-request",
                                    errors=[{"field": "body", "message": "not UTF-8 encoded JSON"}])
        return problem_response(exc.status_code, "HTTP error", str(exc.detail), f"http-{exc.status_code}")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Its type and place, not its text or traceback: a database error's text holds the SQL and parameters.
        log.error("unexpected error: %s", short_reason(exc))
        return problem_response(500, "Internal error", "the server failed; nothing was changed", "internal")


class BodySizeLimit:
    """Refuse request bodies above ``limit`` bytes with 413, before any handler reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        messages: list[Message] = []
        while True:  # buffer at most ``limit`` bytes, then replay to the app
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.limit:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "Request body too large", f"request bodies are limited to {self.limit} bytes",
            "body-too-large",
        )
        await response(scope, receive, send)
