"""The OCSP responder (RFC 6960, with the RFC 5019 GET form) as a bare ASGI application.

It sits in front of FastAPI because it is the hot path: a nonce-less query for a known
certificate is one indexed read of a response signed at the last status change. Only a
query with a nonce, or for a serial this CA never issued, costs a signature, and that runs
off the event loop.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

import anyio.to_thread
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from sqlalchemy import bindparam, select

from ca_mock.authorities.service import load_hierarchy
from ca_mock.certificates.models import IssuedCertificate
from ca_mock.ocsp.models import PreparedOCSPResponse
from ca_mock.ocsp.service import HASHES, build_response
from ca_mock.settings import CASettings
from jpki_common.http_server import short_reason
from jpki_common.store import DriverQuery, Store, utcnow

log = logging.getLogger("ca_mock.ocsp")

MAX_REQUEST_BYTES = 8 * 1024
MEDIA_TYPE = b"application/ocsp-response"


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


MALFORMED = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
UNAUTHORIZED = _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
INTERNAL_ERROR = _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)


class PreparedLookup:
    """The responder's one hot read: the pre-produced answer for (serial, hash, issuer).

    A :class:`~ca_mock.db.DriverQuery`. Nothing is cached, so a status change is visible at once.
    """

    def __init__(self, store: Store) -> None:
        table = PreparedOCSPResponse.__table__
        self._query = DriverQuery(store.engine, select(table.c.der, table.c.next_update).where(
            table.c.serial == bindparam("serial"), table.c.hash_algorithm == bindparam("algorithm"),
            table.c.authority == bindparam("authority"),
        ))
        dialect = store.engine.dialect
        # The column type's own conversion (SQLite returns the time as text); the column is NOT NULL.
        self._next_update = cast(Callable[[Any], dt.datetime],
                                 table.c.next_update.type.dialect_impl(dialect).result_processor(dialect, None)
                                 or (lambda value: value))

    def __call__(self, serial_hex: str, algorithm: str, authority: str) -> bytes | None:
        row = self._query.first(serial=serial_hex, algorithm=algorithm, authority=authority)
        if row is None:
            return None
        der, next_update = row
        return bytes(der) if self._next_update(next_update) > utcnow() else None


class OCSPResponder:
    """``POST /ocsp`` with a DER request, or ``GET /ocsp/{base64 DER}``."""

    def __init__(self, store: Store, settings: CASettings) -> None:
        self.store = store
        self._prepared = PreparedLookup(store)
        self.validity = dt.timedelta(hours=settings.ocsp_validity_hours)
        self.cache_max_age = settings.ocsp_cache_max_age_seconds

    # -- answering ---------------------------------------------------------------------------
    def _parse(self, request_der: bytes):
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            algorithm = request.hash_algorithm.name
            serial = request.serial_number
        except (ValueError, NotImplementedError, binascii.Error):
            # NotImplementedError: more than one certificate in one request (LIBRARY_NOTES).
            return None
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
        return request, algorithm, serial, nonce

    def _signed_now(self, issuer, serial: int, algorithm: str, nonce: bytes | None) -> bytes:
        with self.store.sessions() as session:
            cert = session.get(IssuedCertificate, format(serial, "x"))
            if cert is None or cert.authority != issuer.name:
                status, reason, revoked_at = "unknown", None, None
            else:
                status, reason, revoked_at = cert.status, cert.reason, cert.revoked_at
        der, _, _ = build_response(load_hierarchy(self.store), issuer, serial, algorithm, status, reason,
                                   revoked_at, self.validity, nonce=nonce)
        return der

    async def answer(self, request_der: bytes) -> bytes:
        parsed = self._parse(request_der)
        if parsed is None:
            return MALFORMED
        request, algorithm, serial, nonce = parsed
        if algorithm not in HASHES:
            return UNAUTHORIZED
        issuer = load_hierarchy(self.store).issuer_for_cert_id(
            algorithm, request.issuer_name_hash, request.issuer_key_hash
        )
        if issuer is None:
            return UNAUTHORIZED  # RFC 6960 2.3: not a CA this responder answers for
        if nonce is None:
            prepared = self._prepared(format(serial, "x"), algorithm, issuer.name)
            if prepared is not None:
                return prepared
        return await anyio.to_thread.run_sync(self._signed_now, issuer, serial, algorithm, nonce)

    # -- ASGI --------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        method = scope["method"]
        if method == "POST":
            body = bytearray()
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > MAX_REQUEST_BYTES:
                    await self._send(send, 413, MALFORMED)
                    return
                if not message.get("more_body"):
                    break
            request_der, cacheable = bytes(body), False
        elif method == "GET":
            encoded = scope["path"][len("/ocsp/"):]
            try:
                request_der = base64.b64decode(urllib.parse.unquote(encoded), validate=True)
            except (binascii.Error, ValueError):
                await self._send(send, 200, MALFORMED)
                return
            cacheable = True
        else:
            await self._send(send, 405, MALFORMED, extra=[(b"allow", b"GET, POST")])
            return
        try:
            der = await self.answer(request_der)
        except Exception as exc:  # never a 500 page: an OCSP client understands internalError
            log.error("OCSP answered internalError: %s", short_reason(exc))  # no traceback: it may carry SQL
            self.store.health.note(exc)
            der = INTERNAL_ERROR
        extra = []
        if cacheable and der not in (MALFORMED, UNAUTHORIZED, INTERNAL_ERROR):
            extra = self._cache_headers(der)
        await self._send(send, 200, der, extra=extra)

    def _cache_headers(self, der: bytes) -> list[tuple[bytes, bytes]]:
        """RFC 5019 caching for GET, with a short max-age: a revocation must not wait for caches."""
        response = ocsp.load_der_ocsp_response(der)
        if any(isinstance(e.value, x509.OCSPNonce) for e in response.extensions):
            return [(b"cache-control", b"no-store")]
        next_update = response.next_update_utc
        if next_update is None:
            return []
        max_age = max(0, min(self.cache_max_age, int((next_update - utcnow()).total_seconds())))
        return [
            (b"cache-control", f"public, max-age={max_age}, no-transform, must-revalidate".encode()),
            (b"last-modified", email.utils.format_datetime(response.produced_at_utc, usegmt=True).encode()),
            (b"expires", email.utils.format_datetime(next_update, usegmt=True).encode()),
        ]

    @staticmethod
    async def _send(send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", MEDIA_TYPE), (b"content-length", str(len(body)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
