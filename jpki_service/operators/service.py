"""Operator accounts, sign-ins and sessions.

Passwords are stored as argon2id hashes. Failed sign-ins are throttled per username and per client
address (:mod:`.throttle`), never locked; an unknown username costs the same hash time, is counted
the same way and gets the same answers, so nothing tells which accounts exist.
A session is a random token held by the browser (cookie) or the script (bearer); only its
SHA-256 is stored, with the CSRF token the console's forms must carry. Every sign-in, failed or
not, goes into the audit trail, and so does every change the administrator makes to an account
(``jpki-service operator ...``: actor ``administrator:<os account>``).

A disabled account's sessions are deleted when it is disabled, and a session of a disabled account
is refused anyway. After ``reset-password`` the account must change its password: its sign-in
gives a session that can only do that (``POST /api/v1/operator/password``, the console's password
page, ``jpki-operator password``); every other use answers :class:`PasswordChangeRequired`.
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
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki_common.i18n import N_, Sentence
from jpki_service.adapters.db import Store, utcnow
from jpki_service.audit import service as audit
from jpki_service.common.problems import (
    InvalidInput,
    LoginRefused,
    NotSignedIn,
    OperatorExists,
    PasswordChangeRequired,
    TooManyAttempts,
)
from jpki_service.common.settings import ServiceSettings
from jpki_service.operators import throttle
from jpki_service.operators.models import Operator, OperatorSession, OperatorSource
from jpki_service.operators.roles import Role
from jpki_service.rate_limits.service import count_login_attempt

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
_LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)  # a session row is written at most once a minute
USUAL_SOURCES_KEPT = 10  # per account, the most recently used


@dataclass(frozen=True)
class SignedIn:
    """An operator with a live session, as every call-centre use case receives it."""

    operator_id: int
    username: str
    role: Role
    csrf_token: str
    expires_at: dt.datetime
    token: str | None = None  # only right after login: the caller keeps it, we keep its hash
    must_change_password: bool = False  # the session may only change the password

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
    _check_new_password(password)
    try:
        with store.transaction() as session:
            session.add(Operator(username=username, role=role.value, password_hash=_hasher.hash(password),
                                 disabled=False, must_change_password=False, created_at=utcnow()))
    except IntegrityError:
        raise OperatorExists(f"an operator named {username} exists", field="username") from None


def log_in(store: Store, settings: ServiceSettings, chain_key: bytes, username: str, password: str,
           client: str) -> SignedIn:
    """A new session, or :class:`LoginRefused` (the failure is counted), or :class:`TooManyAttempts`:
    this client tries too many sign-ins (before anything is read), or the username or the address
    is throttled after failures (:mod:`.throttle`; before any hash is computed, and the same for a
    known and an unknown username). A session of an account whose password was reset can only
    change the password (:class:`SignedIn.must_change_password`)."""
    count_login_attempt(store, settings, client)
    dummy_hash = _dummy_hash()
    policy = throttle.Policy.of(settings)
    subject, source = throttle.subject_of(username), throttle.source_hash(chain_key, client)
    refusal: Exception | None = None
    with store.transaction() as session:
        operator = session.scalars(select(Operator).where(Operator.username == username).with_for_update()
                                   ).one_or_none()
        moment = throttle.clock()
        now = dt.datetime.fromtimestamp(int(moment), dt.UTC)
        usable = operator is not None and not operator.disabled
        usual = usable and session.get(OperatorSource, (operator.id, source)) is not None  # type: ignore[union-attr]
        wait = throttle.wait_seconds(session, policy, throttle.SOURCE, client, moment)
        if not usual:  # from a usual source only the source's own failures count
            wait = max(wait, throttle.wait_seconds(session, policy, throttle.ACCOUNT, subject, moment))
        actor = f"operator:{username}" if usable else "operator:?"
        if wait > 0:
            seconds = throttle.retry_after(wait)
            audit.record(session, chain_key, actor, "login-refused", None,
                         {"client": client, "why": f"throttled for {seconds} s"})
            refusal = TooManyAttempts(Sentence("too many failed sign-ins with this username or from this address; "
                                               "try again in {seconds} s", seconds=seconds),
                                      retry_after=seconds, scope="operator-login")
        elif not usable or not _verifies(operator.password_hash, password):  # type: ignore[union-attr]
            if not usable:
                _verifies(dummy_hash, password)  # same cost as a real account
            throttle.count_failure(session, policy, throttle.ACCOUNT, subject, moment)
            throttle.count_failure(session, policy, throttle.SOURCE, client, moment)
            audit.record(session, chain_key, actor, "login-refused", None,
                         {"client": client, "why": "wrong password" if usable else "unknown or disabled account"})
            refusal = LoginRefused(N_("username or password wrong"))
        else:
            assert operator is not None
            throttle.clear(session, throttle.SOURCE, client)
            if not usual:  # the owner at a usual desk does not reset what strangers elsewhere tried
                throttle.clear(session, throttle.ACCOUNT, subject)
            _remember_source(session, operator.id, source, now)
            operator.last_login_at = now
            if _hasher.check_needs_rehash(operator.password_hash):
                operator.password_hash = _hasher.hash(password)
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            expires = now + dt.timedelta(seconds=settings.operator_session_max_seconds)
            session.add(OperatorSession(token_hash=_token_hash(token), operator_id=operator.id, csrf_token=csrf,
                                        created_at=now, last_seen_at=now, expires_at=expires))
            details: dict[str, object] = {"client": client, "usual_source": usual}
            if operator.must_change_password:
                details["must_change_password"] = True
            audit.record(session, chain_key, f"{operator.role}:{username}", "login", None, details)
            signed_in = SignedIn(operator.id, username, Role(operator.role), csrf, expires, token,
                                 operator.must_change_password)
    if refusal is not None:
        raise refusal  # after the commit: the failed attempt stays counted
    return signed_in


def _remember_source(session: Session, operator_id: int, source: str, now: dt.datetime) -> None:
    known = session.get(OperatorSource, (operator_id, source))
    if known is not None:
        known.last_login_at = now
        return
    session.add(OperatorSource(operator_id=operator_id, source_hash=source, last_login_at=now))
    session.flush()
    stale = session.scalars(select(OperatorSource.source_hash).where(OperatorSource.operator_id == operator_id)
                            .order_by(OperatorSource.last_login_at.desc()).offset(USUAL_SOURCES_KEPT)).all()
    if stale:
        session.execute(delete(OperatorSource).where(OperatorSource.operator_id == operator_id,
                                                     OperatorSource.source_hash.in_(stale)))


def _check_new_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(Sentence("the password must be at least {length} characters", length=MIN_PASSWORD_LENGTH),
                           field=field)


def _verifies(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_for_token(store: Store, settings: ServiceSettings, token: str | None,
                      password_change: bool = False) -> SignedIn:
    """The operator behind a session token, or :class:`NotSignedIn`; :class:`PasswordChangeRequired`
    when the account must change its password, unless ``password_change`` (the password pages and
    ``whoami``/sign-out, which such a session may use)."""
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
    if operator.must_change_password and not password_change:
        raise PasswordChangeRequired("the password was reset: change it first (POST /api/v1/operator/password, "
                                     "the console's password page, or jpki-operator password)")
    if now - record.last_seen_at > _LAST_SEEN_RESOLUTION:
        with store.transaction() as session:
            session.get_one(OperatorSession, record.token_hash).last_seen_at = now
    return SignedIn(operator.id, operator.username, Role(operator.role), record.csrf_token, record.expires_at,
                    None, operator.must_change_password)


def log_out(store: Store, token: str) -> None:
    with store.transaction() as session:
        session.execute(delete(OperatorSession).where(OperatorSession.token_hash == _token_hash(token)))


def change_password(store: Store, chain_key: bytes, who: SignedIn, token: str, current: str, new: str) -> int:
    """The signed-in operator's own password, checked against the current one; clears
    ``must_change_password`` and ends the account's other sessions (how many: returned)."""
    _check_new_password(new, "new_password")
    if new == current:
        raise InvalidInput(N_("the new password must differ from the current one"), field="new_password")
    with store.transaction() as session:
        operator = session.scalars(select(Operator).where(Operator.id == who.operator_id).with_for_update()).one()
        if not _verifies(operator.password_hash, current):
            refusal = InvalidInput("the current password is wrong", field="current_password")
            audit.record(session, chain_key, who.actor, "password-change-refused", None,
                         {"why": "current password wrong"})
        else:
            refusal = None
            operator.password_hash = _hasher.hash(new)
            operator.must_change_password = False
            ended = _end_sessions(session, operator.id, keep=_token_hash(token))
            audit.record(session, chain_key, who.actor, "password-changed", None, {"other_sessions_ended": ended})
    if refusal is not None:
        raise refusal  # after the commit: the refusal stays audited
    return ended


