"""Rate limits on what can be hammered or guessed: challenges, refused proofs, logins.

Owner proofs are limited so that nobody can turn the limit against the owner (issue 12, item 4): what
is counted per registration is *refused* proofs, never challenges, and a valid proof is never counted
nor refused, so a stranger who knows a registration id can make its refused proofs answer 429 but
cannot stop the owner's own revoke, lift or reset. Challenges, a write each, are limited per client
address only (the address that really connected unless ``JPKI_TRUSTED_PROXIES`` names a proxy).

A fixed-window counter per (scope, subject), in the database so that every replica behind a load
balancer counts the same attempts. Challenges and logins are counted *before* the work (a challenge
written, an argon2 hash checked), so a flood costs the service one small write per request. A
refused proof is counted where it is refused (the owner and relying-party views catch
``ProofRejected``): within the limit it answers ``403``, over it ``429``. Every ``429`` carries
``Retry-After``.

| scope | counts, per (id: registration) | default | setting (``JPKI_...``) |
|---|---|---|---|
| ``challenge-client`` | owner challenges, client | 120 / min | ``CHALLENGES_PER_CLIENT_PER_MINUTE`` |
| ``failed-proof-client`` | refused owner proofs, client | 30 / min | ``FAILED_PROOFS_PER_CLIENT_PER_MINUTE`` |
| ``failed-proof-registration`` | refused owner proofs, id | 20 / h | ``FAILED_PROOFS_PER_REGISTRATION_PER_HOUR`` |
| ``rp-challenge-client`` | RP login challenges, client | 120 / min | ``RP_CHALLENGES_PER_CLIENT_PER_MINUTE`` |
| ``rp-failed-login-client`` | refused RP logins, client | 30 / min | ``RP_FAILED_LOGINS_PER_CLIENT_PER_MINUTE`` |
| ``login-client`` | operator logins, client | 20 / min | ``LOGIN_ATTEMPTS_PER_CLIENT_PER_MINUTE`` |
| ``carrier-reports`` | carrier reports, carrier | 60 / min | ``CARRIER_REPORTS_PER_MINUTE`` |
| ``carrier-token-client`` | carrier tokens, client | 20 / min | ``CARRIER_TOKEN_REQUESTS_PER_CLIENT_PER_MINUTE`` |

"Client" is the address that really connected (``JPKI_TRUSTED_PROXIES``); "RP" the demo relying party;
"carrier" a mobile carrier's credential (``jpki_service/carriers``, docs/carriers.md).

Operator sign-ins are also throttled after failures, per username and per address, with growing
waits (``operators.throttle``, which keeps its counts in this table too): that stops guessing one
account's password from many addresses; the per-client limit here stops one address flooding sign-ins.
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


def _counted(store: Store, limit: Limit, subject: str) -> TooManyAttempts | None:
    """Count one attempt by ``subject``; the refusal to raise when that is over ``limit``."""
    if limit.allowed <= 0:
        return None
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
    if bumped <= limit.allowed:
        return None
    retry_after = max(1, int((window + 1) * limit.window_seconds - now) + 1)
    return TooManyAttempts(f"too many {limit.what}: at most {limit.allowed} per {limit.window_seconds} s; "
                           f"try again in {retry_after} s", retry_after=retry_after, scope=limit.scope)


def count_attempt(store: Store, limit: Limit, subject: str) -> None:
    """Count one attempt by ``subject``; :class:`TooManyAttempts` when over ``limit``."""
    refusal = _counted(store, limit, subject)
    if refusal is not None:
        raise refusal


def count_challenge(store: Store, settings: ServiceSettings, client: str) -> None:
    """Before handing out an owner challenge: per client only, never per registration."""
    count_attempt(store, Limit("challenge-client", settings.challenges_per_client_per_minute, 60,
                               "challenges from this client"), client)


def count_failed_proof(store: Store, settings: ServiceSettings, client: str, registration_id: str | None) -> None:
    """After an owner proof was refused: counted against the client and the registration (both, even
    when the first is over); :class:`TooManyAttempts` when either is over its limit, to be answered
    instead of the refusal. Never called for a valid proof."""
    refusals = [_counted(store, Limit("failed-proof-client", settings.failed_proofs_per_client_per_minute, 60,
                                      "refused proofs from this client"), client)]
    if registration_id is not None:
        refusals.append(_counted(store, Limit("failed-proof-registration",
                                              settings.failed_proofs_per_registration_per_hour, 3600,
                                              "refused proofs on this registration"), registration_id))
    for refusal in refusals:
        if refusal is not None:
            raise refusal


def count_rp_challenge(store: Store, settings: ServiceSettings, client: str) -> None:
    count_attempt(store, Limit("rp-challenge-client", settings.rp_challenges_per_client_per_minute, 60,
                               "login challenges from this client"), client)


def count_failed_rp_login(store: Store, settings: ServiceSettings, client: str) -> None:
    """After a relying-party login was refused; :class:`TooManyAttempts` when over the limit."""
    count_attempt(store, Limit("rp-failed-login-client", settings.rp_failed_logins_per_client_per_minute, 60,
                               "refused logins from this client"), client)


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
