"""``jpki-ca``: run and administer the mock CA on this machine (it works on the store directly).

Every command exits non-zero with a one-line message on bad input; ``--help`` on each says more.
The CA's libraries (pydantic, SQLAlchemy, cryptography, uvicorn) are imported inside the commands:
``--help`` loads none of them.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from jpki_common.process import no_garbage_collection_at_exit
from jpki_common.revocation_reasons import REVOCATION_REASONS

if TYPE_CHECKING:
    from ca_mock.certificates.status_rules import StatusAction
    from ca_mock.settings import CASettings

app = typer.Typer(help="The JPKI mock certification authority (J-LIS stand-in).", no_args_is_help=True,
                  pretty_exceptions_enable=False)
card_app = typer.Typer(help="Simulated My Number cards (the municipal-office step).", no_args_is_help=True)
app.add_typer(card_app, name="card")


class Context:
    def __init__(self, data: Path | None, database_url: str | None) -> None:
        overrides: dict[str, Any] = {}
        if data is not None:
            overrides["data_dir"] = data
        if database_url is not None:
            overrides["database_url"] = database_url
        self.overrides = overrides

    def settings(self, **more: Any) -> CASettings:
        from ca_mock.settings import CASettings

        return _run(lambda: CASettings(**self.overrides, **more))


def _store(settings: CASettings):
    from sqlalchemy.exc import OperationalError

    from ca_mock.db import migrate
    from jpki_common.store import Store

    store = Store(settings.resolved_database_url())
    try:
        migrate(store.url)
    except OperationalError as exc:
        fail(f"cannot open the CA store {store.engine.url.render_as_string(hide_password=True)}: {exc.orig}")
    return store


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _run(action):
    """Run ``action``; turn a CA refusal or a settings error into a clear message and exit 1."""
    from pydantic import ValidationError

    from jpki_common.problems import Problem

    try:
        return action()
    except Problem as problem:
        fail(problem.detail)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key, value in data.items():
        if key not in ("certificate_pem", "history"):
            typer.echo(f"{key:16} {value}")
    for event in data.get("history", []):
        typer.echo(f"  {event['at']}  {event['status']:8} {event['reason'] or ''}")


@app.callback()
def main_options(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", envvar="JPKI_CA_DATA_DIR",
                                        help="Data folder (default ./var/ca)."),
    database_url: str | None = typer.Option(None, "--database-url", envvar="JPKI_CA_DATABASE_URL",
                                               help="SQLAlchemy URL (default SQLite under --data)."),
) -> None:
    ctx.obj = Context(data, database_url)


@app.command()
def init(
    ctx: typer.Context,
    public_url: str = typer.Option("http://127.0.0.1:8100", envvar="JPKI_CA_PUBLIC_URL",
                                   help="Base URL written into every certificate; fixed from now on."),
    key_algorithm: str = typer.Option("rsa2048", envvar="JPKI_CA_KEY_ALGORITHM", help="rsa2048 (default) or p256."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Keep an existing CA instead of failing."),
    as_json: bool = typer.Option(False, "--json", help="Say what was done as JSON (for scripts)."),
) -> None:
    """Create the root, the two issuing CAs, their OCSP signers and the TSA. Never replaces an existing CA."""
    from ca_mock.authorities.service import initialise, is_initialised

    if key_algorithm not in ("rsa2048", "p256"):
        fail(f"--key-algorithm {key_algorithm!r}: use rsa2048 or p256")
    if not public_url.startswith(("http://", "https://")):
        fail(f"--public-url {public_url!r} must start with http:// or https://")
    settings = ctx.obj.settings(public_url=public_url, key_algorithm=key_algorithm)
    store = _store(settings)
    existed = is_initialised(store)
    hierarchy = _run(lambda: initialise(store, settings, exist_ok=exist_ok))
    database = store.engine.url.render_as_string(hide_password=True)
    if as_json:
        token_file = None if settings.api_token else str(settings.token_file)
        _print({"created": not existed, "database": database, "public_url": hierarchy.public_url,
                "api_token_file": token_file}, as_json=True)
        return
    verb = "kept the existing CA" if existed else "created a new CA"
    typer.echo(f"{verb} at {database}")
    typer.echo(f"public URL   {hierarchy.public_url}")
    typer.echo(f"API token    {settings.token_file if not settings.api_token else 'from JPKI_CA_API_TOKEN'}"
               "  (the lifecycle service's: phone certificates only)")
    admin_token = settings.admin_token_file if not settings.admin_token else "from JPKI_CA_ADMIN_TOKEN"
    typer.echo(f"admin token  {admin_token}  (card certificates over HTTP)")


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8100, help="Port to bind."),
    workers: int = typer.Option(1, min=1, max=64, help="Server processes (OCSP scales with them)."),
) -> None:
    """Serve the CA API, CRLs and OCSP over HTTP until interrupted."""
    from ca_mock.app import create_app
    from ca_mock.authorities.service import load_hierarchy
    from ca_mock.credentials import Credentials, CredentialsMisconfigured
    from jpki_common import http_server

    settings = ctx.obj.settings()
    store = _store(settings)
    hierarchy = _run(lambda: load_hierarchy(store))
    if settings.resolved_api_token() is None:
        fail("no API token: set JPKI_CA_API_TOKEN or run `jpki-ca init` to write one")
    try:
        credentials = Credentials.from_settings(settings)
    except CredentialsMisconfigured as exc:
        fail(str(exc))
    typer.echo(f"JPKI mock CA on http://{host}:{port}  (certificates point at {hierarchy.public_url})")
    typer.echo(f"  API docs  http://{host}:{port}/docs" if settings.expose_docs else "  API docs  not served")
    from ca_mock import urls  # the CRLs the certificates name (CRL DP): their partition's, from p0
    size = settings.crl_partition_size
    crls = [urls.partition_crl_url(hierarchy.public_url, name, 0) if size else urls.crl_url(hierarchy.public_url, name)
            for name in ("sign", "auth")]
    note = f"  (-p0 for the first {size} certificates of each, then -p1, ...)" if size else ""
    typer.echo(f"  CRL       {'  '.join(crls)}{note}")
    typer.echo(f"  OCSP      {hierarchy.public_url}/ocsp")
    if credentials.admin_token is None:
        typer.echo("  no administrator token: card certificates can be issued or changed only with this CLI "
                   "(`jpki-ca init --exist-ok` writes admin-token)")
    sys.stdout.flush()
    if workers == 1:
        http_server.run(create_app(settings), settings, host=host, port=port, log_level="warning")
        return
    # Worker processes build their own app from the environment: hand them this command's choices.
    os.environ["JPKI_CA_DATA_DIR"] = str(settings.data_dir)
    os.environ["JPKI_CA_DATABASE_URL"] = settings.resolved_database_url()
    http_server.run("ca_mock.app:create_app", settings, factory=True, workers=workers, host=host, port=port,
                    log_level="warning")


def _operation_id(given: str | None) -> str:
    import uuid

    return given or f"cli-{uuid.uuid4().hex}"


@app.command()
def issue(
    ctx: typer.Context,
    profile: str = typer.Option(..., help="card-signature, card-authentication, phone-signature, phone-authentication"),
    csr: Path = typer.Option(..., exists=True, dir_okay=False, help="PKCS#10 request, PEM."),
    name: str | None = typer.Option(None, help="card-signature: holder's name (card-signature only)."),
    birth: str | None = typer.Option(None, help="card-signature: YYYY-MM-DD (card-signature only)."),
    gender: str | None = typer.Option(None, help="card-signature: 1, 2 or 3 (card-signature only)."),
    address: str | None = typer.Option(None, help="card-signature: address (card-signature only)."),
    card_serial: str | None = typer.Option(None, help="Phone profiles: card signature certificate serial."),
    not_after: dt.datetime | None = typer.Option(None, help="Requested notAfter (UTC)."),
    operation_id: str | None = typer.Option(None, help="Idempotency key (default: a fresh one)."),
    out: Path | None = typer.Option(None, help="Write the certificate PEM here."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Issue a certificate from a CSR file."""
    from ca_mock.certificates.schemas import IssueRequest
    from ca_mock.certificates.service import issue_certificate

    settings = ctx.obj.settings()
    person = None
    if any(v is not None for v in (name, birth, gender, address)):
        person = {"name": name, "date_of_birth": birth, "gender": gender, "address": address}
    request = _run(lambda: IssueRequest(
        operation_id=_operation_id(operation_id), profile=profile, csr_pem=csr.read_text(errors="replace"),
        person=person, card_serial=card_serial,
        not_after=not_after.replace(tzinfo=dt.UTC) if not_after else None,
    ))
    result = _run(lambda: issue_certificate(_store(settings), settings, request))
    if out:
        out.write_text(result["certificate_pem"])
    _print(result, as_json)


