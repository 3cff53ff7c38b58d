"""Fixtures shared by every test: a fresh CA store on SQLite and on PostgreSQL, and a real
``jpki-ca serve`` process over HTTP for the end-to-end tests.

PostgreSQL: ``JPKI_TEST_POSTGRES_URL`` (default: the local server with trust auth). Each test
gets its own schema, dropped afterwards. Where PostgreSQL is not answering, its tests are
skipped, except on CI (``CI=true``), where that fails the run.
"""
from __future__ import annotations

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
from ca_mock.db import Store, create_schema
from ca_mock.settings import CASettings

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path):
    """A database URL for an empty store, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ca.sqlite3'}"
        return
    problem = postgres_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{problem} (CI requires PostgreSQL)")
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


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
    create_schema(store.engine)
    yield store
    store.dispose()


@pytest.fixture
def hierarchy(store: Store, ca_settings: CASettings) -> Hierarchy:
    return initialise(store, ca_settings)


@dataclass
class RunningCA:
    url: str
    token: str
    settings: CASettings
    store: Store
    process: subprocess.Popen

    def client(self, authorised: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if authorised else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def ca_server(ca_settings: CASettings, store: Store, hierarchy: Hierarchy, tmp_path: Path):
    """``jpki-ca serve`` as a real process on a free port, on this test's store."""
    port = int(ca_settings.public_url.rsplit(":", 1)[1])
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(ca_settings.data_dir),
           "JPKI_CA_DATABASE_URL": ca_settings.resolved_database_url()}
    log = open(tmp_path / "ca-server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ca_mock", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"jpki-ca serve did not start: {(tmp_path / 'ca-server.log').read_text()}")
        time.sleep(0.1)
    yield RunningCA(url, ca_settings.resolved_api_token() or "", ca_settings, store, process)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
