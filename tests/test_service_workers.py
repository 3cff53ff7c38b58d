"""``jpki-service serve --workers 2``: several server processes on one database, as replicas would be.

Nothing is kept per process (rate limits, sessions, challenges and the CA queue are in the
database), so any worker may answer any request and every worker's background dispatcher may
carry any recorded change. Checked on SQLite and PostgreSQL against the real CA process.
"""
from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import start_service, stop_process
from tests.newcomer import child_processes
from tests.service_helpers import operator_client
from tests.test_call_centre_api import _pems, _registered
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e


def _live_workers(pid: int) -> list[int]:
    """uvicorn's worker processes of ``pid`` (multiprocessing spawns them; its resource tracker is not one)."""
    workers = []
    for child in child_processes(pid):
        try:
            if _alive(child) and b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue  # gone meanwhile
    return workers


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent's wait() is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _answered_connections(port: int, workers: list[int]) -> dict[int, int]:
    """For each worker, the established connections to ``port`` it holds (read from /proc): an accepted
    connection lives in the one process that accepted it, and that process answers what comes on it."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                established.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in workers:
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                count += os.readlink(fd) in established
            except OSError:
                continue  # closed meanwhile
        held[pid] = count
    return held


@pytest.fixture
def two_worker_service(ca_server, service_database_url, tmp_path):
    running = start_service(ca_server, service_database_url, tmp_path, "--workers", "2")
    yield running
    stop_process(running.process)


def test_two_workers_serve_register_suspend_and_stop_together(ca_server, two_worker_service):
    service = two_worker_service
    wait_for(lambda: len(_live_workers(service.process.pid)) == 2)
    workers = _live_workers(service.process.pid)

    _card, phone, registered = _registered(ca_server, service)
    assert registered["ca_sync"] == "done" and registered["state"] == "active"
    pems = _pems(registered)

    with operator_client(service, "wanda", "operator") as operator:
        # Many requests over fresh connections, so both workers answer some: each sees the same data.
        for _ in range(6):
            found = operator.post("/api/v1/operator/registrations/search",
                                  json={"code": registered["suspension_code"]},
                                  headers={"Connection": "close"})
            assert found.status_code == 200, found.text
            assert [r["case_reference"] for r in found.json()["results"]] == [phone.case_reference]
        # Which worker answered: keep-alive connections, each answered once and kept open, until each
        # worker holds one (the kernel hands a new connection to whichever worker accepts it first).
        port = urlsplit(service.url).port
        with ExitStack() as stack:
            for _ in range(60):
                client = stack.enter_context(httpx.Client(base_url=service.url, headers=operator.headers,
                                                          timeout=30))
                found = client.post("/api/v1/operator/registrations/search",
                                    json={"code": registered["suspension_code"]})
                assert found.status_code == 200, found.text
                assert [r["case_reference"] for r in found.json()["results"]] == [phone.case_reference]
                held = _answered_connections(port, workers)
                if all(held.values()):
                    break
            assert sorted(held) == sorted(workers), held
            assert all(held.values()), f"answered connections per worker: {held}"
        suspended = operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend",
                                  json={"reason": "lost", "caller": "self", "ticket": "T-77"})
    assert suspended.status_code in (200, 202), suspended.text
    assert suspended.json()["state"] == "suspended"
    for pem in pems.values():
        wait_for(lambda pem=pem: ocsp_status(ca_server.url, pem) == "revoked:certificateHold")

    service.process.send_signal(signal.SIGTERM)
    service.process.wait(timeout=30)
    wait_for(lambda: not any(_alive(p) for p in workers), timeout=30)
