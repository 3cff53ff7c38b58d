"""Fixtures shared by every test: a fresh CA store on SQLite and on PostgreSQL, and a real
``jpki-ca serve`` process over HTTP for the end-to-end tests.

PostgreSQL: ``JPKI_TEST_POSTGRES_URL`` (default: the local server with trust auth). Each test
gets its own schema, dropped afterwards. Where PostgreSQL is not answering, its tests are
skipped, except on CI (``CI=true``), where that fails the run.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ca_mock.authorities.service import Hierarchy, initialise
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store
from tests.helpers import reused_ca_keys, start_handing_out_keys_again

# The programs speak Japanese by default (issue 14); the tests read their English unless they ask for Japanese.
os.environ.setdefault("JPKI_LANG", "en")


def _one_tls_context_for_the_test_process() -> None:
    """Every httpx client builds a TLS context and reads the CA bundle again (20-50 ms of CPU), though the
    tests' clients speak plain HTTP to 127.0.0.1: py-spy found that a third of a test worker's CPU. The
    clients made in a test process (never the programs under test) share one default context instead."""
    from httpx._transports import default as transports

    make = transports.create_ssl_context
    assert make.__name__ == "create_ssl_context", "httpx moved create_ssl_context: see tests/conftest.py"
    shared = make()

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        return shared if verify is True and cert is None else make(verify=verify, cert=cert, trust_env=trust_env)

    transports.create_ssl_context = create_ssl_context


_one_tls_context_for_the_test_process()
POSTGRES_URL = os.environ.get("JPKI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_problem() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.exec_driver_sql("select 1")
        engine.dispose()
        return None
    except Exception as exc:  # any failure to reach it
        return f"PostgreSQL at {POSTGRES_URL} is not answering: {exc.__class__.__name__}: {exc}"


_POSTGRES_PROBLEM: list[str | None] = []


def postgres_problem() -> str | None:
    if not _POSTGRES_PROBLEM:
        _POSTGRES_PROBLEM.append(_postgres_problem())
    return _POSTGRES_PROBLEM[0]


def missing_on_this_machine(problem: str, what: str) -> None:
    """Skip the test for want of ``what`` (PostgreSQL, the browser), except on CI (``CI=true``): fail there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (CI requires {what})")
    pytest.skip(problem)


@contextlib.contextmanager
def _empty_database(kind: str, tmp_path: Path, name: str):
    """A URL for an empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    problem = postgres_problem()
    if problem:
        missing_on_this_machine(problem, "PostgreSQL")
    # The "x" keeps the random part from ever being a bare 12-digit number (the privacy scan's target).
    schema = f"t_{name}_x{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(autouse=True)
def _fresh_keys_per_test():
    """Each test starts on a new CA store: any key made earlier may be certified again."""
    start_handing_out_keys_again()


@pytest.fixture(autouse=True)
def _app_language_per_test():
    """``jpki-app --lang ja`` (or JPKI_LANG=ja) switches the app's words for the whole process: each test
    starts in the language of the suite, whatever the test before it ran in."""
    from app_client.messages import _ as app_words

    language = app_words.language
    yield
    app_words.use(language)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path):
    """A database URL for an empty CA store, once per backend."""
    with _empty_database(request.param, tmp_path, "ca") as url:
        yield url


@pytest.fixture
def service_database_url(database_url: str, tmp_path: Path):
    """An empty database for the lifecycle service, on the same backend as the CA's."""
    with _empty_database("sqlite" if database_url.startswith("sqlite") else "postgresql", tmp_path, "svc") as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ca_settings(tmp_path: Path, database_url: str) -> CASettings:
    return CASettings(data_dir=tmp_path / "ca", database_url=database_url,
                      public_url=f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def store(ca_settings: CASettings):
    store = Store(ca_settings.resolved_database_url())
    migrate(store.url)
    yield store
    store.dispose()


@pytest.fixture
def hierarchy(store: Store, ca_settings: CASettings) -> Hierarchy:
    """This test's CA hierarchy, on CA keys made earlier in this test process (tests/helpers.py)."""
    with reused_ca_keys(sys.modules[initialise.__module__].keys):
        return initialise(store, ca_settings)


@dataclass
class RunningCA:
    url: str
    token: str
    settings: CASettings
    store: Store
    process: subprocess.Popen
    restart_args: tuple = ()
    admin_token: str = ""  # the administrator credential: card certificates (docs/ca.md)

    def stop(self) -> None:
        stop_process(self.process)

    def start(self) -> None:
        args, env, log = self.restart_args
        self.process = start_process(args, env, f"{self.url}/healthz", log)

    def client(self, authorised: bool = True, admin: bool = False) -> httpx.Client:
        """A client with the service's credential, or with ``admin`` the administrator's."""
        headers = {"Authorization": f"Bearer {self.admin_token if admin else self.token}"} if authorised else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_process(args: list[str], env: dict[str, str], health_url: str, log_path: Path) -> subprocess.Popen:
    """Start a server process and wait until its health URL answers 200."""
    log = open(log_path, "a")
    process = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=log)
    # Generous: on a loaded 2-core CI machine a cold start (imports, key loading) can take this long.
    deadline = time.monotonic() + 90
    with httpx.Client(timeout=2) as client:  # one client and one connection pool for the polls
        while True:
            try:
                if client.get(health_url).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{args} did not start: {log_path.read_text()}")
            time.sleep(0.1)


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve_ca(settings: CASettings, store: Store, log_folder: Path) -> RunningCA:
    """``jpki-ca serve`` as a real process on the port of ``settings.public_url``, on ``store``."""
    port = int(settings.public_url.rsplit(":", 1)[1])
    env = {"JPKI_CA_DATA_DIR": str(settings.data_dir), "JPKI_CA_DATABASE_URL": settings.resolved_database_url()}
    args = [sys.executable, "-m", "ca_mock", "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    running = RunningCA(url, settings.resolved_api_token() or "", settings, store,
                        start_process(args, env, f"{url}/healthz", log_folder / "ca-server.log"))
    running.restart_args = (args, env, log_folder / "ca-server.log")
    running.admin_token = settings.resolved_admin_token() or ""
    return running


