"""Operator accounts, logins and sessions.

Passwords are stored as argon2id hashes. Failed logins are counted per account and lock it for
``operator_lockout_seconds`` after ``operator_max_failed_logins`` in a row; an unknown username
costs the same hash time and gets the same answer, so neither tells which accounts exist.
A session is a random token held by the browser (cookie) or the script (bearer); only its
SHA-256 is stored, with the CSRF token the console's forms must carry. Every login, failed or
not, goes into the audit trail.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from jpki_service.adapters.db import Store, utcnow
from jpki_service.audit import service as audit
from jpki_service.common.problems import AccountLocked, InvalidInput, LoginRefused, NotSignedIn, OperatorExists
from jpki_service.common.settings import ServiceSettings
from jpki_service.operators.models import Operator, OperatorSession
from jpki_service.operators.roles import Role
from jpki_service.rate_limits.service import count_login_attempt

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
_LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)  # a session row is written at most once a minute


@dataclass(frozen=True)
class SignedIn:
    """An operator with a live session, as every call-centre use case receives it."""

    operator_id: int
    username: str
    role: Role
    csrf_token: str
    expires_at: dt.datetime
    token: str | None = None  # only right after login: the caller keeps it, we keep its hash

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.username}"


@functools.cache
def _dummy_hash() -> str:
    """The hash an unknown username is checked against. Made at the first login of any account (not at
    import: an argon2 hash takes about 0.4 s, which every start of the service paid), so the first
    login costs the same extra hash whichever username it names."""
    return _hasher.hash("not-a-password-of-anyone")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_operator(store: Store, username: str, role: Role, password: str) -> None:
    if not USERNAME.match(username):
        raise InvalidInput("username: 3 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                           field="username")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    try:
        with store.transaction() as session:
            session.add(Operator(username=username, role=role.value, password_hash=_hasher.hash(password),
                                 failed_logins=0, disabled=False, created_at=utcnow()))
    except IntegrityError:
        raise OperatorExists(f"an operator named {username} exists", field="username") from None


def log_in(store: Store, settings: ServiceSettings, chain_key: bytes, username: str, password: str,
           client: str) -> SignedIn:
    """A new session, or :class:`LoginRefused` / :class:`AccountLocked` (the count is kept either way),
    or :class:`TooManyAttempts` when this client tries too many logins (before any hash is computed)."""
    count_login_attempt(store, settings, client)
    dummy_hash = _dummy_hash()
    refusal: Exception | None = None
    with store.transaction() as session:
        operator = session.scalars(select(Operator).where(Operator.username == username).with_for_update()
                                   ).one_or_none()
        now = utcnow()
        if operator is None or operator.disabled:
            _verifies(dummy_hash, password)  # same cost as a real account
            audit.record(session, chain_key, "operator:?", "login-refused", None,
                         {"client": client, "why": "unknown or disabled account"})
            refusal = LoginRefused("username or password wrong")
        elif operator.locked_until is not None and operator.locked_until > now:
            audit.record(session, chain_key, f"operator:{username}", "login-refused", None,
                         {"client": client, "why": "account locked"})
            refusal = _locked(operator.locked_until, settings)
        elif not _verifies(operator.password_hash, password):
            operator.failed_logins += 1
            why = "wrong password"
            refusal = LoginRefused("username or password wrong")
            if operator.failed_logins >= settings.operator_max_failed_logins:
                operator.locked_until = now + dt.timedelta(seconds=settings.operator_lockout_seconds)
                operator.failed_logins = 0
                why += "; account locked"
                refusal = _locked(operator.locked_until, settings)
            audit.record(session, chain_key, f"operator:{username}", "login-refused", None,
                         {"client": client, "why": why})
        else:
            operator.failed_logins, operator.locked_until = 0, None
            if _hasher.check_needs_rehash(operator.password_hash):
                operator.password_hash = _hasher.hash(password)
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            expires = now + dt.timedelta(seconds=settings.operator_session_max_seconds)
            session.add(OperatorSession(token_hash=_token_hash(token), operator_id=operator.id, csrf_token=csrf,
                                        created_at=now, last_seen_at=now, expires_at=expires))
            audit.record(session, chain_key, f"{operator.role}:{username}", "login", None, {"client": client})
            signed_in = SignedIn(operator.id, username, Role(operator.role), csrf, expires, token)
    if refusal is not None:
        raise refusal  # after the commit: the failed attempt stays counted
    return signed_in


def _locked(until: dt.datetime, settings: ServiceSettings) -> AccountLocked:
    return AccountLocked(f"the account is locked until {until.isoformat()} after "
                         f"{settings.operator_max_failed_logins} failed logins in a row; wait, or ask the service's "
                         "administrator to unlock it (jpki-service operator unlock)", locked_until=until.isoformat())


def _verifies(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_for_token(store: Store, settings: ServiceSettings, token: str | None) -> SignedIn:
    """The operator behind a session token, or :class:`NotSignedIn`."""
    if not token:
        raise NotSignedIn("sign in first (POST /api/v1/operator/session, or the console's login page)")
    now = utcnow()
    with store.sessions() as session:
        row = session.execute(select(OperatorSession, Operator).join(Operator)
                              .where(OperatorSession.token_hash == _token_hash(token))).one_or_none()
    if row is None:
        raise NotSignedIn("the session is unknown or ended; sign in again")
    record, operator = row
    idle_limit = record.last_seen_at + dt.timedelta(seconds=settings.operator_session_idle_seconds)
    if now > record.expires_at or now > idle_limit or operator.disabled:
        log_out(store, token)
        raise NotSignedIn("the session has expired; sign in again")
    if now - record.last_seen_at > _LAST_SEEN_RESOLUTION:
        with store.transaction() as session:
            session.get_one(OperatorSession, record.token_hash).last_seen_at = now
    return SignedIn(operator.id, operator.username, Role(operator.role), record.csrf_token, record.expires_at)


def log_out(store: Store, token: str) -> None:
    with store.transaction() as session:
        session.execute(delete(OperatorSession).where(OperatorSession.token_hash == _token_hash(token)))


def unlock(store: Store, username: str) -> None:
    with store.transaction() as session:
        operator = session.scalars(select(Operator).where(Operator.username == username)).one_or_none()
        if operator is None:
            raise InvalidInput(f"no operator named {username}", field="username")
        operator.failed_logins, operator.locked_until = 0, None
