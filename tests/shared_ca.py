"""One real ``jpki-ca serve`` for a whole test module, where conftest's ``ca_server`` makes one per test.

For modules whose tests only read the CA or write under operation ids and keys no other test uses: a
CA store, its hierarchy and its process cost seconds of CPU each, many times over. A module that uses it
defines its own ``ca_server`` fixture (scope="module", params sqlite and postgresql, as conftest's
``database_url``) around :func:`module_ca_server`, imports :func:`_fresh_keys_per_test` (which replaces
conftest's for the module) and names every accepted write with :func:`unique`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ca_mock.authorities.service import initialise
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store
from tests.conftest import RunningCA, RunningService, _empty_database, free_port, serve_ca, start_service, stop_process
from tests.helpers import reused_ca_keys, start_handing_out_keys_again


@contextlib.contextmanager
def module_ca_server(kind: str, tmp_path: Path) -> Iterator[RunningCA]:
    """``jpki-ca serve`` on a new store on ``kind`` (sqlite, postgresql), as conftest's ``ca_server``."""
    with _empty_database(kind, tmp_path, "ca") as database_url:
        port = free_port()
        settings = CASettings(data_dir=tmp_path / "ca", database_url=database_url,
                              public_url=f"http://127.0.0.1:{port}")
        store = Store(settings.resolved_database_url())
        try:
            migrate(store.url)
            with reused_ca_keys(sys.modules[initialise.__module__].keys):
                initialise(store, settings)
            start_handing_out_keys_again()  # this new store has certified none of the test keys
            running = serve_ca(settings, store, tmp_path)
            try:
                yield running
            finally:
                stop_process(running.process)
        finally:
            store.dispose()


@pytest.fixture(autouse=True)
def _fresh_keys_per_test():
    """Replaces conftest's in a module on one CA: that CA outlives each test and certifies a key only once,
    so the test keys are not handed out from the start again at each test (``module_ca_server`` starts
    them over with its new store)."""


def unique(operation_id: str) -> str:
    """``operation_id`` made unique on the module's CA: operation ids are the CA's, shared by its tests."""
    return f"{operation_id}-{uuid.uuid4().hex[:8]}"


def backend_of(ca: RunningCA) -> str:
    """The database ``ca``'s store is on (sqlite, postgresql): a service beside it goes on the same."""
    return "sqlite" if ca.store.url.startswith("sqlite") else "postgresql"


@contextlib.contextmanager
def module_service_server(ca: RunningCA, tmp_path: Path, **settings: str) -> Iterator[RunningService]:
    """``jpki-service serve`` on a new database on ``ca``'s backend, talking to ``ca``, as conftest's
    ``service_server``, for a whole module or one test that needs a service of its own on the module's CA
    (``settings``: JPKI_* variables, as :func:`tests.conftest.start_service`'s)."""
    with _empty_database(backend_of(ca), tmp_path, "svc") as database_url:
        running = start_service(ca, database_url, tmp_path, settings=settings or None)
        try:
            yield running
        finally:
            stop_process(running.process)


def shared_servers(prefix: str, backends: tuple[str, ...] = ("sqlite", "postgresql"), **settings: str):
    """The ``ca_server`` and ``service_server`` fixtures of a module whose tests share one CA and one service
    per backend (``backends=("sqlite",)`` for a module that runs on SQLite alone, as tests/app_client's do):
    ``ca_server, service_server = shared_servers("my-module")`` at the module's top level, and
    import :func:`_fresh_keys_per_test` too. Its tests must not depend on being alone on them: each issues
    cards for persons of its own (:func:`unique_person`), names writes with :func:`unique`, and counts only
    what it made."""

    @pytest.fixture(scope="module", params=list(backends))
    def ca_server(request, tmp_path_factory):
        with module_ca_server(request.param, tmp_path_factory.mktemp(f"{prefix}-{request.param}")) as running:
            yield running

    @pytest.fixture(scope="module")
    def service_server(ca_server, tmp_path_factory):
        folder = tmp_path_factory.mktemp(f"{prefix}-svc-{backend_of(ca_server)}")
        with module_service_server(ca_server, folder, **settings) as running:
            yield running

    return ca_server, service_server


# -- servers of one test's own, in a module on shared ones (import the fixtures the module uses) -------------

@pytest.fixture
def own_ca_server(ca_settings, store, hierarchy, tmp_path: Path) -> Iterator[RunningCA]:
    """conftest's per-test ``ca_server`` under another name, for a test that stops its CA or changes its store
    under it. Its hierarchy takes CA keys the module's CA has not used (the module does not hand the test keys
    out from the start again at each test: :func:`_fresh_keys_per_test`)."""
    running = serve_ca(ca_settings, store, tmp_path)
    yield running
    stop_process(running.process)


@pytest.fixture
def own_service_server(own_ca_server, service_database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    """conftest's per-test ``service_server`` under another name, talking to ``own_ca_server``."""
    running = start_service(own_ca_server, service_database_url, tmp_path)
    yield running
    stop_process(running.process)


@pytest.fixture
def own_service_database_url(ca_server, tmp_path: Path) -> Iterator[str]:
    """An empty database for a service of one test's own beside the module's CA, on that CA's backend."""
    with _empty_database(backend_of(ca_server), tmp_path, "svc") as url:
        yield url


def unique_person(name: str = "山田 太郎") -> dict[str, str]:
    """As tests.helpers.PERSON, a person no other test on the module's servers is: the same name, born on a
    day of their own (the person key is name, birth and address, so two tests' cards never supersede each
    other's phones)."""
    day = uuid.uuid4().int % 20000
    return {"name": name, "date_of_birth": (dt.date(1940, 1, 1) + dt.timedelta(days=day)).isoformat(), "gender": "1",
            "address": f"東京都千代田区千代田1-{uuid.uuid4().int % 9000 + 1}"}


def heisei_person() -> tuple[dict[str, str], str]:
    """As tests.helpers.PERSON (name and address), born on a day of their own in the Heisei era (the person key
    is name, birth and address: no other test's person on the module's servers), and that birth as the card
    prints it, in the era (平成2年1月2日). The era year is counted by hand, an oracle independent of the
    service's japanera: every day drawn lies within 平成 (1990-01-02 .. 2005-11)."""
    born = dt.date(1990, 1, 2) + dt.timedelta(days=uuid.uuid4().int % 5800)
    era = f"平成{born.year - 1988}年{born.month}月{born.day}日"
    return {**unique_person(), "date_of_birth": born.isoformat(), "address": "東京都千代田区千代田1-1"}, era
