"""Carrying recorded changes to the CA: enqueue in the lifecycle transaction, dispatch after.

A command is written in the same transaction as the state change that needs it, so a crash or
a CA outage delays it, never loses it. Dispatch calls the CA *outside* any database
transaction with the command's own operation id: a command run twice (two workers, a crash
after the CA answered) is answered twice by the CA and takes effect once. Commands of one
registration run in the order they were recorded; a transient failure stops that
registration's queue until the next attempt, so a revoke never overtakes its issue.

A command stays ``pending`` until the CA has it or has definitely refused that very command
(:class:`CARefused`); only then is it ``failed``, with the CA's reason. Everything else the CA
may answer (unreachable, 5xx, 429, our credential refused: :class:`CAUnavailable`) is retried,
and the last error is kept on the command for ``jpki-service status`` and ``/metrics``. An
operator re-queues failed commands once the cause is fixed (:func:`requeue_failed`, audited).
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import exists, func, select, text
from sqlalchemy.orm import Session, aliased

from jpki_service import holder_data
from jpki_service.adapters.ca_client import CAClient, CARefused, CAUnavailable
from jpki_service.adapters.db import Store, utcnow
from jpki_service.audit import service as audit
from jpki_service.ca_commands.models import CACommand
from jpki_service.common.faults import crash_point
from jpki_service.common.retry import retry_delay
from jpki_service.registrations.models import PhoneCertificate, Registration

log = logging.getLogger("jpki_service.ca_commands")

# What an issue command carries to the CA (registrations.transitions.issue_payload): no personal data.
_ISSUE_KEYS = frozenset({"profile", "csr_pem", "card_serial"})
# What the CA must report for a command to count as carried out.
_DESIRED_STATUS = {"revoke": "revoked", "hold": "held", "release": "good"}


def enqueue(session: Session, certificate: PhoneCertificate, action: str, reason: str | None = None,
            payload: dict | None = None) -> CACommand:
    now = utcnow()
    command = CACommand(
        registration_id=certificate.registration_id, certificate_id=certificate.id, action=action,
        reason=reason, operation_id=f"svc-{secrets.token_hex(16)}", payload=payload, state="pending",
        attempts=0, created_at=now, next_attempt_at=now,
    )
    session.add(command)
    return command


@dataclass
class DispatchReport:
    done: int = 0
    failed: int = 0
    deferred: int = 0
    registrations: set[str] = field(default_factory=set)


# Called after an issue command completed, in its transaction: lets the registration move on.
IssuedHook = Callable[[Session, str], None]
RefusedHook = Callable[[Session, str, str], None]


def _due(store: Store, registration_id: str | None, limit: int,
         after_id: int = 0) -> list[tuple[CACommand, str | None]]:
    """Due commands in recorded order (after ``after_id``), each with its certificate's serial as read now.
    A command whose registration has an *earlier* command still waiting out its back-off is not due:
    otherwise a revoke could reach the CA before the issue it follows (and find nothing to revoke), or a
    release before the hold it undoes."""
    now = utcnow()
    earlier = aliased(CACommand)
    earlier_waiting = exists().where(earlier.registration_id == CACommand.registration_id,
                                     earlier.state == "pending", earlier.id < CACommand.id,
                                     earlier.next_attempt_at > now)
    query = (select(CACommand, PhoneCertificate.serial)
             .join(PhoneCertificate, PhoneCertificate.id == CACommand.certificate_id)
             .where(CACommand.state == "pending", CACommand.next_attempt_at <= now, CACommand.id > after_id,
                    ~earlier_waiting))
    if registration_id is not None:
        query = query.where(CACommand.registration_id == registration_id)
    with store.sessions() as session:
        rows = session.execute(query.order_by(CACommand.id).limit(limit))
        return [(command, serial) for command, serial in rows]


def _call_ca(ca: CAClient, command: CACommand, serial: str | None) -> dict:
    if command.action == "issue":
        payload = command.payload or {}
        return ca.issue(command.operation_id, payload["profile"], payload["csr_pem"], payload["card_serial"])
    if serial is None:
        return {"status": "never-issued"}  # nothing exists at the CA to change
    return ca.change_status(serial, command.action, command.operation_id, command.reason)


def _finish(session: Session, command: CACommand, result: dict | None, error: str | None,
            on_issued: IssuedHook, on_refused: RefusedHook, seal_key: bytes) -> str:
    """Record the CA's answer under the command's row lock; returns done | failed. The certificate is
    written sealed (``holder_data.seal_certificate``): no clear copy of its four items ever reaches a
    page of the database, its WAL or journal. Nothing of the CA's answer is kept on the command."""
    certificate = session.get_one(PhoneCertificate, command.certificate_id)
    now = utcnow()
    if error is None and result is not None:
        command.state, command.done_at, command.last_error = "done", now, None
        if command.action == "issue":
            certificate.serial = result["serial"]
            certificate.certificate_pem = holder_data.seal_certificate(seal_key, result["serial"],
                                                                       result["certificate_pem"])
            if certificate.status == "pending":
                certificate.status = result["status"]
            command.payload = None  # the CSR (and an older command's four items) are no longer needed
            on_issued(session, command.registration_id)
        elif result.get("status") in ("good", "held", "revoked"):
            certificate.status = result["status"]
        return "done"
    command.state, command.last_error, command.done_at = "failed", error, now
    if command.action == "issue":
        command.payload = None
        on_refused(session, command.registration_id, error or "refused")
    return "failed"


