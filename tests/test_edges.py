"""Edges (issue 13, item 6): request heads bounded in size, count and time on both servers, data folders and logs
owner-only, console templates given only what they show, /docs and /metrics as settings, problem documents in the
request's terms (docs/security.md, "Edges: limits, files, exposure")."""
from __future__ import annotations

import logging
import os
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator
from sqlalchemy.exc import IntegrityError

from jpki_common.http import install_problem_handlers
from jpki_common.http_server import ShortFailures
from jpki_common.private_files import private_folder, private_log
from jpki_common.problems import pem_reason
from tests.conftest import free_port, start_service, stop_process
from tests.helpers import issue_body

HEAD_TIMEOUT = 2  # seconds; the default is 10 (JPKI_HTTP_HEAD_TIMEOUT_SECONDS)
# The edges do not depend on the database: one backend is enough.
ONE_BACKEND = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def edged(monkeypatch, ca_server_env, ca_server, service_database_url, tmp_path):
    """Both servers, with a short head timeout and their documentation and metrics hidden."""
    service = start_service(ca_server, service_database_url, tmp_path, settings={
        "JPKI_HTTP_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT), "JPKI_EXPOSE_DOCS": "false",
        "JPKI_EXPOSE_METRICS": "false"})
    yield {"service": (service.url, service.process.pid), "CA": (ca_server.url, ca_server.process.pid)}, ca_server
    stop_process(service.process)


@pytest.fixture
def ca_server_env(monkeypatch):
    """Settings of the CA process the ca_server fixture starts next (it passes the environment on)."""
    monkeypatch.setenv("JPKI_CA_HTTP_HEAD_TIMEOUT_SECONDS", str(HEAD_TIMEOUT))
    monkeypatch.setenv("JPKI_CA_EXPOSE_DOCS", "false")


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _exchange(url: str, head: bytes, chunk: int = 8192) -> bytes:
    """Send ``head`` in pieces, stopping as soon as the server answers; everything it sends until it closes."""
    answer = b""
    with socket.create_connection(_address(url), timeout=30) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start:start + chunk])
                if select.select([sock], [], [], 0.02)[0]:
                    break
            while data := sock.recv(65536):
                answer += data
        except (BrokenPipeError, ConnectionResetError):
            pass
    return answer


def _vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@ONE_BACKEND
def test_oversized_heads_are_refused_431_on_both_servers(edged):
    servers, _ca = edged
    for name, (url, _pid) in servers.items():
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
        answer = _exchange(url, big)
        assert answer.startswith(b"HTTP/1.1 431 "), (name, answer[:200])
        assert b"over 16384 bytes" in answer
        many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"
        answer = _exchange(url, many)
        assert answer.startswith(b"HTTP/1.1 431 "), (name, answer[:200])
        assert b"at most 100 headers" in answer
        # Within the limits: answered as before (100 headers, 15 KiB).
        fine = {f"x-h{i}": "v" for i in range(90)} | {"x-fill": "a" * 14000}
        assert httpx.get(f"{url}/healthz", headers=fine).status_code == 200, name


@ONE_BACKEND
def test_unfinished_heads_are_cut_off_without_the_process_growing(edged):
    servers, _ca = edged
    for name, (url, pid) in servers.items():
        httpx.get(f"{url}/healthz")
        before = _vm_rss_kib(pid)
        started = time.monotonic()
        # 16 clients send half a head (8 KiB) and stall; 4 more push 1 MiB of one header, slowly.
        stalled = [socket.create_connection(_address(url), timeout=30) for _ in range(16)]
        for sock in stalled:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 8192)
        pushed = [_exchange(url, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20), chunk=4096)
                  for _ in range(4)]
        assert all(answer.startswith(b"HTTP/1.1 431 ") for answer in pushed), name
        idle = socket.create_connection(_address(url), timeout=30)  # connects, sends nothing
        answers = []
        for sock in [*stalled, idle]:
            answer = b""
            while data := sock.recv(65536):
                answer += data
            answers.append(answer)
            sock.close()
        elapsed = time.monotonic() - started
        after = _vm_rss_kib(pid)
        print(f"{name}: 16 stalled heads + 4x1 MiB headers + 1 idle connection: cut off after {elapsed:.1f} s, "
              f"VmRSS {before} KiB -> {after} KiB ({(after - before) / 1024:+.1f} MiB)")
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers[:-1]), (name, answers[0][:200])
        assert answers[-1] == b"", name  # nothing asked, nothing answered: just closed
        assert elapsed < HEAD_TIMEOUT + 15, name  # closed by the server, not by the client's 30 s timeout
        assert after - before < 8 * 1024, (name, before, after)
        assert httpx.get(f"{url}/healthz").status_code == 200, name


@ONE_BACKEND
def test_docs_and_metrics_hidden_and_problems_in_the_requests_terms(edged):
    servers, ca = edged
    for name, (url, _pid) in servers.items():
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 404, (name, path)
    assert httpx.get(f"{servers['service'][0]}/metrics").status_code == 404
    with ca.client(admin=True) as client:  # card certificates: the administrator's credential
        garbage = client.post("/api/v1/certificates", json=issue_body("card-authentication", "op-edge",
                                                                      csr_pem="not a request"))
        not_an_object = client.post("/api/v1/certificates", json=[1, 2])
    for response in (garbage, not_an_object):
        assert response.status_code == 422
        problem = response.json()
        told = str({key: value for key, value in problem.items() if key != "type"})  # type: the problem's URI
        for internal in ("pydantic", "https://", "ParseError", "MalformedFraming", "'input'", "'ctx'", "'url'"):
            assert internal not in told, (internal, told)
    assert "csr_pem is not a PEM PKCS#10 request: no PEM block" in garbage.json()["detail"]


