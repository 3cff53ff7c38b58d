"""Carrying recorded changes to the CA: enqueue in the lifecycle transaction, dispatch after.

A command is written in the same transaction as the state change that needs it, so a crash or
a CA outage delays it, never loses it. Dispatch calls the CA *outside* any database
transaction with the command's own operation id: a command run twice (two workers, a crash
after the CA answered) is answered twice by the CA and takes effect once. Commands of one
registration run in the order they were recorded; a transient failure stops that
registration's queue until the next attempt, so a revoke never overtakes its issue.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from jpki_service.ca_client import CAClient, CARefused, CAUnavailable
from jpki_service.ca_commands.models import CACommand
from jpki_service.db import Store, utcnow
from jpki_service.faults import crash_point
from jpki_service.registrations.models import PhoneCertificate, Registration
from jpki_service.retry import retry_delay

log = logging.getLogger("jpki_service.ca_commands")

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
        return ca.issue(command.operation_id, payload["profile"], payload["csr_pem"], payload["card_serial"],
                        payload.get("person"))
    if serial is None:
        return {"status": "never-issued"}  # nothing exists at the CA to change
    return ca.change_status(serial, command.action, command.operation_id, command.reason)


def _finish(session: Session, command: CACommand, result: dict | None, error: str | None,
            on_issued: IssuedHook, on_refused: RefusedHook) -> str:
    """Record the CA's answer under the command's row lock; returns done | failed."""
    certificate = session.get_one(PhoneCertificate, command.certificate_id)
    now = utcnow()
    if error is None and result is not None:
        command.state, command.done_at, command.last_error = "done", now, None
        if command.action == "issue":
            certificate.serial = result["serial"]
            certificate.certificate_pem = result["certificate_pem"]
            if certificate.status == "pending":
                certificate.status = result["status"]
            command.payload = None  # the holder's four items are no longer needed
            on_issued(session, command.registration_id)
        elif result.get("status") in ("good", "held", "revoked"):
            certificate.status = result["status"]
        return "done"
    command.state, command.last_error, command.done_at = "failed", error, now
    if command.action == "issue":
        command.payload = None
        on_refused(session, command.registration_id, error or "refused")
    return "failed"


def dispatch(store: Store, ca: CAClient, on_issued: IssuedHook, on_refused: RefusedHook,
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
            if not _dispatch_one(store, ca, command, serial, on_issued, on_refused, max_backoff, report):
                return report  # the CA is down: the next round retries everything, in order
        if len(commands) < wanted:
            break  # nothing more was due when this page was read; what came due since waits a round
    return report


def _dispatch_one(store: Store, ca: CAClient, command: CACommand, serial: str | None, on_issued: IssuedHook,
                  on_refused: RefusedHook, max_backoff: dt.timedelta, report: DispatchReport) -> bool:
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
            error = f"{refused.status} {refused.problem.get('title', '')}: {refused.problem.get('detail', '')}"
            log.error("CA refused command %s (%s): %s", command.id, command.action, error)
    with store.transaction() as session:
        # Registration row first, as every transition locks it: one lock order, no deadlock with them.
        session.scalars(select(Registration.id).where(Registration.id == command.registration_id)
                        .with_for_update()).one()
        locked = session.scalars(select(CACommand).where(CACommand.id == command.id).with_for_update()).one()
        if locked.state != "pending":
            return True  # another worker finished it
        outcome = _finish(session, locked, result, error, on_issued, on_refused)
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


def pending_counts(session: Session, registration_id: str) -> tuple[int, int]:
    """(pending, failed) commands of one registration."""
    rows = dict(session.execute(
        select(CACommand.state, func.count()).where(CACommand.registration_id == registration_id)
        .where(CACommand.state.in_(("pending", "failed"))).group_by(CACommand.state)
    ).all())
    return rows.get("pending", 0), rows.get("failed", 0)


def queue_summary(store: Store, waiting_only: bool = False) -> dict[str, int]:
    """Commands by state. ``waiting_only``: pending and failed only, an index range (``ix_ca_commands_due``)
    instead of a scan of every command ever done: what health checks and metrics ask for."""
    query = select(CACommand.state, func.count()).group_by(CACommand.state)
    if waiting_only:
        query = query.where(CACommand.state.in_(("pending", "failed")))
    with store.sessions() as session:
        return dict(session.execute(query).all())
