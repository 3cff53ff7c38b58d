"""Rate limits on what can be guessed or hammered: owner proofs and operator logins.

Proof attempts are counted where each one starts: a proof needs a fresh single-use challenge, so
``POST /api/v1/challenges`` is counted. A fixed-window counter per (scope, subject), in the database
so that every replica behind a load balancer counts the same attempts. Counting happens *before* the
work (a challenge spent, an argon2 hash checked), so a flood costs the service one small write per
request. Over the limit the answer is ``429`` with ``Retry-After``; the attempt is not counted
again.

| scope | subject | default | setting |
|---|---|---|---|
| ``proof-client`` | client address | 120 / minute | ``JPKI_PROOF_ATTEMPTS_PER_CLIENT_PER_MINUTE`` |
| ``proof-registration`` | registration id | 20 / hour | ``JPKI_PROOF_ATTEMPTS_PER_REGISTRATION_PER_HOUR`` |
| ``login-client`` | client address | 20 / minute | ``JPKI_LOGIN_ATTEMPTS_PER_CLIENT_PER_MINUTE`` |

The per-account lock-out of operators (``operators.service``) stays: it stops guessing one
account's password from many addresses; the per-client limit stops one address trying many accounts.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError

from jpki_service.adapters.db import Store
from jpki_service.common.problems import TooManyAttempts
from jpki_service.common.settings import ServiceSettings
from jpki_service.rate_limits.models import AttemptCounter

# Seconds since the epoch, as ``time.time``. Every window computation here reads this one clock, so a
# test can set it (``monkeypatch.setattr(service, "clock", lambda: ...)``) instead of racing the wall
# clock's minute boundary.
clock = time.time


@dataclass(frozen=True)
class Limit:
    scope: str
    allowed: int  # 0 or less: no limit
    window_seconds: int
    what: str  # for the refusal: "proof attempts from this client"


def count_attempt(store: Store, limit: Limit, subject: str) -> None:
    """Count one attempt by ``subject``; :class:`TooManyAttempts` when over ``limit``."""
    if limit.allowed <= 0:
        return
    now = clock()
    window = int(now // limit.window_seconds)
    key = f"{limit.scope}:{subject}:{window}"[:200]
    expires = dt.datetime.fromtimestamp((window + 1) * limit.window_seconds, dt.UTC)
    with store.transaction() as session:
        bumped = session.execute(update(AttemptCounter).where(AttemptCounter.key == key)
                                 .values(count=AttemptCounter.count + 1).returning(AttemptCounter.count)).scalar()
        if bumped is None:
            try:
                with session.begin_nested():
                    session.add(AttemptCounter(key=key, count=1, expires_at=expires))
                bumped = 1
            except IntegrityError:  # another request made the row first
                bumped = session.execute(update(AttemptCounter).where(AttemptCounter.key == key)
                                         .values(count=AttemptCounter.count + 1)
                                         .returning(AttemptCounter.count)).scalar_one()
    if bumped > limit.allowed:
        retry_after = max(1, int((window + 1) * limit.window_seconds - now) + 1)
        raise TooManyAttempts(f"too many {limit.what}: at most {limit.allowed} per {limit.window_seconds} s; "
                              f"try again in {retry_after} s", retry_after=retry_after, scope=limit.scope)


def count_proof_attempt(store: Store, settings: ServiceSettings, client: str, registration_id: str | None) -> None:
    """Before any owner request with a proof, and before handing out a challenge."""
    count_attempt(store, Limit("proof-client", settings.proof_attempts_per_client_per_minute, 60,
                               "proof attempts from this client"), client)
    if registration_id is not None:
        count_attempt(store, Limit("proof-registration", settings.proof_attempts_per_registration_per_hour, 3600,
                                   "proof attempts on this registration"), registration_id)


def count_login_attempt(store: Store, settings: ServiceSettings, client: str) -> None:
    count_attempt(store, Limit("login-client", settings.login_attempts_per_client_per_minute, 60,
                               "operator logins from this client"), client)


def purge_expired_counters(store: Store) -> int:
    with store.transaction() as session:
        now = dt.datetime.fromtimestamp(int(clock()), dt.UTC)  # to the second, as ``utcnow``
        result = session.execute(delete(AttemptCounter).where(AttemptCounter.expires_at < now))
        return cast(CursorResult[Any], result).rowcount  # a DELETE's result is a CursorResult


def attempts(store: Store, limit: Limit, subject: str) -> int:
    """Attempts counted in the current window (for status pages and tests)."""
    window = int(clock() // limit.window_seconds)
    with store.sessions() as session:
        return session.scalar(select(AttemptCounter.count).where(
            AttemptCounter.key == f"{limit.scope}:{subject}:{window}"[:200])) or 0