@pytest.fixture
def ca_server(ca_settings: CASettings, store: Store, hierarchy: Hierarchy, tmp_path: Path):
    """``jpki-ca serve`` as a real process on a free port, on this test's store."""
    running = serve_ca(ca_settings, store, tmp_path)
    yield running
    stop_process(running.process)


@dataclass
class RunningService:
    url: str
    database_url: str
    data_dir: Path
    process: subprocess.Popen

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def start_service(ca_server: RunningCA, database_url: str, tmp_path: Path, *extra_args: str,
                  settings: dict[str, str] | None = None) -> RunningService:
    """``jpki-service serve`` (with ``extra_args``, e.g. ``--workers 2``) talking to the real CA over HTTP;
    ``settings``: JPKI_* variables that replace the ones below."""
    port = free_port()
    data_dir = tmp_path / "service"
    env = {
        "JPKI_DATA_DIR": str(data_dir), "JPKI_DATABASE_URL": database_url,
        "JPKI_CA_URL": ca_server.url, "JPKI_CA_TOKEN": ca_server.token,
        # Short waits so tests see the background worker act quickly.
        "JPKI_DISPATCH_INTERVAL_SECONDS": "0.2", "JPKI_MAX_RETRY_BACKOFF_SECONDS": "1",
        "JPKI_CASCADE_INTERVAL_SECONDS": "1",
        # Every test client is 127.0.0.1: the rate limits have their own test (test_rate_limits.py).
        "JPKI_CHALLENGES_PER_CLIENT_PER_MINUTE": "0", "JPKI_FAILED_PROOFS_PER_CLIENT_PER_MINUTE": "0",
        "JPKI_FAILED_PROOFS_PER_REGISTRATION_PER_HOUR": "0", "JPKI_RP_CHALLENGES_PER_CLIENT_PER_MINUTE": "0",
        "JPKI_RP_FAILED_LOGINS_PER_CLIENT_PER_MINUTE": "0", "JPKI_LOGIN_ATTEMPTS_PER_CLIENT_PER_MINUTE": "0",
        # A supervisor's lift or revocation is done at once: the two-person rule (on by default) has its own
        # tests (test_approvals.py), which start the service with the default policy.
        "JPKI_TWO_PERSON_ACTS": "",
        **(settings or {}),
    }
    url = f"http://127.0.0.1:{port}"
    process = start_process([sys.executable, "-m", "jpki_service", "serve", "--port", str(port), *extra_args], env,
                            f"{url}/healthz", tmp_path / "service.log")
    return RunningService(url, database_url, data_dir, process)


@pytest.fixture
def service_server(ca_server: RunningCA, service_database_url: str, tmp_path: Path):
    """``jpki-service serve`` as a real process, talking to the real CA process over HTTP."""
    running = start_service(ca_server, service_database_url, tmp_path)
    yield running
    stop_process(running.process)
