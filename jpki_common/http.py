"""The HTTP pieces every server of the project shares: problem responses and their handlers, the
OpenAPI description of a problem and of each route's problems, the app with its own documentation
pages (no CDN), and the request-body size limit.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jpki_common.http_server import HttpServerSettings, short_reason
from jpki_common.problems import (
    PROBLEM_MEDIA_TYPE,
    BodyTooLarge,
    InternalError,
    InvalidRequest,
    Problem,
    problem_type,
)


class ProblemOut(BaseModel):
    """An RFC 9457 problem document, as every refusal and error of the CA and the service is sent."""

    model_config = ConfigDict(extra="allow")  # the problem's own members: field, state, retry_after...

    type: str
    title: str
    status: int
    detail: str




def problem_responses(*kinds: type[Problem]) -> dict[int | str, dict[str, Any]]:
    """For a route's ``responses=``: the problems it may answer, each status once, as problem documents
    with one example per kind (its real ``type``); 401 and 429 with the headers they carry."""
    by_status: dict[int, list[type[Problem]]] = {}
    for kind in kinds:
        by_status.setdefault(kind.status, []).append(kind)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        examples = {kind.slug: {"summary": kind.title, "value": {
            "type": problem_type(kind.slug), "title": kind.title, "status": kind.status,
            "detail": kind.example or kind.title, **kind.example_members}} for kind in group}
        responses[status] = {
            "description": "; ".join(f"{kind.title} (`{kind.slug}`)" for kind in group),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"},
                                             "examples": examples}},
        }
        if status == 401:
            responses[status]["headers"] = {"WWW-Authenticate": {
                "description": "Bearer realm=\"jpki\"", "schema": {"type": "string"}}}
        if status == 429 or any("retry_after" in kind.example_members for kind in group):
            responses[status]["headers"] = {"Retry-After": {
                "description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
    return responses


_PROBLEM = {"description": "A problem document (RFC 9457)",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}}
# For FastAPI(responses=...): every operation may answer with a problem document, and a 422 is one (each
# route's responses=problem_responses(...) says which kinds it answers).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {**_PROBLEM, "model": ProblemOut}, "5XX": {**_PROBLEM, "model": ProblemOut},
    **problem_responses(InvalidRequest),
}


def documented_app(settings: HttpServerSettings, **kwargs: Any) -> FastAPI:
    """``FastAPI(**kwargs)`` with /docs (Swagger UI) and /redoc whose scripts and stylesheets the app serves
    itself (fastapi-offline's copies, under /static-offline-docs): they work on a closed network. With
    ``expose_docs`` off: no documentation pages and no OpenAPI document at all."""
    if not settings.expose_docs:
        return FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **kwargs)
    return FastAPIOffline(swagger_ui_parameters={"persistAuthorization": True}, **kwargs)


def problem_answer(problem: Problem) -> JSONResponse:
    """The response that reports ``problem``."""
    return problem_response(problem.status, problem.title, problem.detail, problem.slug, **problem.extra)


def problem_response(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": problem_type(slug), "title": title, "status": status, "detail": detail, **extra}
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
        return problem_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and pydantic's plain message only: never its input, context or errors.pydantic.dev URL.
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": _plain(e["msg"])} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_answer(InvalidRequest(detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI reports a body that is not UTF-8 as a bare 400; it is invalid input like any other.
            return problem_answer(InvalidRequest("body: not UTF-8 encoded JSON",
                                                 errors=[{"field": "body", "message": "not UTF-8 encoded JSON"}]))
        return problem_response(exc.status_code, "HTTP error", str(exc.detail), f"http-{exc.status_code}")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Its type and place, not its text or traceback: a database error's text holds the SQL and parameters.
        log.error("unexpected error: %s", short_reason(exc))
        return problem_answer(InternalError("the server failed; nothing was changed"))


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
        response = problem_answer(BodyTooLarge(f"request bodies are limited to {self.limit} bytes"))
        await response(scope, receive, send)
