"""The carriers' use cases: credentials (OAuth2 client credentials, RFC 6749 section 4.4) and the
lost-phone report (docs/carriers.md).

A carrier is given a client id and a client secret once (``jpki-service carrier add``); the secret is
kept only as an argon2id hash. With them (HTTP Basic) it obtains a short-lived access token, kept only
as a SHA-256 hash, and sends reports with it. Disabling a carrier deletes its tokens: they stop working
at once, and a token of a disabled carrier is refused anyway.

A report names the subscriber by the items the carrier verified at contract. They are matched through the
holder index (:func:`~jpki_service.registrations.transitions.holder_matches`, the one normaliser of
:mod:`jpki_service.holder_data`) and never stored: a report row keeps the carrier's case number, the kind
and how many registrations it suspended. The suspension is the call centre's: the lifecycle's
``suspended`` transition through :func:`~jpki_service.registrations.transitions.apply_event` (both
certificates on hold at the CA, the owner told), caused by the ``carrier`` actor, then carried to the CA at
once if it answers. A carrier can do nothing else: no lift, no revocation. A report is idempotent per
(carrier, case number): a repeat answers the first outcome and changes nothing.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import Store, utcnow
from jpki_service.audit import service as audit
from jpki_service.carriers.models import Carrier, CarrierReport, CarrierToken
from jpki_service.carriers.schemas import ReportRequest
from jpki_service.common.problems import (
    CarrierClientRefused,
    CarrierExists,
    CarrierNotFound,
    CarrierTokenRefused,
    InvalidInput,
)
from jpki_service.lifecycle import Actor, Event, State
from jpki_service.rate_limits.service import Limit, count_attempt
from jpki_service.registrations.models import Registration
from jpki_service.registrations.transitions import apply_event, carry_quietly, holder_matches

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """What an unknown client id is checked against, so that it costs the same hash time as a known one."""
    return _hasher.hash("not-a-secret-of-anyone")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _verifies(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def actor_of(name: str) -> str:
    """How the audit trail names a carrier."""
    return f"{Actor.CARRIER.value}:{name}"


# -- the administrator's commands ------------------------------------------------------------------
@dataclass(frozen=True)
class NewCarrier:
    name: str
    client_id: str
    client_secret: str  # shown once; only its hash is kept


@dataclass(frozen=True)
class CarrierRow:
    name: str
    client_id: str
    state: str  # active | disabled
    created_at: dt.datetime
    live_tokens: int
    reports: int
    last_report_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "client_id": self.client_id, "state": self.state,
                "created_at": self.created_at.isoformat(), "live_tokens": self.live_tokens, "reports": self.reports,
                "last_report_at": self.last_report_at.isoformat() if self.last_report_at else None}


def add_carrier(store: Store, chain_key: bytes, actor: str, name: str) -> NewCarrier:
    if not NAME.match(name):
        raise InvalidInput("name: 2 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", field="name")
    client_id, secret = f"carrier-{secrets.token_hex(8)}", secrets.token_urlsafe(32)
    try:
        with store.transaction() as session:
            session.add(Carrier(name=name, client_id=client_id, secret_hash=_hasher.hash(secret), disabled=False,
                                created_at=utcnow()))
            session.flush()
            audit.record(session, chain_key, actor, "carrier-added", None, {"carrier": name, "client_id": client_id})
    except IntegrityError:
        raise CarrierExists(f"a carrier named {name} exists", field="name") from None
    return NewCarrier(name, client_id, secret)


def list_carriers(store: Store) -> list[CarrierRow]:
    now = utcnow()
    with store.sessions() as session:
        tokens = dict(session.execute(select(CarrierToken.carrier_id, func.count()).where(
            CarrierToken.expires_at > now).group_by(CarrierToken.carrier_id)).tuples().all())
        reports = dict(session.execute(select(CarrierReport.carrier_id, func.count())
                                       .group_by(CarrierReport.carrier_id)).tuples().all())
        return [CarrierRow(c.name, c.client_id, "disabled" if c.disabled else "active", c.created_at,
                           tokens.get(c.id, 0), reports.get(c.id, 0), c.last_report_at)
                for c in session.scalars(select(Carrier).order_by(Carrier.name))]


def disable_carrier(store: Store, chain_key: bytes, actor: str, name: str) -> int:
    """Disable a carrier: its tokens are deleted (they stop working at once), it gets no new ones. Audited.
    Answers how many live tokens ended."""
    now = utcnow()
    with store.transaction() as session:
        carrier = session.scalars(select(Carrier).where(Carrier.name == name).with_for_update()).one_or_none()
        if carrier is None:
            raise CarrierNotFound(f"no carrier named {name}", field="name")
        live = session.scalar(select(func.count()).select_from(CarrierToken).where(
            CarrierToken.carrier_id == carrier.id, CarrierToken.expires_at > now)) or 0
        session.execute(delete(CarrierToken).where(CarrierToken.carrier_id == carrier.id))
        carrier.disabled = True
        audit.record(session, chain_key, actor, "carrier-disabled", None, {"carrier": name, "tokens_ended": live})
    return live


# -- credentials over HTTP -------------------------------------------------------------------------
def issue_token(ctx: ServiceContext, client_id: str | None, client_secret: str | None, client: str) -> dict[str, Any]:
    """An access token for a carrier's client credentials (RFC 6749 section 4.4, the answer of section 5.1),
    or :class:`CarrierClientRefused`. Requests are counted per client address before any hash is checked."""
    count_attempt(ctx.store, Limit("carrier-token-client", ctx.settings.carrier_token_requests_per_client_per_minute,
                                   60, "carrier token requests from this client"), client)
    dummy = _dummy_hash()
    now = utcnow()
    token = secrets.token_urlsafe(32)
    lifetime = ctx.settings.carrier_token_seconds
    with ctx.store.transaction() as session:
        carrier = session.scalars(select(Carrier).where(Carrier.client_id == (client_id or ""))).one_or_none()
        usable = carrier is not None and not carrier.disabled and bool(client_secret)
        if not usable or not _verifies(carrier.secret_hash, client_secret or ""):  # type: ignore[union-attr]
            if not usable:
                _verifies(dummy, client_secret or "")  # the same cost whatever was wrong
            audit.record(session, ctx.keys.audit_chain, actor_of(carrier.name) if carrier else "carrier:?",
                         "carrier-token-refused", None, {"client": client})
            refusal = CarrierClientRefused("client id or secret wrong, or the carrier is disabled",
                                           error="invalid_client")
        else:
            assert carrier is not None
            session.execute(delete(CarrierToken).where(CarrierToken.carrier_id == carrier.id,
                                                       CarrierToken.expires_at <= now))
            session.add(CarrierToken(token_hash=_token_hash(token), carrier_id=carrier.id, issued_at=now,
                                     expires_at=now + dt.timedelta(seconds=lifetime)))
            audit.record(session, ctx.keys.audit_chain, actor_of(carrier.name), "carrier-token", None,
                         {"client": client, "expires_in": lifetime})
            refusal = None
    if refusal is not None:
        raise refusal  # after the commit: the refusal stays audited
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}


@dataclass(frozen=True)
class SignedCarrier:
    carrier_id: int
    name: str


def carrier_for_token(store: Store, token: str | None) -> SignedCarrier:
    """The carrier behind a live access token, or :class:`CarrierTokenRefused`."""
    if not token:
        raise CarrierTokenRefused("a carrier call needs an access token (Authorization: Bearer <token>; "
                                  "POST /api/v1/carrier/token gives one)", error="invalid_token")
    with store.sessions() as session:
        carrier = session.scalars(select(Carrier).join(CarrierToken).where(
            CarrierToken.token_hash == _token_hash(token), CarrierToken.expires_at > utcnow(),
            Carrier.disabled.is_(False))).one_or_none()
        if carrier is None:
            raise CarrierTokenRefused("the access token is unknown, expired, or its carrier is disabled; "
                                      "get a new one", error="invalid_token")
        return SignedCarrier(carrier.id, carrier.name)


# -- the report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportOutcome:
    answer: dict[str, Any]
    repeated: bool  # the case number was reported before: this is the first report's answer


def _answer(report: CarrierReport) -> dict[str, Any]:
    return {"case_number": report.case_number, "kind": report.kind, "received_at": report.received_at.isoformat(),
            "suspended": report.suspended}


def report(ctx: ServiceContext, carrier: SignedCarrier, request: ReportRequest) -> ReportOutcome:
    """Suspend the subscriber's active registrations, once per (carrier, case number). Counted against the
    carrier's limit first (repeats too); the carrier's row is locked, so its reports take turns."""
    count_attempt(ctx.store, Limit("carrier-reports", ctx.settings.carrier_reports_per_minute, 60,
                                   "reports from this carrier"), str(carrier.carrier_id))
    subscriber = request.subscriber
    matches = holder_matches(ctx.keys.holder_index, subscriber.name, subscriber.birth, subscriber.address)
    actor = actor_of(carrier.name)
    suspended: list[str] = []
    with ctx.store.transaction() as session:
        row = session.scalars(select(Carrier).where(Carrier.id == carrier.carrier_id).with_for_update()).one()
        if row.disabled:  # disabled since the token was checked
            raise CarrierTokenRefused("the carrier is disabled", error="invalid_token")
        first = session.scalars(select(CarrierReport).where(CarrierReport.carrier_id == row.id,
                                                            CarrierReport.case_number == request.case_number)
                                ).one_or_none()
        if first is not None:
            audit.record(session, ctx.keys.audit_chain, actor, "carrier-report-repeated", None,
                         {"carrier": row.name, "case_number": first.case_number, "kind": request.kind})
            return ReportOutcome(_answer(first), repeated=True)
        found = list(session.scalars(select(Registration).where(matches, Registration.state == State.ACTIVE.value)
                                     .order_by(Registration.created_at).with_for_update()))
        note = f"carrier {row.name}: {request.kind}; case {request.case_number}"
        for registration in found:
            apply_event(session, registration, Event.SUSPENDED, operator=row.name, note=note,
                        suspension_reason=request.kind, actor=Actor.CARRIER)
            audit.record(session, ctx.keys.audit_chain, actor, "suspend", registration.case_reference,
                         {"carrier": row.name, "case_number": request.case_number, "kind": request.kind})
            suspended.append(registration.id)
        now = utcnow()
        first = CarrierReport(carrier_id=row.id, case_number=request.case_number, kind=request.kind,
                              suspended=len(found), received_at=now)
        session.add(first)
        row.last_report_at = now
        # Last, so the chain's head stays locked only for the append and the commit.
        audit.record(session, ctx.keys.audit_chain, actor, "carrier-report", None,
                     {"carrier": row.name, "case_number": request.case_number, "kind": request.kind,
                      "suspended": len(found), "registrations": [r.case_reference for r in found]})
        answer = _answer(first)
    for registration_id in suspended:  # after the commit: to the CA now if it answers, else the dispatcher
        carry_quietly(ctx, registration_id)
    return ReportOutcome(answer, repeated=False)
