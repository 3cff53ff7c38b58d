"""``jpki-service operator list | disable | enable | reset-password | set-role | end-sessions | unlock``:
the administrator's account commands, run on the service's host against its database.

Every change is recorded in the audit trail with the operating-system account that ran it
(actor ``administrator:<account>``), as ``ca-commands requeue`` does. ``add`` is in
jpki_service/entrypoints/cli.py.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer

DataOption = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR).")
UsernameOption = typer.Option(..., "--username", help="The account's login name.")


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@contextmanager
def _service(data: Path | None, keys: bool = True) -> Iterator[tuple[Any, Any, bytes]]:
    """(settings, store, audit chain key) of the data folder; refusals and database errors as one line."""
    # Imported here: jpki_service.entrypoints.cli mounts these commands (a module-level import would be circular).
    from sqlalchemy.exc import SQLAlchemyError

    from jpki_common.problems import Problem
    from jpki_service.adapters.db import Store
    from jpki_service.adapters.service_keys import MissingKey, load_service_keys
    from jpki_service.entrypoints.cli import _migrate, _settings

    settings = _settings(data)
    chain_key = b""
    if keys:
        try:
            chain_key = load_service_keys(settings, create=False).audit_chain
        except MissingKey as exc:
            _fail(str(exc))
    _migrate(settings)
    store = Store(settings.resolved_database_url())
    try:
        yield settings, store, chain_key
    except Problem as problem:
        _fail(problem.detail)
    except SQLAlchemyError as exc:
        _fail(f"cannot use the database: {getattr(exc, 'orig', None) or exc}")
    finally:
        store.dispose()


def _actor() -> str:
    from jpki_service.ca_commands.cli import administrator

    return administrator()


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "never"


def add_account_commands(operator_app: typer.Typer) -> None:
    """Mount the commands on ``jpki-service operator``."""
    command: Callable[..., Any] = operator_app.command

    @command("list")
    def list_(data: Path | None = DataOption,
              as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout.")) -> None:
        """Every account: role, state (active, disabled, must change password), last sign-in, open sessions,
        and failed sign-ins counted against its username now."""
        from jpki_service.operators.service import list_operators

        with _service(data, keys=False) as (settings, store, _):
            rows = list_operators(store, settings)
        if as_json:
            typer.echo(json.dumps({"operators": [row.as_dict() for row in rows]}, ensure_ascii=False, indent=2))
            return
        if not rows:
            typer.echo("no accounts (add one: jpki-service operator add)")
            return
        table = [("USERNAME", "ROLE", "STATE", "LAST SIGN-IN", "SESSIONS", "FAILED SIGN-INS")]
        for row in rows:
            failed = str(row.failed_sign_ins) + (f" (waits {row.throttled_for_seconds} s)"
                                                 if row.throttled_for_seconds else "")
            table.append((row.username, row.role, row.state, _when(row.last_login_at), str(row.open_sessions),
                          failed))
        widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
        for cells in table:
            typer.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())

    @command("disable")
    def disable(username: str = UsernameOption, data: Path | None = DataOption) -> None:
        """Disable an account (someone leaving, a stolen password): its sessions end at once and it can no
        longer sign in. Audited."""
        from jpki_service.operators.service import disable as disable_account

        with _service(data) as (_, store, chain_key):
            ended = disable_account(store, chain_key, _actor(), username)
        typer.echo(f"{username} disabled; {ended} session(s) ended")

    @command("enable")
    def enable(username: str = UsernameOption, data: Path | None = DataOption) -> None:
        """Let a disabled account sign in again. Audited."""
        from jpki_service.operators.service import enable as enable_account

        with _service(data) as (_, store, chain_key):
            enable_account(store, chain_key, _actor(), username)
        typer.echo(f"{username} enabled")

    @command("reset-password")
    def reset_password(username: str = UsernameOption, data: Path | None = DataOption) -> None:
        """Give the account a new password (prompted, or JPKI_OPERATOR_PASSWORD) that must be changed at the
        next sign-in; its sessions end and its sign-in throttle is cleared. Audited."""
        from jpki_service.entrypoints.cli import new_operator_password
        from jpki_service.operators.service import reset_password as reset

        with _service(data) as (_, store, chain_key):  # a wrong --data is refused before the password is asked
            password = new_operator_password(f"new password for {username} (to be changed at the next sign-in)")
            ended = reset(store, chain_key, _actor(), username, password)
        typer.echo(f"{username}: password reset, to be changed at the next sign-in; {ended} session(s) ended")

    @command("set-role")
    def set_role(username: str = UsernameOption,
                 role: str = typer.Option(..., "--role", help="operator | supervisor | auditor"),
                 data: Path | None = DataOption) -> None:
        """Change an account's role; in force at its sessions' next request. Audited."""
        from jpki_service.operators.roles import Role
        from jpki_service.operators.service import set_role as change_role

        try:
            chosen = Role(role)
        except ValueError:
            _fail(f"--role must be one of {', '.join(r.value for r in Role)}")
        with _service(data) as (_, store, chain_key):
            previous = change_role(store, chain_key, _actor(), username, chosen)
        typer.echo(f"{username}: {previous} -> {chosen.value}")

    @command("end-sessions")
    def end_sessions(username: str = UsernameOption, data: Path | None = DataOption) -> None:
        """End every session of an account now (console and API); it can sign in again. Audited."""
        from jpki_service.operators.service import end_sessions as end

        with _service(data) as (_, store, chain_key):
            ended = end(store, chain_key, _actor(), username)
        typer.echo(f"{username}: {ended} session(s) ended")

    @command("unlock")
    def unlock(username: str | None = typer.Option(None, "--username", help="Forget the failed sign-ins "
                                                   "counted against this username."),
               address: str | None = typer.Option(None, "--address", help="Forget the failed sign-ins counted "
                                                  "against this client address."),
               data: Path | None = DataOption) -> None:
        """Clear a sign-in throttle (once the person's identity is confirmed): the failed sign-ins counted
        against a username and/or an address are forgotten, so the next sign-in does not wait. Audited."""
        from jpki_service.operators.service import clear_throttle

        if not username and not address:
            _fail("say which: --username, --address, or both")
        with _service(data) as (_, store, chain_key):
            cleared = clear_throttle(store, chain_key, _actor(), username, address)
        typer.echo("throttle cleared: " + ", ".join(f"{what} {username if what == 'username' else address} "
                                                    f"({count} failed sign-ins forgotten)"
                                                    for what, count in cleared.items()))
