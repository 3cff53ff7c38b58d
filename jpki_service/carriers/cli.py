"""``jpki-service carrier add | list | disable``: the administrator's commands for carriers' credentials,
run on the service's host against its database (docs/carriers.md).

Every change is recorded in the audit trail with the operating-system account that ran it (actor
``administrator:<account>``), as the operator account commands are (jpki_service/operators/cli.py, whose
store and audit helpers these share).
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from jpki_service.operators.cli import DataOption, _actor, _service, _when

carrier_app = typer.Typer(help="Mobile carriers' credentials for the lost-phone report (docs/carriers.md).",
                          no_args_is_help=True)
NameOption = typer.Option(..., "--name", help="The carrier's name (2 to 64 of a-z, 0-9, '.', '_', '-').")


@carrier_app.command("add")
def add(name: str = NameOption, data: Path | None = DataOption) -> None:
    """Give a carrier OAuth2 client credentials: its client id and secret are printed once (only a hash of
    the secret is kept). Audited."""
    from jpki_service.carriers.service import add_carrier

    with _service(data) as (_, store, chain_key):
        added = add_carrier(store, chain_key, _actor(), name)
    typer.echo(f"carrier {added.name} added\n"
               f"client id      {added.client_id}\n"
               f"client secret  {added.client_secret}\n"
               "Hand both to the carrier over a protected channel: the secret is not shown again.")


@carrier_app.command("list")
def list_(data: Path | None = DataOption,
          as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout.")) -> None:
    """Every carrier: client id, state, live access tokens, reports received, the last one's time."""
    from jpki_service.carriers.service import list_carriers

    with _service(data, keys=False) as (_, store, _key):
        rows = list_carriers(store)
    if as_json:
        typer.echo(json.dumps({"carriers": [row.as_dict() for row in rows]}, ensure_ascii=False, indent=2))
        return
    if not rows:
        typer.echo("no carriers (add one: jpki-service carrier add --name NAME)")
        return
    table = [("NAME", "CLIENT ID", "STATE", "TOKENS", "REPORTS", "LAST REPORT")]
    table += [(r.name, r.client_id, r.state, str(r.live_tokens), str(r.reports), _when(r.last_report_at))
              for r in rows]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    for cells in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip())


@carrier_app.command("disable")
def disable(name: str = NameOption, data: Path | None = DataOption) -> None:
    """Disable a carrier (a leaked secret, a contract ended): its access tokens stop working at once and it
    gets no new ones. Audited."""
    from jpki_service.carriers.service import disable_carrier

    with _service(data) as (_, store, chain_key):
        ended = disable_carrier(store, chain_key, _actor(), name)
    typer.echo(f"carrier {name} disabled; {ended} access token(s) ended")
