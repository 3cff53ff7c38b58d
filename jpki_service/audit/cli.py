"""``jpki-service audit verify``: check the audit trail's chain from the command line.

Exit status: 0 intact, 1 when any problem was found, 2 when the trail could not be read (no
database, not migrated), so a scheduled check can tell "tampered" from "not checked".
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy.exc import SQLAlchemyError

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True,
                        pretty_exceptions_enable=False)


@audit_app.callback()
def _audit() -> None:
    """The tamper-evident audit trail."""  # a callback keeps `verify` a subcommand when run alone


@audit_app.command()
def verify(
    data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every entry's keyed hash, the links between entries and the head."""
    # Imported here: jpki_service.entrypoints.cli mounts this app, so importing it at module level would be circular.
    from jpki_service.adapters.db import Store
    from jpki_service.adapters.service_keys import MissingKey, load_service_keys
    from jpki_service.audit.service import verify as verify_trail
    from jpki_service.entrypoints.cli import _settings

    settings = _settings(data)
    try:
        keys = load_service_keys(settings, create=False)
    except MissingKey as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    store = Store(settings.resolved_database_url())
    try:
        report = verify_trail(store, keys.audit_chain)
    except SQLAlchemyError as exc:
        typer.secho(f"error: cannot read the audit trail (run `jpki-service migrate`?): "
                    f"{getattr(exc, 'orig', None) or exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    finally:
        store.dispose()
    if as_json:
        typer.echo(json.dumps({
            "ok": report.ok, "entries_checked": report.entries_checked,
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in report.problems],
            "problems_not_listed": report.problems_not_listed,
        }, ensure_ascii=False, indent=2))
    elif report.ok:
        typer.echo(f"audit trail intact: {report.entries_checked} entries")
    else:
        for problem in report.problems:
            typer.echo(f"entry {problem.seq}: {problem.kind} — {problem.detail}")
        if report.problems_not_listed:
            typer.echo(f"... and {report.problems_not_listed} more problems")
        typer.echo(f"audit trail NOT intact: {len(report.problems) + report.problems_not_listed} problems "
                   f"in {report.entries_checked} entries")
    if not report.ok:
        raise typer.Exit(1)