# -- the administrator's commands (jpki-service operator ...) ---------------------------------------
@dataclass(frozen=True)
class AccountRow:
    username: str
    role: str
    state: str  # active | disabled | must change password
    last_login_at: dt.datetime | None
    open_sessions: int
    failed_sign_ins: int  # counted against the username now (forgotten after a success or a quiet day)
    throttled_for_seconds: int  # a sign-in from a new place would wait this long; 0: none

    def as_dict(self) -> dict[str, object]:
        return {"username": self.username, "role": self.role, "state": self.state,
                "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
                "open_sessions": self.open_sessions, "failed_sign_ins": self.failed_sign_ins,
                "throttled_for_seconds": self.throttled_for_seconds}


def list_operators(store: Store, settings: ServiceSettings) -> list[AccountRow]:
    policy, moment, now = throttle.Policy.of(settings), throttle.clock(), utcnow()
    idle = now - dt.timedelta(seconds=settings.operator_session_idle_seconds)
    with store.sessions() as session:
        open_sessions = dict(session.execute(
            select(OperatorSession.operator_id, func.count()).where(OperatorSession.expires_at > now,
                                                                    OperatorSession.last_seen_at > idle)
            .group_by(OperatorSession.operator_id)).tuples().all())
        rows = []
        for operator in session.scalars(select(Operator).order_by(Operator.username)):
            state = ("disabled" if operator.disabled else
                     "must change password" if operator.must_change_password else "active")
            subject = throttle.subject_of(operator.username)
            wait = throttle.wait_seconds(session, policy, throttle.ACCOUNT, subject, moment)
            rows.append(AccountRow(operator.username, operator.role, state, operator.last_login_at,
                                   open_sessions.get(operator.id, 0),
                                   throttle.failures(session, throttle.ACCOUNT, subject, moment),
                                   throttle.retry_after(wait) if wait > 0 else 0))
    return rows


