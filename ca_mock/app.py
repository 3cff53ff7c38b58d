"""The CA's HTTP server: the lifecycle service's API (bearer), and the public CRL, OCSP and
CA-certificate endpoints that relying parties reach from the URLs inside certificates."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from ca_mock.authorities import views as authority_views
from ca_mock.authorities.service import load_hierarchy
from ca_mock.certificates import views as certificate_views
from ca_mock.credentials import Credentials
from ca_mock.crl import views as crl_views
from ca_mock.crl.service import publish_all_due
from ca_mock.db import migrate
from ca_mock.ocsp.responder import OCSPResponder
from ca_mock.ocsp.service import refresh_ageing_responses
from ca_mock.settings import CASettings
from ca_mock.tsa import views as tsa_views
from jpki_common.http import (
    PROBLEM_RESPONSES,
    BodySizeLimit,
    documented_app,
    install_problem_handlers,
    problem_answer,
    problem_responses,
)
from jpki_common.http_server import short_reason
from jpki_common.problems import BodyTooLarge, StoreUnusable
from jpki_common.store import Store

log = logging.getLogger("ca_mock")

DESCRIPTION = """
A real X.509 CA standing in for J-LIS: real keys, signatures, CRLs (RFC 5280) and OCSP (RFC 6960).

* `/api/v1/...` is for the lifecycle service and needs `Authorization: Bearer <token>` (Authorize, above:
  the service credential, or the administrator's for card certificates).
* `/ca/NAME.cer`, `/crl/NAME.crl`, `/crl/NAME-delta.crl`, `/ocsp` and `/tsa` (RFC 3161 time-stamping) are public.
* Errors are `application/problem+json` (RFC 9457); each operation lists its problems with their `type`.
* These pages are served by the CA itself (no CDN): they work on a closed network.
"""


def _ocsp_openapi(app: FastAPI) -> dict:
    """Document the OCSP endpoints, which a bare ASGI responder serves in front of FastAPI."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    ocsp_response = {"200": {"description": "An OCSP response, possibly with an error status",
                             "content": {"application/ocsp-response": {
                                 "schema": {"type": "string", "format": "binary"}}}}}
    schema["paths"]["/ocsp"] = {"post": {
        "tags": ["public"], "summary": "OCSP query (RFC 6960), DER body",
        "requestBody": {"required": True, "content": {
            "application/ocsp-request": {"schema": {"type": "string", "format": "binary"}}}},
        # Every refusal is an OCSP response (malformedRequest...); only the size limit in front answers a problem.
        "responses": {**ocsp_response, **{str(status): answer
                                           for status, answer in problem_responses(BodyTooLarge).items()}}}}
    schema["paths"]["/ocsp/{request}"] = {"get": {
        "tags": ["public"], "summary": "OCSP query, base64 DER in the path (RFC 5019)",
        "parameters": [{"name": "request", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": ocsp_response}}
    app.openapi_schema = schema
    return schema


async def _publisher(store: Store, settings: CASettings) -> None:
    """Keep CRLs within the publish interval of the last change, and OCSP answers fresh."""
    validity = dt.timedelta(hours=settings.ocsp_validity_hours)

    def one_round() -> None:
        publish_all_due(store, settings)
        refresh_ageing_responses(store, load_hierarchy(store), validity)

    while True:
        try:
            await anyio.to_thread.run_sync(one_round)
        except Exception as exc:  # keep publishing; the next round retries
            log.error("CRL/OCSP publishing round failed: %s", short_reason(exc))
        await asyncio.sleep(settings.crl_publish_interval_seconds)


def build_fastapi(store: Store, settings: CASettings, credentials: Credentials, background: bool) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        load_hierarchy(store)  # fail at start, not at the first request, if init was not run
        await anyio.to_thread.run_sync(store.health.check_integrity, store.engine)
        task = asyncio.create_task(_publisher(store, settings)) if background else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = documented_app(settings, title="JPKI mock CA", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         responses=PROBLEM_RESPONSES)
    app.state.store, app.state.settings, app.state.credentials = store, settings, credentials
    app.include_router(certificate_views.router)
    app.include_router(crl_views.router)
    app.include_router(authority_views.router)
    app.include_router(tsa_views.router)
    app.openapi = lambda: _ocsp_openapi(app)  # type: ignore[method-assign]

    @app.get("/healthz", tags=["public"], summary="Liveness, the store's health and the public URL",
             responses=problem_responses(StoreUnusable))
    def healthz() -> Any:
        problem = store.problem()
        if problem is not None:
            log.error("health check: the store is not usable: %s", problem)
            return problem_answer(StoreUnusable(problem))
        return {"status": "ok", "public_url": load_hierarchy(store).public_url}

    install_problem_handlers(app, log)
    return app


class CAApplication:
    """ASGI entry: OCSP straight to its responder, everything else to FastAPI, all size-limited."""

    def __init__(self, settings: CASettings, store: Store | None = None, background: bool = True) -> None:
        self.settings = settings
        self.store = store or Store(settings.resolved_database_url())
        migrate(self.store.url)
        self.api = build_fastapi(self.store, settings, Credentials.from_settings(settings), background)
        self.ocsp = OCSPResponder(self.store, settings)
        self._routed = BodySizeLimit(self._route, settings.max_body_bytes)

    async def _route(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/ocsp" or path.startswith("/ocsp/"):
            await self.ocsp(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        await self._routed(scope, receive, send)


def create_app(settings: CASettings | None = None, background: bool = True) -> CAApplication:
    return CAApplication(settings or CASettings(), background=background)