def _change(ctx: typer.Context, serial: str, action: StatusAction, reason: str | None,
            operation_id: str | None, as_json: bool) -> None:
    from ca_mock.certificates.service import change_status

    settings = ctx.obj.settings()
    result = _run(lambda: change_status(_store(settings), settings, serial, action,
                                        _operation_id(operation_id), reason))
    _print(result, as_json)


@app.command()
def revoke(
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="Serial in hex."),
    reason: str = typer.Option(..., help=f"One of: {', '.join(REVOCATION_REASONS)}."),
    operation_id: str | None = typer.Option(None, help="Idempotency key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revoke a certificate for good."""
    from ca_mock.certificates.status_rules import StatusAction

    _change(ctx, serial, StatusAction.REVOKE, reason, operation_id, as_json)


@app.command()
def hold(
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="Serial in hex."),
    operation_id: str | None = typer.Option(None, help="Idempotency key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Suspend a certificate (certificateHold)."""
    from ca_mock.certificates.status_rules import StatusAction

    _change(ctx, serial, StatusAction.HOLD, None, operation_id, as_json)


@app.command()
def release(
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="Serial in hex."),
    operation_id: str | None = typer.Option(None, help="Idempotency key."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Lift the hold of a held certificate."""
    from ca_mock.certificates.status_rules import StatusAction

    _change(ctx, serial, StatusAction.RELEASE, None, operation_id, as_json)


@app.command()
def status(
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="Serial in hex."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a certificate's status and history."""
    from ca_mock.certificates.service import get_certificate

    settings = ctx.obj.settings()
    _print(_run(lambda: get_certificate(_store(settings), serial)), as_json)


@app.command()
def crl(
    ctx: typer.Context,
    issuer: str = typer.Option("sign", help="root, sign or auth."),
    delta: bool = typer.Option(False, "--delta", help="The delta CRL instead of the full one."),
    force: bool = typer.Option(False, "--force", help="Publish a new CRL even if nothing changed."),
    out: Path | None = typer.Option(None, help="Write the DER CRL here."),
    partition: int | None = typer.Option(None, help="A CRL partition of sign or auth instead of the "
                                                        "whole-issuer CRL (ISSUER-pN.crl)."),
) -> None:
    """Publish (if anything changed) and show or save a CRL."""
    from ca_mock.crl.service import current_crl, publish

    settings = ctx.obj.settings()
    store = _store(settings)
    kind = "delta" if delta else "full"
    if force:
        _run(lambda: publish(store, settings, issuer, force=True, partition=partition))
    published = _run(lambda: current_crl(store, settings, issuer, kind, partition=partition))
    if partition is not None:
        issuer = f"{issuer}-p{partition}"
    if out:
        out.write_bytes(published.der)
    typer.echo(f"{issuer} {'delta' if delta else 'full'} CRL #{published.number}"
               + (f" (base #{published.base_number})" if delta else "")
               + f": {published.entries} entries, {len(published.der)} bytes,"
               f" thisUpdate {published.this_update.isoformat()}, nextUpdate {published.next_update.isoformat()}")


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value is not None:
        return value
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


@card_app.command("issue")
def card_issue(
    ctx: typer.Context,
    out: Path = typer.Option(..., help="Card file to write."),
    name: str = typer.Option(..., help="Holder's name, as on the card."),
    birth: str = typer.Option(..., help="Date of birth, YYYY-MM-DD."),
    gender: str = typer.Option(..., help="1 male, 2 female, 3 not stated."),
    address: str = typer.Option(..., help="Address, as on the card."),
) -> None:
    """Make a simulated My Number card. Secrets: prompted, or JPKI_CARD_PASSWORD / JPKI_CARD_PIN."""
    from ca_mock.cards.service import issue_card, write_card
    from ca_mock.certificates.schemas import PersonIn
    from jpki_common.card_rules import SecretRuleViolation, check_pin, normalise_signature_password

    if out.exists():
        fail(f"{out} exists; a card file is never overwritten")
    person = _run(lambda: PersonIn(name=name, date_of_birth=birth, gender=gender, address=address))
    try:
        password = normalise_signature_password(_secret("JPKI_CARD_PASSWORD", "Card signature password"))
        pin = check_pin(_secret("JPKI_CARD_PIN", "Card user-authentication PIN"))
    except SecretRuleViolation as exc:
        fail(str(exc))
    settings = ctx.obj.settings()
    card = _run(lambda: issue_card(_store(settings), settings, person, password, pin))
    write_card(card, out)
    typer.echo(f"card written to {out}")
    typer.echo(f"  signature certificate       {card['signature']['serial']}")
    typer.echo(f"  authentication certificate  {card['authentication']['serial']}")


def main() -> None:
    no_garbage_collection_at_exit()
    app()
