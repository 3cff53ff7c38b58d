"""``jpki-service ca-commands``: the changes waiting for the CA, and re-queueing the ones it refused.

A command is ``failed`` only when the CA refused that very command (docs/faults-and-races.md,
"What failed means"). Once the cause is fixed, ``requeue`` puts it back in the queue; the act is
recorded in the audit trail with the operating-system account that ran it.
"""
from __future__ import annotations

import getpass
from enum import Enum
from pathlib import Path

import typer

ca_commands_app = typer.Typer(help="The changes waiting to reach the CA; re-queue the ones it refused.",
                              no_args_is_help=True, pretty_exceptions_enable=False)

DataOption = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR).")


class ListedState(str, Enum):
    PENDING = "pending"
    FAILED = "failed"
    DONE = "done"
    SUPERSEDED = "superseded"


def administrator() -> str:
    """The audit actor of an act done with the service's own command line: the local account."""
    try:
        return f"administrator:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "administrator:local"


def _store(data: Path | None):
    # Imported here: jpki_service.entrypoints.cli mounts this app, so importing it at module level would be circular.
    from jpki_service.adapters.db import Store
    from jpki_service.entrypoints.cli import _settings

    return Store(_settings(data).resolved_database_url())


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@ca_commands_app.command("list")
def list_(
    state: ListedState = typer.Option(ListedState.FAILED, "--state", help="Which commands to list."),
    registration: str | None = typer.Option(None, "--registration", help="Only this registration's."),
    limit: int = typer.Option(100, min=1, max=10_000, help="At most this many, oldest first."),
    data: Path | None = DataOption,
) -> None:
    """List commands in one state, oldest first, with why they are not done."""
    from sqlalchemy.exc import SQLAlchemyError

    from jpki_service.ca_commands.service import list_commands

    store = _store(data)
    try:
        commands = list_commands(store, state.value, registration, limit)
    except SQLAlchemyError as exc:
        _fail(f"cannot read the CA queue (run `jpki-service migrate`?): {getattr(exc, 'orig', None) or exc}")
    finally:
        store.dispose()
    if not commands:
        typer.echo(f"no {state.value} commands")
        return
    for c in commands:
        reason = f" ({c.reason})" if c.reason else ""
        typer.echo(f"{c.id:>8}  {c.action}{reason} of the {c.certificate_kind} certificate "
                   f"{c.serial or '(not issued)'}, registration {c.registration_id}")
        when = c.done_at if c.done_at is not None else c.created_at
        typer.echo(f"          {c.state} since {when.isoformat(timespec='seconds')}, attempts {c.attempts}"
                   + (f", next {c.next_attempt_at.isoformat(timespec='seconds')}" if c.state == "pending" else ""))
        if c.last_error:
            typer.echo(f"          last error: {c.last_error}")


@ca_commands_app.command()
def requeue(
    command_ids: list[int] | None = typer.Argument(None, help="Command ids (from `ca-commands list`)."),
    registration: str | None = typer.Option(None, "--registration", help="Every failed command of this "
                                               "registration."),
    all_failed: bool = typer.Option(False, "--all", help="Every failed command."),
    data: Path | None = DataOption,
) -> None:
    """Put failed commands back in the queue once the cause is fixed; the running service carries them.
    Audited (actor administrator:<account>)."""
    from sqlalchemy.exc import SQLAlchemyError

    from jpki_service.adapters.service_keys import MissingKey, load_service_keys
    from jpki_service.ca_commands.service import requeue_failed
    from jpki_service.entrypoints.cli import _settings

    if not (command_ids or registration or all_failed):
        _fail("say which: command ids, --registration ID, or --all")
    if all_failed and (command_ids or registration):
        _fail("--all re-queues every failed command: give it alone")
    settings = _settings(data)
    try:
        keys = load_service_keys(settings, create=False)
    except MissingKey as exc:
        _fail(str(exc))
    store = _store(data)
    try:
        report = requeue_failed(store, keys.audit_chain, administrator(), command_ids or None, registration)
    except SQLAlchemyError as exc:
        _fail(f"cannot update the CA queue (run `jpki-service migrate`?): {getattr(exc, 'orig', None) or exc}")
    finally:
        store.dispose()
    typer.echo(f"re-queued {len(report.requeued)}" + (f": {', '.join(map(str, report.requeued))}"
                                                      if report.requeued else ""))
    if report.superseded:
        typer.echo(f"ended as superseded {len(report.superseded)} (a later change of the certificate wants "
                   f"another status): {', '.join(map(str, report.superseded))}")
    for command_id, why in report.not_requeued.items():
        typer.echo(f"not re-queued {command_id}: {why}")
    asked = set(command_ids or ())
    unknown = asked - set(report.requeued) - set(report.superseded) - set(report.not_requeued)
    if unknown:
        _fail(f"not failed (or no such command): {', '.join(map(str, sorted(unknown)))}")