def dispatch(store: Store, ca: CAClient, on_issued: IssuedHook, on_refused: RefusedHook, *, seal_key: bytes,
             registration_id: str | None = None, limit: int = 500,
             max_backoff: dt.timedelta = dt.timedelta(seconds=30), page: int = 20) -> DispatchReport:
    """Carry up to ``limit`` due commands to the CA; stop early while the CA is unreachable.

    Commands are read ``page`` at a time: while the CA is down the first one fails and the round
    ends, so reading a whole backlog into memory every round (every second, in every worker
    process) would be pure waste, and it competed with the requests being answered."""
    report = DispatchReport()
    after_id, handled = 0, 0
    while handled < limit:
        wanted = min(page, limit - handled)
        commands = _due(store, registration_id, wanted, after_id)
        for command, serial in commands:
            handled += 1
            after_id = command.id
            if not _dispatch_one(store, ca, command, serial, on_issued, on_refused, max_backoff, report,
                                 seal_key):
                return report  # the CA is down: the next round retries everything, in order
        if len(commands) < wanted:
            break  # nothing more was due when this page was read; what came due since waits a round
    return report


def _dispatch_one(store: Store, ca: CAClient, command: CACommand, serial: str | None, on_issued: IssuedHook,
                  on_refused: RefusedHook, max_backoff: dt.timedelta, report: DispatchReport,
                  seal_key: bytes) -> bool:
    """Carry one command; False when the CA could not be reached (the command waits its back-off).

    ``serial`` is the certificate's serial when the command was read. A serial is written once and
    never changes, so only a missing one is read again: its issue may have completed since (earlier in
    this round, or by another worker), and a hold or revoke must then reach the certificate it made."""
    if serial is None and command.action != "issue":
        with store.sessions() as session:
            serial = session.get_one(PhoneCertificate, command.certificate_id).serial
    result, error = None, None
    crash_point("during-ca-call")
    try:
        result = _call_ca(ca, command, serial)
        crash_point("after-ca-answer")
    except CAUnavailable as exc:
        _defer(store, command.id, str(exc), max_backoff)
        report.deferred += 1
        return False
    except CARefused as refused:
        current = refused.problem.get("current_status")
        if refused.status == 409 and current == _DESIRED_STATUS.get(command.action):
            result = {"status": current}  # the CA already shows what we wanted
        else:
            error = (f"the CA refused the {command.action} ({refused.status} {refused.problem.get('title', '')}: "
                     f"{refused.problem.get('detail', '')})")
            log.error("CA command %s (%s of registration %s) failed: %s", command.id, command.action,
                      command.registration_id, error)
    with store.transaction() as session:
        # Registration row first, as every transition locks it: one lock order, no deadlock with them.
        session.scalars(select(Registration.id).where(Registration.id == command.registration_id)
                        .with_for_update()).one()
        locked = session.scalars(select(CACommand).where(CACommand.id == command.id).with_for_update()).one()
        if locked.state != "pending":
            return True  # another worker finished it
        outcome = _finish(session, locked, result, error, on_issued, on_refused, seal_key)
    report.registrations.add(command.registration_id)
    if outcome == "done":
        report.done += 1
    else:
        report.failed += 1
    return True


def _defer(store: Store, command_id: int, error: str, max_backoff: dt.timedelta) -> None:
    with store.transaction() as session:
        command = session.get_one(CACommand, command_id)
        command.attempts += 1
        command.last_error = error
        backoff = retry_delay(command.attempts, max_backoff)
        command.next_attempt_at = utcnow() + backoff
        log.warning("CA command %s (%s of registration %s) not carried, attempt %d; retrying in %d s: %s",
                    command.id, command.action, command.registration_id, command.attempts,
                    backoff.total_seconds(), error)


@dataclass(frozen=True)
class CASync:
    """Where one registration's changes stand at the CA, as the owner, the console and the API show it."""

    state: str  # done | pending | failed
    pending: int
    failed: int
    reason: str | None  # why not done: the CA's refusal (failed), or that the CA has not taken it yet