@ONE_BACKEND
def test_docs_and_metrics_are_served_by_default(ca_server):
    assert httpx.get(f"{ca_server.url}/openapi.json").status_code == 200


class _Body(BaseModel):
    count: int
    name: str

    @field_validator("name")
    @classmethod
    def short(cls, value: str) -> str:
        if len(value) > 3:
            raise ValueError("at most 3 characters")
        return value


def test_validation_details_carry_no_library_internals():
    app = FastAPI()
    install_problem_handlers(app, logging.getLogger("test"))

    @app.post("/x")
    def endpoint(body: _Body) -> dict:
        return {}

    with TestClient(app) as client:
        answer = client.post("/x", json={"count": "many", "name": "long name"}).json()
    assert answer["errors"] == [{"field": "body.count", "message": "Input should be a valid integer, unable to "
                                                                   "parse string as an integer"},
                                {"field": "body.name", "message": "at most 3 characters"}]
    assert "pydantic" not in str(answer) and "https://errors" not in str(answer) and "many" not in str(answer)
    try:
        from cryptography import x509
        x509.load_pem_x509_csr(b"junk")
    except ValueError as exc:
        assert pem_reason(exc, "CERTIFICATE REQUEST") == ("no PEM block (-----BEGIN CERTIFICATE REQUEST----- ... "
                                                          "-----END CERTIFICATE REQUEST-----)")


def test_logged_failures_carry_no_sql_nor_parameters(capsys):
    log = logging.getLogger("test_edges.short")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ShortFailures())
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise IntegrityError("INSERT INTO people (name) VALUES (?)", ("Yamada Taro",), Exception("UNIQUE failed"))
        except IntegrityError:
            log.exception("storing failed")
    finally:
        log.removeHandler(handler)
    written = capsys.readouterr().err
    assert written.startswith("storing failed: IntegrityError (Exception) at ") and "test_edges.py:" in written
    assert "INSERT" not in written and "Yamada" not in written and "Traceback" not in written


def test_console_templates_get_only_what_they_show(monkeypatch):
    from starlette.requests import Request

    from jpki_service.console import views

    seen: dict = {}

    def capture(request, template, context, status_code=200):
        seen.update(context)
        return None

    monkeypatch.setattr(views.templates, "TemplateResponse", capture)
    views.page(Request({"type": "http", "method": "GET", "path": "/console/login", "headers": []}), "login.html",
               error="x")
    assert set(seen) == {"who", "nav", "lang", "error"}


def test_private_folders_and_logs_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        folder = private_folder(tmp_path / "a" / "b" / "c")
        with private_log(folder / "x.log") as log:
            log.write("line\n")
    finally:
        os.umask(previous)
    for made in (tmp_path / "a", tmp_path / "a" / "b", folder):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    assert stat.S_IMODE((folder / "x.log").stat().st_mode) == 0o600


def test_the_embedded_setup_makes_its_folders_and_log_owner_only(tmp_path):
    data = tmp_path / "var"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("JPKI_")}
    with open(tmp_path / "serve.log", "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "jpki_service", "serve", "--data", str(data), "--port",
                                    str(port)], env=env, stdout=out, stderr=out, preexec_fn=lambda: os.umask(0o022))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (data, data / "ca", data / "ca.log")}
        assert modes == {"var": 0o700, "ca": 0o700, "ca.log": 0o600}
    finally:
        stop_process(process)


@ONE_BACKEND
def test_the_limits_reach_every_worker(ca_server, service_database_url, tmp_path):
    service = start_service(ca_server, service_database_url, tmp_path, "--workers", "2",
                            settings={"JPKI_HTTP_MAX_HEADERS": "20"})
    try:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n"
        for _ in range(8):  # new connections: the kernel spreads them over both workers
            answer = _exchange(service.url, head)
            assert answer.startswith(b"HTTP/1.1 431 ") and b"at most 20 headers" in answer, answer[:200]
        assert httpx.get(f"{service.url}/healthz").status_code == 200
    finally:
        stop_process(service.process)


_TINY_SERVER = """
import sys
from jpki_common import http_server

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

http_server.run(app, http_server.HttpServerSettings(http_max_connections=2), port=int(sys.argv[1]),
                log_level="warning")
"""


def test_one_connection_over_the_cap_is_answered_503_and_closed(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "tiny.log", "w") as out:
        process = subprocess.Popen([sys.executable, "-c", _TINY_SERVER, str(port)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "tiny.log").read_text()
            time.sleep(0.2)
        held = [socket.create_connection(_address(url), timeout=30) for _ in range(2)]
        time.sleep(0.3)
        assert _exchange(url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        held.pop().close()
        time.sleep(0.3)
        assert _exchange(url, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        for sock in held:
            sock.close()
    finally:
        stop_process(process)