def _account(session: Session, username: str) -> Operator:
    operator = session.scalars(select(Operator).where(Operator.username == username).with_for_update()
                               ).one_or_none()
    if operator is None:
        raise InvalidInput(f"no operator named {username}", field="username")
    return operator


def _end_sessions(session: Session, operator_id: int, keep: str | None = None) -> int:
    query = delete(OperatorSession).where(OperatorSession.operator_id == operator_id)
    if keep is not None:
        query = query.where(OperatorSession.token_hash != keep)
    result = session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


def disable(store: Store, chain_key: bytes, actor: str, username: str) -> int:
    """Disable an account and end its sessions at once (how many: returned). Its sign-ins are then
    answered as an unknown username's."""
    with store.transaction() as session:
        operator = _account(session, username)
        operator.disabled = True
        ended = _end_sessions(session, operator.id)
        audit.record(session, chain_key, actor, "operator-disabled", None,
                     {"username": username, "sessions_ended": ended})
    return ended


def enable(store: Store, chain_key: bytes, actor: str, username: str) -> None:
    with store.transaction() as session:
        _account(session, username).disabled = False
        audit.record(session, chain_key, actor, "operator-enabled", None, {"username": username})


def reset_password(store: Store, chain_key: bytes, actor: str, username: str, password: str) -> int:
    """A new password that must be changed at the next sign-in; the account's sessions end and its
    throttle is cleared (the administrator has confirmed who the person is)."""
    _check_new_password(password)
    with store.transaction() as session:
        operator = _account(session, username)
        operator.password_hash = _hasher.hash(password)
        operator.must_change_password = True
        ended = _end_sessions(session, operator.id)
        throttle.clear(session, throttle.ACCOUNT, throttle.subject_of(username))
        audit.record(session, chain_key, actor, "operator-password-reset", None,
                     {"username": username, "sessions_ended": ended})
    return ended


def set_role(store: Store, chain_key: bytes, actor: str, username: str, role: Role) -> str:
    """The account's new role, in force at its sessions' next request; the previous role is returned."""
    with store.transaction() as session:
        operator = _account(session, username)
        previous, operator.role = operator.role, role.value
        audit.record(session, chain_key, actor, "operator-role-changed", None,
                     {"username": username, "from": previous, "to": role.value})
    return previous


def end_sessions(store: Store, chain_key: bytes, actor: str, username: str) -> int:
    with store.transaction() as session:
        operator = _account(session, username)
        ended = _end_sessions(session, operator.id)
        audit.record(session, chain_key, actor, "operator-sessions-ended", None,
                     {"username": username, "sessions_ended": ended})
    return ended


def clear_throttle(store: Store, chain_key: bytes, actor: str, username: str | None = None,
                   address: str | None = None) -> dict[str, int]:
    """Forget the failed sign-ins counted against a username and/or an address (``unlock``): how many
    were forgotten for each. A username need not be an account's (failures of unknown names are
    counted too)."""
    if not username and not address:
        raise InvalidInput("say which: a username, an address, or both", field="username")
    cleared: dict[str, int] = {}
    with store.transaction() as session:
        if username:
            cleared["username"] = throttle.clear(session, throttle.ACCOUNT, throttle.subject_of(username))
        if address:
            cleared["address"] = throttle.clear(session, throttle.SOURCE, address)
        audit.record(session, chain_key, actor, "login-throttle-cleared", None,
                     {"username": username, "address": address, "failures_forgotten": cleared})
    return cleared