def registration_sync(session: Session, registration_id: str) -> CASync:
    """The registration's pending and failed commands, and why they are not done. Failed wins: it needs
    someone to act (``jpki-service ca-commands requeue``); pending needs nobody."""
    rows = dict(session.execute(
        select(CACommand.state, func.count()).where(CACommand.registration_id == registration_id)
        .where(CACommand.state.in_(("pending", "failed"))).group_by(CACommand.state)
    ).all())
    pending, failed = rows.get("pending", 0), rows.get("failed", 0)
    if failed:
        refusal = session.scalars(select(CACommand.last_error).where(
            CACommand.registration_id == registration_id, CACommand.state == "failed")
            .order_by(CACommand.id.desc()).limit(1)).one()
        return CASync("failed", pending, failed, f"{refusal}; the service's operators can re-queue it once "
                                                 "the cause is fixed")
    if pending:
        # The CA's own error text stays with the operators (jpki-service status): it may name their setup.
        attempts = session.scalar(select(func.max(CACommand.attempts)).where(
            CACommand.registration_id == registration_id, CACommand.state == "pending"))
        tried = f", {attempts} attempts so far" if attempts else ""
        return CASync("pending", pending, failed, f"recorded here, not yet at the CA{tried}; "
                                                  "the service keeps carrying it until the CA has it")
    return CASync("done", 0, 0, None)


@dataclass(frozen=True)
class CommandView:
    """One command as an operator lists it (no payload: CSRs are no operator's business)."""

    id: int
    registration_id: str
    action: str
    reason: str | None
    certificate_kind: str
    serial: str | None
    state: str
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    done_at: dt.datetime | None
    last_error: str | None


def list_commands(store: Store, state: str, registration_id: str | None = None,
                  limit: int = 100) -> list[CommandView]:
    """Commands in ``state`` (pending | failed | done), oldest first."""
    query = (select(CACommand, PhoneCertificate.kind, PhoneCertificate.serial)
             .join(PhoneCertificate, PhoneCertificate.id == CACommand.certificate_id)
             .where(CACommand.state == state).order_by(CACommand.id).limit(limit))
    if registration_id is not None:
        query = query.where(CACommand.registration_id == registration_id)
    with store.sessions() as session:
        return [CommandView(c.id, c.registration_id, c.action, c.reason, kind, serial, c.state, c.attempts,
                            c.created_at, c.next_attempt_at, c.done_at, c.last_error)
                for c, kind, serial in session.execute(query)]


@dataclass(frozen=True)
class RetryingSummary:
    """The pending commands that the CA has not taken yet, by the last error they met."""

    by_error: dict[str, int]  # last error -> pending commands that met it
    latest_error: str | None  # the error of the command retried last
    oldest_pending_at: dt.datetime | None


def retrying_summary(store: Store) -> RetryingSummary:
    waiting = CACommand.state == "pending"
    with store.sessions() as session:
        rows = session.execute(select(CACommand.last_error, func.count())
                               .where(waiting, CACommand.last_error.is_not(None))
                               .group_by(CACommand.last_error)).all()
        by_error = cast(dict[str, int], dict(rows))  # rows with a last error only: the keys are strings
        # The one deferred last waits longest (the back-off grows): the freshest word on the CA.
        latest = session.scalars(select(CACommand.last_error).where(waiting, CACommand.last_error.is_not(None))
                                 .order_by(CACommand.next_attempt_at.desc()).limit(1)).first()
        oldest = session.scalar(select(func.min(CACommand.created_at)).where(waiting))
    return RetryingSummary(by_error, latest, oldest)


@dataclass
class RequeueReport:
    requeued: list[int] = field(default_factory=list)
    # Ended for good: a later change of the same certificate wants another status, so carrying this
    # one now would undo it (a hold refused, then released).
    superseded: list[int] = field(default_factory=list)
    not_requeued: dict[int, str] = field(default_factory=dict)  # command id -> why


