"""The lifecycle service's HTTP application and its background worker."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, OperationalError

from jpki_common.http import (
    PROBLEM_RESPONSES,
    BodySizeLimit,
    documented_app,
    install_problem_handlers,
    problem_answer,
    problem_responses,
)
from jpki_common.problems import StoreUnusable
from jpki_service.adapters.ca_client import CAClient, CAUnavailable
from jpki_service.adapters.db import Store
from jpki_service.adapters.ocsp_verification import OCSPFreshness
from jpki_service.adapters.service_keys import load_service_keys
from jpki_service.audit.anchors import scheduled_anchor
from jpki_service.ca_commands.service import seal_clear_certificates
from jpki_service.callcentre import views as callcentre_views
from jpki_service.carriers import views as carrier_views
from jpki_service.challenges.service import purge_expired_challenges
from jpki_service.common.problems import StorageUnavailable
from jpki_service.common.settings import ServiceSettings
from jpki_service.entrypoints.metrics import metrics_endpoint
from jpki_service.notifications import service as notifications
from jpki_service.notifications.senders import Sender, make_mail_sender, make_sender
from jpki_service.operators import views as operator_views
from jpki_service.rate_limits.service import purge_expired_counters
from jpki_service.receipts import views as receipt_views
from jpki_service.registrations import service as registrations
from jpki_service.registrations import transitions
from jpki_service.registrations import views as registration_views
from jpki_service.relying_party import views as rp_views

log = logging.getLogger("jpki_service")

DESCRIPTION = """
The lifecycle of JPKI smartphone certificates: registration from the My Number card, revocation,
password reset, uninstall and stale certificates, with every change recorded here first and then
carried to the CA. Owner requests are proven by signatures over single-use challenges
(docs/service-api.md). Errors are `application/problem+json`; each operation lists its problems with their
`type`. Authorize (above) takes the owner token (reading a registration) and an operator session's token
(`/api/v1/operator/...`, docs/operator-api.md). These pages are served by the service itself (no CDN): they
work on a closed network.
"""


async def _worker(ctx: registrations.ServiceContext, sender: Sender, seal_first: bool) -> None:
    """Carry waiting changes to the CA, tell owners, follow card revocations, forget old challenges;
    ``seal_first``: the start could not seal certificates stored in clear, so the first round does."""
    settings = ctx.settings
    mail = make_mail_sender(settings)  # owners who gave an e-mail address get their notices there
    last_cascade = 0.0

    def one_round() -> None:
        nonlocal last_cascade, seal_first
        if seal_first:
            seal_clear_certificates(ctx.store, ctx.keys.holder_seal)
            registrations.reindex_holders(ctx)
            seal_first = False
        # Every round, before anything that may meet an absent CA: an expired challenge leaves the table at once.
        purge_expired_challenges(ctx.store)
        notifications.send_due(ctx.store, sender, max_backoff=dt.timedelta(seconds=settings.max_retry_backoff_seconds),
                               mail=mail, seal_key=ctx.keys.holder_seal)
        transitions.carry_to_ca(ctx)
        if time.monotonic() - last_cascade >= settings.cascade_interval_seconds:
            last_cascade = time.monotonic()
            purge_expired_counters(ctx.store)
            registrations.apply_card_cascade(ctx)

    next_anchor = 0.0  # the audit head is anchored at the first round, then on schedule (audit/anchors.py)
    while True:
        try:
            await anyio.to_thread.run_sync(one_round)
        except CAUnavailable as exc:
            log.warning("CA unavailable, will retry: %s", exc)
        except Exception:
            log.exception("background round failed; retrying")
        if settings.audit_anchor_interval_seconds and time.monotonic() >= next_anchor:
            # After the round, whatever became of it: a failed round never skips an anchor, nor the reverse.
            wait = await anyio.to_thread.run_sync(scheduled_anchor, ctx.store, ctx.ca, settings)
            next_anchor = time.monotonic() + wait
        await asyncio.sleep(settings.dispatch_interval_seconds)


def create_app(settings: ServiceSettings, ca: CAClient | None = None, background: bool = True,
               on_shutdown: Callable[[], None] | None = None) -> BodySizeLimit:
    """The service as an ASGI app. ``on_shutdown`` runs when the server stops (a graceful stop
    of uvicorn re-raises SIGTERM afterwards, so code after ``uvicorn.run`` may never run)."""
    if ca is None:
        if not settings.ca_url:
            raise ValueError("no CA: set JPKI_CA_URL (or let `jpki-service serve` start the mock CA)")
        ca = CAClient(settings.ca_url, settings.ca_token, settings.ca_timeout_seconds,
                      OCSPFreshness.from_settings(settings))
    sender = make_sender(settings)  # a misconfigured sender stops the start, not a background round
    ctx = registrations.ServiceContext(Store(settings.resolved_database_url()), ca, settings,
                                       load_service_keys(settings))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Sync endpoints run on anyio's worker threads (40 by default). More threads than one process
        # has CPU for do not answer sooner: they queue for the GIL, and a thread holding a row lock (the
        # audit chain's head) waits behind them, so every other request waits on that lock too.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        await anyio.to_thread.run_sync(ctx.store.health.check_integrity, ctx.store.engine)
        # Certificates stored in clear by an earlier version are sealed now (ca_commands.seal_clear_certificates);
        # a database that does not answer yet must not stop the start (requests get 503 until it does).
        try:
            await anyio.to_thread.run_sync(seal_clear_certificates, ctx.store, ctx.keys.holder_seal)
            # Blind indexes made under older rules (before era dates and spoken addresses) are recomputed
            # from the sealed signature certificates (registrations.reindex_holders).
            await anyio.to_thread.run_sync(registrations.reindex_holders, ctx)
            seal_pending = False
        except DBAPIError as exc:
            log.warning("certificates stored in clear not looked for: the database does not answer (%s); "
                        "the background worker tries again", exc.orig)
            seal_pending = True
        task = asyncio.create_task(_worker(ctx, sender, seal_pending)) if background else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ctx.ca.close()
        if on_shutdown is not None:
            on_shutdown()

    app = documented_app(settings, title="JPKI smartphone certificate lifecycle", version="0.1.0",
                         description=DESCRIPTION, lifespan=lifespan, responses=PROBLEM_RESPONSES)
    app.state.context = ctx
    app.include_router(registration_views.router)
    app.include_router(rp_views.router)
    app.include_router(operator_views.router)
    app.include_router(callcentre_views.router)
    app.include_router(receipt_views.router)  # the dealer's erasure receipt (docs/dealers.md)
    app.include_router(carrier_views.router)
    from jpki_service.console import views as console_views  # the operator web console (docs/console.md)

    app.include_router(console_views.router)

    if settings.expose_metrics:  # JPKI_EXPOSE_METRICS (docs/deployment.md)
        app.add_route("/metrics", metrics_endpoint(ctx.store), include_in_schema=False)

    @app.get("/healthz", tags=["operations"], summary="Liveness, the store's health and the CA queue",
             responses=problem_responses(StoreUnusable))
    def healthz() -> Any:
        from jpki_service.ca_commands.service import queue_summary

        problem = ctx.store.problem()
        if problem is not None:
            log.error("health check: the store is not usable: %s", problem)
            return problem_answer(StoreUnusable(problem))
        return {"status": "ok", "ca_commands": queue_summary(ctx.store, waiting_only=True)}

    install_problem_handlers(app, log)

    @app.exception_handler(OperationalError)
    async def _storage_unavailable(_request, exc: OperationalError):
        # The database is away (restarting, failing over): nothing was committed; retrying is right.
        log.warning("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return problem_answer(StorageUnavailable("the database did not answer; nothing was changed, try again",
                                                 retry_after=2))

    return BodySizeLimit(app, settings.max_body_bytes)


def create_app_from_environment() -> BodySizeLimit:
    """The factory ``jpki-service serve --workers N`` hands to uvicorn: settings from ``JPKI_*``."""
    return create_app(ServiceSettings())
