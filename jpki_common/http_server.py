"""How both servers (``jpki-service serve``, ``jpki-ca serve``) run uvicorn: limits on what a client may hold.

uvicorn alone answers a 4 MiB request header and keeps a request head that never completes open for ever
(its keep-alive timeout starts only after a first response; its httptools parser has no size limit at all).
This module adds, for every connection of either server:

* a request head (request line and headers) of at most ``http_max_header_bytes`` bytes and
  ``http_max_headers`` headers: a larger one is answered 431 and the connection closed, having buffered at
  most the limit plus one network read;
* ``http_head_timeout_seconds`` to send a whole request head, counted from the connection (or, on a kept-alive
  connection, from the request's first byte): a head still unfinished is answered 408 (or, if nothing came,
  the connection just closed);
* uvicorn's own keep-alive timeout (``http_keep_alive_seconds``) and a cap of ``http_max_connections`` open
  connections per server process: one more is answered 503 and closed; requests in progress are capped
  at the same number (uvicorn's ``limit_concurrency``).

The limits travel to ``--workers`` processes (which uvicorn starts afresh, by *spawn*) in the environment
variable ``_JPKI_HTTP_LIMITS``, set by :func:`run`; it is internal, not a setting.

Logs get the type and place of a failure, never its traceback or message: a database error's text carries the
SQL statement and its parameters (personal data), see :class:`ShortFailures`.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import traceback
from dataclasses import asdict, dataclass
from typing import Any

import httptools
from pydantic import Field
from pydantic_settings import BaseSettings
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LIMITS_VARIABLE = "_JPKI_HTTP_LIMITS"


class HttpServerSettings(BaseSettings):
    """The settings both servers share (each under its own prefix: ``JPKI_`` for the service, ``JPKI_CA_`` for the
    mock CA, e.g. ``JPKI_HTTP_MAX_HEADERS`` and ``JPKI_CA_HTTP_MAX_HEADERS``)."""

    http_max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest request head (request line and headers, in bytes); a larger one "
                                        "is answered 431 and the connection closed.")
    http_max_headers: int = Field(100, ge=8, description="Most headers in one request; more: 431.")
    http_head_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send a whole request head; an unfinished one is answered "
                                "408 and the connection closed.")
    http_keep_alive_seconds: int = Field(
        5, ge=1, description="An idle kept-alive connection is closed after this long (uvicorn's "
                               "timeout-keep-alive).")
    http_max_connections: int = Field(
        256, ge=1, description="Open connections per server process; one more is answered 503 and closed. "
                               "Requests in progress are capped at the same number (uvicorn's limit-concurrency).")
    expose_docs: bool = Field(
        True, description="Serve the API documentation (/docs, /redoc, /openapi.json); off: 404.")
    expose_metrics: bool = Field(
        True, description="Serve /metrics (Prometheus; the service only); off: 404.")


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int = 16 * 1024
    max_headers: int = 100
    timeout: float = 10.0

    @classmethod
    def of(cls, settings: HttpServerSettings) -> HeadLimits:
        return cls(settings.http_max_header_bytes, settings.http_max_headers, settings.http_head_timeout_seconds)


def _limits_from_environment() -> HeadLimits:
    given = os.environ.get(LIMITS_VARIABLE)
    return HeadLimits(**json.loads(given)) if given else HeadLimits()


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"type": "about:blank", "title": reason, "status": status, "detail": detail}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing; the protocol answers ``self.refusal``."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head, a head timeout and a connection cap."""

    limits: HeadLimits | None = None  # per process, read from the environment at the first connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if LimitedHttpProtocol.limits is None:
            LimitedHttpProtocol.limits = _limits_from_environment()
        self._limits: HeadLimits = LimitedHttpProtocol.limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # a byte of the current head arrived
        self._head_bytes = 0  # bytes fed while the head was unfinished (an upper bound of its size)
        self._head_size = 0  # the parsed size: URL, names, values
        self._header_count = 0
        self._refusal: bytes | None = None

    # -- connection ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency - 1:
            self.transport = transport  # not counted as a connection: answered and closed at once
            self._answer(_raw_response(503, "Service Unavailable", "too many open connections; try again shortly"))
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.parser is None:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._answer(self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._head_started:  # still inside a head: bound what the parser buffers
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_bytes + 2:
                self._answer(self._too_large(f"the request head is over {self._limits.max_bytes} bytes"))

    # -- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started, self._head_bytes, self._head_size, self._header_count = True, 0, 0, 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            self._refuse(self._too_large(f"a request may carry at most {self._limits.max_headers} headers"))
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_started = False
        self._disarm_head_timer()
        super().on_headers_complete()

    # -- helpers -------------------------------------------------------------------------
    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._limits.max_bytes:
            self._refuse(self._too_large(f"the request head is over {self._limits.max_bytes} bytes"))

    @staticmethod
    def _too_large(detail: str) -> bytes:
        return _raw_response(431, "Request Header Fields Too Large", detail)

    def _refuse(self, response: bytes) -> None:
        self._refusal = response
        raise _HeadRefused

    def _answer(self, response: bytes) -> None:
        self._refusal = response
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_started:
            self._answer(_raw_response(408, "Request Timeout",
                                       f"the request head was not sent within {self._limits.timeout:g} s"))
        else:  # nothing of a request came: nothing to answer
            self._refusal = b""
            self.transport.close()


# -- logs: the type and place of a failure, not its text -------------------------------------------
def short_reason(exc: BaseException) -> str:
    """``IntegrityError (UniqueViolation) at jpki_service/x.py:12``: what failed and where, nothing it carried."""
    kind = type(exc).__name__
    original = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError: the driver's error, whose text has SQL
    if original is not None:
        kind += f" ({type(original).__name__})"
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    ours = [f for f in frames if "site-packages" not in f.filename and any(part in f.filename for part in _OURS)]
    if ours or frames:
        where = (ours or frames)[-1]
        path = where.filename
        for root in (*_OURS, "/site-packages/"):
            if root in path:
                path = path[path.rindex(root) + 1:].removeprefix("site-packages/")
                break
        kind += f" at {path}:{where.lineno}"
    return kind


_OURS = ("/jpki_common/", "/jpki_service/", "/ca_mock/", "/app_client/")


class ShortFailures(logging.Filter):
    """A record with a traceback keeps its message and gets the failure's type and place instead of the
    traceback: an exception's text may hold an SQL statement, its parameters or a request's content."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage().rstrip()}: {short_reason(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging, every handler filtered by :class:`ShortFailures`, and the project's own loggers
    (which propagate to the root) written to stderr through the same filter."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"short_failures": {"()": "jpki_common.http_server.ShortFailures"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["short_failures"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def run(app: Any, settings: HttpServerSettings, **options: Any) -> None:
    """``uvicorn.run(app, **options)`` with this module's limits, protocol and logging (workers included)."""
    import uvicorn

    os.environ[LIMITS_VARIABLE] = json.dumps(asdict(HeadLimits.of(settings)))
    LimitedHttpProtocol.limits = None  # this process reads them again too
    uvicorn.run(app, http=LimitedHttpProtocol, log_config=log_config(),
                timeout_keep_alive=settings.http_keep_alive_seconds,
                # +1: uvicorn counts the connection asking; the cap itself is enforced at connection_made
                limit_concurrency=settings.http_max_connections + 1,
                h11_max_incomplete_event_size=settings.http_max_header_bytes, **options)

