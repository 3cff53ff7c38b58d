"""``jpki-service audit verify | anchor | export``: the audit trail from the command line.

``verify`` exit status: 0 intact, 1 when any problem was found (in the chain or against its RFC 3161
anchors), 2 when the trail could not be read (no database, not migrated, no root to check anchors
against), so a scheduled check can tell "tampered" from "not checked". ``anchor`` and ``export``:
0 done, 2 not done (the message says why).
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer

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
    """Check every entry's keyed hash, the links between entries and the head, and the trail against its
    RFC 3161 anchors (a cut-off tail or a rewound head is named)."""
    # Imported here: jpki_service.entrypoints.cli mounts this app, so importing it at module level would be circular.
    from jpki_service.adapters.service_keys import MissingKey, load_service_keys
    from jpki_service.audit.anchors import NoTrustedRoot, verify_anchors
    from jpki_service.audit.service import verify as verify_trail
    from jpki_service.entrypoints.cli import _settings

    settings = _settings(data, missing_exit=2)  # 2: the trail could not be read
    try:
        keys = load_service_keys(settings, create=False)
    except MissingKey as exc:
        _fail(str(exc))
    with _store_and_ca(settings, _ca_client(settings), NoTrustedRoot) as (store, ca):
        anchored = verify_anchors(store, settings, ca)  # anchors first: see verify_anchors
        report = verify_trail(store, keys.audit_chain)
    report.problems = sorted(report.problems + anchored.problems, key=lambda p: p.seq)
    latest = anchored.latest
    count = len(anchored.anchors)
    anchor_line = (f"anchored up to entry {latest.seq} by the TSA at {latest.gen_time.isoformat()} "
                   f"({count} anchor{'s' if count != 1 else ''}; "
                   f"{max(0, report.entries_checked - latest.seq)} entries since)"
                   if latest else "not anchored: no RFC 3161 anchor yet (jpki-service audit anchor)")
    if as_json:
        typer.echo(json.dumps({
            "ok": report.ok, "entries_checked": report.entries_checked,
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in report.problems],
            "problems_not_listed": report.problems_not_listed,
            "anchors": len(anchored.anchors),
            "latest_anchor": {"seq": latest.seq, "entry_hash": latest.entry_hash,
                              "gen_time": latest.gen_time.isoformat()} if latest else None,
        }, ensure_ascii=False, indent=2))
    elif report.ok:
        typer.echo(f"audit trail intact: {report.entries_checked} entries")
        typer.echo(anchor_line)
    else:
        for problem in report.problems:
            typer.echo(f"entry {problem.seq}: {problem.kind} — {problem.detail}")
        if report.problems_not_listed:
            typer.echo(f"... and {report.problems_not_listed} more problems")
        typer.echo(f"audit trail NOT intact: {len(report.problems) + report.problems_not_listed} problems "
                   f"in {report.entries_checked} entries")
    if not report.ok:
        raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@contextlib.contextmanager
def _store_and_ca(settings: Any, ca: Any, *refusals: type[Exception],
                  refused: str = "") -> Iterator[tuple[Any, Any]]:
    """The service's store and ``ca`` (or None) for one command, closed after it; ``refusals`` and an
    unreadable database end the command with exit 2 and one line saying why."""
    from sqlalchemy.exc import SQLAlchemyError

    from jpki_service.adapters.db import Store

    store = Store(settings.resolved_database_url())
    try:
        yield store, ca
    except refusals as exc:
        _fail(f"{refused}{exc}")
    except SQLAlchemyError as exc:
        _fail(f"cannot read the audit trail (run `jpki-service migrate`?): {getattr(exc, 'orig', None) or exc}")
    finally:
        store.dispose()
        if ca is not None:
            ca.close()


def _ca_client(settings, ca_url: str | None = None):
    """A client of the CA (for its TSA and root), or None when no CA URL is known."""
    from jpki_service.adapters.ca_client import CAClient

    url = ca_url or settings.ca_url
    return CAClient(url, settings.ca_token, settings.ca_timeout_seconds) if url else None


@audit_app.command()
def anchor(
    data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR)."),
    ca_url: str | None = typer.Option(None, "--ca-url", help="The CA (default JPKI_CA_URL); its TSA is <CA>/tsa."),
) -> None:
    """Have the chain's head timestamped now by the CA's RFC 3161 TSA (unless the latest anchor names it)."""
    from jpki_service.adapters.ca_client import CAUnavailable
    from jpki_service.audit.anchors import AnchorFailed, NoTrustedRoot, anchor_dir, take_anchor
    from jpki_service.entrypoints.cli import _settings

    settings = _settings(data, missing_exit=2)  # 2: the trail could not be read
    ca = _ca_client(settings, ca_url)
    if ca is None:
        _fail("no CA to timestamp with: set JPKI_CA_URL or give --ca-url")
    with _store_and_ca(settings, ca, AnchorFailed, CAUnavailable, NoTrustedRoot,
                       refused="no anchor taken: ") as (store, ca):
        taken = take_anchor(store, ca, settings, only_if_moved=True)
    if taken is None:
        typer.echo("nothing to anchor: the trail is empty, or its head is anchored already")
    else:
        typer.echo(f"anchored entry {taken.seq} at {taken.gen_time.isoformat()} "
                   f"({anchor_dir(settings) / taken.name}.tst)")


@audit_app.command()
def export(
    out: Path = typer.Option(..., "--out", help="Folder to write the trail and its anchors into."),
    data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR)."),
) -> None:
    """Write the trail (JSON lines) and its anchors (data, token, TSA certificate, root) for an external
    auditor; each anchor checks with `openssl ts -verify` (anchors.jsonl gives the command)."""
    from jpki_service.audit.anchors import NoTrustedRoot
    from jpki_service.audit.anchors import export as export_trail
    from jpki_service.entrypoints.cli import _settings

    settings = _settings(data, missing_exit=2)  # 2: the trail could not be read
    with _store_and_ca(settings, _ca_client(settings), NoTrustedRoot) as (store, ca):
        entries, anchors = export_trail(store, settings, out, ca)
    typer.echo(f"exported {entries} entries and {anchors} anchors to {out}")
