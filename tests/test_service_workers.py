"""``jpki-service serve --workers 2``: several server processes on one database, as replicas would be.

Nothing is kept per process (rate limits, sessions, challenges and the CA queue are in the
database), so any worker may answer any request and every worker's background dispatcher may
carry any recorded change. Checked on SQLite and PostgreSQL against the real CA process.
"""
from __future__ import annotations

import signal
from pathlib import Path

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
            assert [r["registration_id"] for r in found.json()["results"]] == [phone.registration_id]
        suspended = operator.post(f"/api/v1/operator/registrations/{phone.registration_id}/suspend",
                                  json={"reason": "lost", "caller": "self", "ticket": "T-77"})
    assert suspended.status_code in (200, 202), suspended.text
    assert suspended.json()["state"] == "suspended"
    for pem in pems.values():
        wait_for(lambda pem=pem: ocsp_status(ca_server.url, pem) == "revoked:certificateHold")

    service.process.send_signal(signal.SIGTERM)
    service.process.wait(timeout=30)
    wait_for(lambda: not any(_alive(p) for p in workers), timeout=30)
