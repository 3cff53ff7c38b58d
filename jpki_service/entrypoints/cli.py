"""``jpki-service``: run the lifecycle service, migrate its database, show its queue.

Only ``serve`` and ``migrate`` make a store; every other command refuses a ``--data`` folder (or
database) that holds none, rather than make an empty one that hides a typo. Heavy libraries
(SQLAlchemy, Alembic, httpx, pydantic, uvicorn) are imported inside the commands: ``--help`` loads none.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from jpki_common.private_files import private_folder, private_log
from jpki_common.process import no_garbage_collection_at_exit
from jpki_service.audit.cli import audit_app
from jpki_service.ca_commands.cli import ca_commands_app
from jpki_service.carriers.cli import carrier_app
from jpki_service.operators.cli import add_account_commands
from jpki_service.receipts.cli import verify_receipt

if TYPE_CHECKING:
    from jpki_service.common.settings import ServiceSettings

app = typer.Typer(help="The JPKI smartphone certificate lifecycle service.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _settings(data: Path | None, create: bool = False, missing_exit: int = 1) -> ServiceSettings:
    """The settings of the data folder ``data`` (default ./var, or JPKI_DATA_DIR).

    ``create``: the command makes the store if there is none (``serve``, ``migrate``); every other
    command is refused (exit ``missing_exit``), naming the folder, when it holds no store."""
    from jpki_service.common.settings import ServiceSettings

    settings = ServiceSettings(data_dir=data) if data else ServiceSettings()
    if not create:
        _require_store(settings, missing_exit)
    private_folder(settings.data_dir)  # 0700 (docs/security.md)
    return settings


def _require_store(settings: ServiceSettings, code: int = 1) -> None:
    """Refuse (exit 1, one line) when the data folder's database was never made: the default SQLite file
    is missing, or the database of JPKI_DATABASE_URL has no schema (never migrated)."""
    from sqlalchemy import create_engine, inspect, make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(settings.resolved_database_url())
    where = (f"{settings.data_dir}" if not settings.database_url
             else url.render_as_string(hide_password=True))
    if url.get_backend_name() == "sqlite":
        if not url.database or not Path(url.database).is_file():
            fail(f"no service store in {where}: run `jpki-service migrate` (or `serve`) there first, or check "
                 "--data (and JPKI_DATA_DIR)", code)
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            made = inspect(connection).has_table("alembic_version")
    except SQLAlchemyError as exc:
        fail(f"cannot reach the database {where}: {getattr(exc, 'orig', None) or exc}", code)
    finally:
        engine.dispose()
    if not made:
        fail(f"no service store in {where}: run `jpki-service migrate` (or `serve`) first, or check "
             "JPKI_DATABASE_URL", code)


def _migrate(settings: ServiceSettings) -> None:
    from sqlalchemy.exc import OperationalError

    from jpki_service.adapters.db import migrate as run_migrations

    try:
        run_migrations(settings.resolved_database_url())
    except OperationalError as exc:
        fail(f"cannot reach the database: {exc.orig}")


def _start_embedded_ca(settings: ServiceSettings, host: str, port: int) -> subprocess.Popen:
    """The mock CA on the embedded default: its own process and store under DATA/ca, made and started
    through its CLI (the service imports nothing of the mock CA: a real deployment has none)."""
    import httpx

    ca_data = settings.data_dir / "ca"
    public_url = f"http://{host}:{port}"
    ca_env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_data)}
    made = subprocess.run([sys.executable, "-m", "ca_mock", "init", "--public-url", public_url, "--exist-ok",
                           "--json"], env=ca_env, capture_output=True, text=True)
    if made.returncode != 0:
        fail(f"the mock CA under {ca_data} could not be made: {made.stderr.strip() or made.stdout.strip()}")
    hierarchy = json.loads(made.stdout)
    if hierarchy["public_url"] != public_url:
        fail(f"the CA under {ca_data} was made for {hierarchy['public_url']}; "
             f"serve with a port that matches it, or use another --data folder")
    token_file = hierarchy["api_token_file"]
    token = Path(token_file).read_text().strip() if token_file else os.environ.get("JPKI_CA_API_TOKEN")
    log = private_log(settings.data_dir / "ca.log")  # 0600, like its folder (docs/security.md)
    process = subprocess.Popen(
        [sys.executable, "-m", "ca_mock", "serve", "--host", host, "--port", str(port)],
        env=ca_env, stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as client:  # one client: each new one reads the system's CA bundle again
        while time.monotonic() < deadline:
            if process.poll() is not None:
                fail(f"the mock CA did not start; see {settings.data_dir / 'ca.log'}")
            try:
                if client.get(f"http://{host}:{port}/healthz").status_code == 200:
                    settings.ca_url = f"http://{host}:{port}"
                    settings.ca_token = token
                    return process
            except httpx.HTTPError:
                time.sleep(0.2)
    process.kill()
    fail("the mock CA did not answer within 30 s")
    raise AssertionError  # unreachable


def _check_external_ca(settings: ServiceSettings) -> None:
    """Refuse to start against a CA that refuses our token or is not the CA's API: every change would
    wait in the queue, and nobody would know why until someone read `jpki-service status`. A CA that
    does not answer is only warned about: owners must be able to revoke during a CA outage too (the
    queue carries their changes when it is back), a restart of the service included."""
    from jpki_service.adapters.ca_client import CAClient, CAMisconfigured, CAUnavailable

    client = CAClient(settings.ca_url or "", settings.ca_token, settings.ca_timeout_seconds)
    token = "JPKI_CA_TOKEN is set" if settings.ca_token else "JPKI_CA_TOKEN is not set"
    try:
        client.check_access()
    except CAMisconfigured as exc:
        fail(f"the CA at JPKI_CA_URL={settings.ca_url} cannot be used ({token}): {exc}. Nothing was started.")
    except CAUnavailable as exc:
        typer.secho(f"warning: the CA at JPKI_CA_URL={settings.ca_url} does not answer: {exc}. Starting anyway: "
                    "changes wait in the CA queue until it answers (`jpki-service status`)", err=True,
                    fg=typer.colors.YELLOW)
    finally:
        client.close()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var, or JPKI_DATA_DIR)."),
    workers: int = typer.Option(1, min=1, max=64, help="Server processes; nothing is kept per process, so "
                                "requests scale with cores (each also runs the background dispatcher)."),
) -> None:
    """Serve the lifecycle API. With no JPKI_CA_URL, the mock CA is started too (port + 100)."""
    from sqlalchemy import make_url

    from jpki_common import http_server
    from jpki_service.entrypoints.app import create_app

    settings = _settings(data, create=True)
    _migrate(settings)
    ca_process = None
    if not settings.ca_url:
        ca_process = _start_embedded_ca(settings, host, port + 100)
    else:
        _check_external_ca(settings)

    def stop_embedded_ca() -> None:
        if ca_process is not None and ca_process.poll() is None:
            ca_process.terminate()
            ca_process.wait(timeout=10)

    try:
        typer.echo(f"JPKI lifecycle service on http://{host}:{port}")
        typer.echo(f"  API docs  http://{host}:{port}/docs" if settings.expose_docs else "  API docs  not served")
        typer.echo(f"  CA        {settings.ca_url}  (docs {settings.ca_url}/docs)")
        typer.echo(f"  CRL       {settings.ca_url}/crl/sign-p0.crl  {settings.ca_url}/crl/auth-p0.crl"
                   "  (each certificate names its partition's: -p0, -p1, ...)")
        typer.echo(f"  OCSP      {settings.ca_url}/ocsp")
        typer.echo(f"  database  {make_url(settings.resolved_database_url()).render_as_string(hide_password=True)}")
        sys.stdout.flush()
        # A client's address is the peer's unless the peer is a proxy named in JPKI_TRUSTED_PROXIES: uvicorn's
        # default believes X-Forwarded-For from 127.0.0.1, which lets any local client choose its address.
        trusted = settings.trusted_proxies.strip()
        if workers == 1:
            http_server.run(create_app(settings, on_shutdown=stop_embedded_ca), settings, host=host, port=port,
                            log_level="warning", proxy_headers=bool(trusted), forwarded_allow_ips=trusted)
            return
        # The keys are made here, once, before the workers start: each worker loads them (service_keys.py).
        from jpki_service.adapters.service_keys import load_service_keys

        load_service_keys(settings)
        # Worker processes build their own app from the environment: hand them this command's choices
        # (the embedded CA's URL and token included). This process supervises them and stops the CA.
        os.environ.update({"JPKI_DATA_DIR": str(settings.data_dir),
                           "JPKI_DATABASE_URL": settings.resolved_database_url(), "JPKI_CA_URL": settings.ca_url or ""})
        if settings.ca_token:
            os.environ["JPKI_CA_TOKEN"] = settings.ca_token
        # The head limits reach them in the environment too (jpki_common/http_server.py).
        http_server.run("jpki_service.entrypoints.app:create_app_from_environment", settings, factory=True,
                        workers=workers, host=host, port=port, log_level="warning", proxy_headers=bool(trusted),
                        forwarded_allow_ips=trusted)
    finally:
        stop_embedded_ca()  # when the server failed to start


@app.command()
def migrate(data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var).")) -> None:
    """Bring the database (JPKI_DATABASE_URL, default SQLite under --data) to the current schema; makes it
    if there is none."""
    from sqlalchemy import make_url

    settings = _settings(data, create=True)
    _migrate(settings)
    typer.echo("database at the current schema: "
               f"{make_url(settings.resolved_database_url()).render_as_string(hide_password=True)}")


@app.command()
def status(data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var).")) -> None:
    """Registrations by state, the changes waiting to reach the CA, the owner notices waiting to go."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from jpki_service.adapters.db import Store
    from jpki_service.ca_commands.service import list_commands, queue_summary, retrying_summary
    from jpki_service.notifications.service import pending_count
    from jpki_service.registrations.models import Registration

    settings = _settings(data)
    store = Store(settings.resolved_database_url())
    try:
        with store.sessions() as session:
            states = dict(session.execute(select(Registration.state, func.count()).group_by(Registration.state)).all())
        queue = queue_summary(store)
        retrying = retrying_summary(store)
        failed = list_commands(store, "failed", limit=_FAILED_SHOWN)
        notices = pending_count(store)
    except OperationalError as exc:
        fail(f"cannot read the database (run `jpki-service migrate`?): {exc.orig}")
    typer.echo("registrations  " + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none"))
    typer.echo(f"CA queue       pending {queue.get('pending', 0)}, failed {queue.get('failed', 0)}, "
               f"done {queue.get('done', 0)}")
    if queue.get("pending"):
        since = retrying.oldest_pending_at.isoformat(timespec="seconds") if retrying.oldest_pending_at else "-"
        word = f"retrying: {retrying.latest_error}" if retrying.latest_error else "not tried yet"
        typer.echo(f"  waiting      {queue['pending']} since {since} ({word})")
    for command in failed:
        typer.echo(f"  failed       command {command.id}: {command.action} of the {command.certificate_kind} "
                   f"certificate, registration {command.registration_id}: {command.last_error}")
    if queue.get("failed", 0) > len(failed):
        typer.echo(f"  failed       ... and {queue['failed'] - len(failed)} more: "
                   "`jpki-service ca-commands list --state failed`")
    if queue.get("failed"):
        typer.echo("  re-queue once the cause is fixed: `jpki-service ca-commands requeue --all` (or ids)")
    typer.echo(f"owner notices  waiting {notices}")


_FAILED_SHOWN = 5  # failed commands `status` lists; `ca-commands list --state failed` lists them all


operator_app = typer.Typer(help="Call-centre accounts (operator, supervisor, auditor).", no_args_is_help=True)
app.add_typer(operator_app, name="operator")
add_account_commands(operator_app)  # list, disable, enable, reset-password, set-role, end-sessions, unlock
app.add_typer(audit_app, name="audit", help="The audit trail: verify (chain and anchors), anchor, export.")
app.add_typer(ca_commands_app, name="ca-commands",
              help="The changes waiting to reach the CA: list them, re-queue the ones it refused.")
app.add_typer(carrier_app, name="carrier")  # add, list, disable (docs/carriers.md)
app.command("verify-receipt")(verify_receipt)  # a dealer's erasure receipt, offline (docs/dealers.md)


def _store(settings: ServiceSettings):
    from jpki_service.adapters.db import Store

    return Store(settings.resolved_database_url())


@operator_app.command("add")
def operator_add(
    username: str = typer.Option(..., "--username", help="Login name: a-z, 0-9, '.', '_', '-'."),
    role: str = typer.Option(..., "--role", help="operator | supervisor | auditor"),
    data: Path | None = typer.Option(None, "--data", help="Data folder (default ./var)."),
) -> None:
    """Create an account. The password is prompted, or read from JPKI_OPERATOR_PASSWORD."""
    from jpki_common.problems import Problem
    from jpki_service.operators.roles import Role
    from jpki_service.operators.service import add_operator

    try:
        chosen = Role(role)
    except ValueError:
        fail(f"--role must be one of {', '.join(r.value for r in Role)}")
    settings = _settings(data)  # before the password is asked: a wrong --data is refused at once
    password = new_operator_password(f"password for {username}")
    _migrate(settings)
    try:
        add_operator(_store(settings), username, chosen, password)
    except Problem as problem:
        fail(problem.detail)
    typer.echo(f"{chosen.value} {username} added")


def new_operator_password(prompt: str) -> str:
    """A new account password: JPKI_OPERATOR_PASSWORD, else asked twice with its rule in the prompt;
    with no terminal to ask at, one line naming the variable."""
    from jpki_common.secret_prompt import NoTerminal, ask
    from jpki_service.operators.service import MIN_PASSWORD_LENGTH

    given = os.environ.get("JPKI_OPERATOR_PASSWORD")
    if given:
        return given
    try:
        while True:
            password = ask(f"{prompt} (at least {MIN_PASSWORD_LENGTH} characters)", "JPKI_OPERATOR_PASSWORD")
            if ask("Repeat for confirmation", "JPKI_OPERATOR_PASSWORD") == password:
                return password
            typer.echo("the two entries do not match; try again", err=True)
    except NoTerminal:
        fail("no terminal: set JPKI_OPERATOR_PASSWORD to give the password")


def main() -> None:
    no_garbage_collection_at_exit()
    app()
