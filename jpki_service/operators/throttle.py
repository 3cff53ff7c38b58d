"""Throttling of operator sign-ins (NIST SP 800-63B 5.2.2), instead of locking accounts.

Failed sign-ins are counted per *username* (whether an account of that name exists or not, so the
answers tell nothing about which do) and per *source* (the client address, as
``JPKI_TRUSTED_PROXIES`` establishes it). The first ``operator_login_free_failures`` of either cost
nothing; after that each failure makes the next sign-in wait, ``operator_login_first_delay_seconds``
after the first one beyond the free ones, doubling with each further one, at most
``operator_login_max_delay_seconds``. A sign-in while a wait runs is answered ``429`` with
``Retry-After`` before any password is checked (for a known and an unknown username alike), and is
not counted. The counts are forgotten ``operator_login_failures_kept_seconds`` after the last
failure, and a successful sign-in clears the counts it was checked against.

An account's *usual sources* are the addresses it signed in from before (kept as HMACs, table
``operator_sources``). From a usual source only that source's own failures count, not the
account's: a stranger failing against the account from elsewhere slows the stranger down and every
*new* place the account is used from, never the owner at their usual desk.

The counters live in ``attempt_counters`` (shared by every replica): key ``<scope>:<subject>``,
``count`` the failures, ``expires_at`` the last failure plus the keeping time (so the last failure
is ``expires_at`` minus that time).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import math
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki_service.common.settings import ServiceSettings
from jpki_service.rate_limits.models import AttemptCounter

# Seconds since the epoch, as ``time.time``; tests set it (``monkeypatch.setattr(throttle, "clock", ...)``).
clock = time.time

ACCOUNT = "login-fail-account"  # subject: the username as typed, lower-cased
SOURCE = "login-fail-source"  # subject: the client address


@dataclass(frozen=True)
class Policy:
    free_failures: int
    first_delay: float
    max_delay: float
    kept_seconds: int

    @classmethod
    def of(cls, settings: ServiceSettings) -> Policy:
        return cls(settings.operator_login_free_failures, settings.operator_login_first_delay_seconds,
                   settings.operator_login_max_delay_seconds, settings.operator_login_failures_kept_seconds)

    def delay_after(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row, from the last one."""
        beyond = failures - self.free_failures
        if beyond < 0:
            return 0.0
        return min(self.max_delay, self.first_delay * 2 ** min(beyond, 60))


def subject_of(username: str) -> str:
    return username.strip().lower()[:80]


def _key(scope: str, subject: str) -> str:
    return f"{scope}:{subject}"[:200]


def _moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def wait_seconds(session: Session, policy: Policy, scope: str, subject: str, now: float) -> float:
    """How long a sign-in checked against (``scope``, ``subject``) must still wait; 0: none."""
    row = session.get(AttemptCounter, _key(scope, subject))
    if row is None or row.expires_at.timestamp() <= now:
        return 0.0
    last_failure = row.expires_at.timestamp() - policy.kept_seconds
    return max(0.0, last_failure + policy.delay_after(row.count) - now)


def failures(session: Session, scope: str, subject: str, now: float) -> int:
    row = session.get(AttemptCounter, _key(scope, subject))
    return 0 if row is None or row.expires_at.timestamp() <= now else row.count


def count_failure(session: Session, policy: Policy, scope: str, subject: str, now: float) -> None:
    """One more failure of (``scope``, ``subject``), in the caller's transaction (race-free: one UPDATE)."""
    key, expires = _key(scope, subject), _moment(now + policy.kept_seconds)
    fresh = AttemptCounter.expires_at <= _moment(now)
    bumped = session.execute(update(AttemptCounter).where(AttemptCounter.key == key).values(
        count=_restart_or_add(fresh), expires_at=expires).returning(AttemptCounter.count)).scalar()
    if bumped is not None:
        return
    try:
        with session.begin_nested():
            session.add(AttemptCounter(key=key, count=1, expires_at=expires))
    except IntegrityError:  # another request made the row first
        session.execute(update(AttemptCounter).where(AttemptCounter.key == key).values(
            count=_restart_or_add(fresh), expires_at=expires))


def _restart_or_add(expired: ColumnElement[bool]) -> ColumnElement[int]:
    """A counter whose failures were forgotten starts again at 1."""
    return case((expired, 1), else_=AttemptCounter.count + 1)


def clear(session: Session, scope: str, subject: str) -> int:
    """Forget (``scope``, ``subject``)'s failures; how many there were."""
    key = _key(scope, subject)
    count = session.scalar(select(AttemptCounter.count).where(AttemptCounter.key == key)) or 0
    session.execute(delete(AttemptCounter).where(AttemptCounter.key == key))
    return count


def retry_after(wait: float) -> int:
    """``Retry-After`` for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


@functools.lru_cache(maxsize=4)
def _source_key(chain_key: bytes) -> bytes:
    # A key of its own, derived from the service's audit-chain key (itself derived from the data key).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"jpki-service/operator-login-sources").derive(chain_key)


def source_hash(chain_key: bytes, client: str) -> str:
    """What ``operator_sources`` keeps of an address: an HMAC, so the table lists no addresses."""
    return hmac.new(_source_key(chain_key), client.encode(), hashlib.sha256).hexdigest()