def requeue_failed(store: Store, chain_key: bytes, actor: str, command_ids: list[int] | None = None,
                   registration_id: str | None = None) -> RequeueReport:
    """Put failed commands (all, or these ids, or one registration's) back in the queue, due now.

    Each keeps its place (its id) and its operation id, so the CA still applies it once. A status
    command is re-queued only while the certificate still wants the status it carries; otherwise it
    is ``superseded``. A refused issue is not re-queued: its request was erased when the CA refused
    it, and the registration it would have completed has ended; the owner registers again.
    One audit entry per registration touched, in the same transaction."""
    selection = select(CACommand.id, CACommand.registration_id).where(CACommand.state == "failed")
    if command_ids is not None:
        selection = selection.where(CACommand.id.in_(command_ids))
    if registration_id is not None:
        selection = selection.where(CACommand.registration_id == registration_id)
    report = RequeueReport()
    with store.transaction() as session:
        chosen = session.execute(selection).all()
        registrations = sorted({r for _, r in chosen})
        # Registration rows first, as every transition and the dispatcher lock them: one lock order.
        case_references = dict(session.execute(
            select(Registration.id, Registration.case_reference).where(Registration.id.in_(registrations))
            .order_by(Registration.id).with_for_update()).tuples().all())
        now = utcnow()
        per_registration: dict[str, RequeueReport] = {r: RequeueReport() for r in registrations}
        for command in session.scalars(select(CACommand).where(CACommand.id.in_([i for i, _ in chosen]),
                                                               CACommand.state == "failed")
                                       .order_by(CACommand.id).with_for_update()):
            mine = per_registration[command.registration_id]
            if command.action == "issue":
                mine.not_requeued[command.id] = ("a refused issue cannot be re-queued: its request was erased and "
                                                 "the registration ended; the owner registers again")
                continue
            status = session.get_one(PhoneCertificate, command.certificate_id).status
            if status != _DESIRED_STATUS[command.action]:
                command.state, command.done_at = "superseded", now
                mine.superseded.append(command.id)
                continue
            command.state, command.done_at, command.next_attempt_at, command.attempts = "pending", None, now, 0
            mine.requeued.append(command.id)
        for registration, mine in per_registration.items():
            report.requeued += mine.requeued
            report.superseded += mine.superseded
            report.not_requeued.update(mine.not_requeued)
            if mine.requeued or mine.superseded:
                audit.record(session, chain_key, actor, "ca-commands-requeued", case_references[registration],
                             {"requeued": mine.requeued, "superseded": mine.superseded})
    return report


def queue_summary(store: Store, waiting_only: bool = False) -> dict[str, int]:
    """Commands by state. ``waiting_only``: pending and failed only, an index range (``ix_ca_commands_due``)
    instead of a scan of every command ever done: what health checks and metrics ask for."""
    query = select(CACommand.state, func.count()).group_by(CACommand.state)
    if waiting_only:
        query = query.where(CACommand.state.in_(("pending", "failed")))
    with store.sessions() as session:
        return dict(session.execute(query).all())


def seal_clear_certificates(store: Store, seal_key: bytes, batch: int = 200) -> int:
    """Seal every certificate still stored in clear (written before certificates were sealed, recognised
    by its PEM header), and erase the holder's four items from issue commands an older version queued
    (the CA now takes them from its record of the card: profile, CSR and card serial are kept); returns
    how many rows changed. Idempotent and cheap when there is nothing to do, so it runs at every start of
    the service (``entrypoints/app.py``), not as an Alembic revision: migrations get only the database
    URL, never the data key. Where it changed any, the clear copies are purged from the store's files
    too: SQLite rewrites the freed content (``secure_delete``) and truncates its WAL, PostgreSQL vacuums
    the tables (the old row versions are dead tuples until then)."""
    clear = PhoneCertificate.certificate_pem.like("-----BEGIN%")
    sealed = 0
    while True:
        with store.transaction() as session:
            if store.engine.dialect.name == "sqlite":
                session.execute(text("PRAGMA secure_delete=ON"))
            rows = session.scalars(select(PhoneCertificate).where(clear, PhoneCertificate.serial.is_not(None))
                                   .order_by(PhoneCertificate.id).limit(batch).with_for_update()).all()
            for certificate in rows:
                if certificate.serial and holder_data.certificate_in_clear(certificate.certificate_pem):
                    certificate.certificate_pem = holder_data.seal_certificate(
                        seal_key, certificate.serial, certificate.certificate_pem or "")
                    sealed += 1
        if len(rows) < batch:
            break
    erased = 0
    with store.transaction() as session:
        if store.engine.dialect.name == "sqlite":
            session.execute(text("PRAGMA secure_delete=ON"))
        for command in session.scalars(select(CACommand).where(CACommand.action == "issue",
                                                               CACommand.state == "pending")
                                       .order_by(CACommand.id).with_for_update()):
            if command.payload and set(command.payload) - _ISSUE_KEYS:
                command.payload = {k: v for k, v in command.payload.items() if k in _ISSUE_KEYS}
                erased += 1
    if sealed or erased:
        with store.engine.connect() as connection:
            if store.engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                autocommit.exec_driver_sql("VACUUM phone_certificates")
                autocommit.exec_driver_sql("VACUUM ca_commands")
        log.info("sealed %d phone certificates stored in clear and erased the holder's items from %d issue "
                 "commands, both written by an earlier version", sealed, erased)
    return sealed + erased
