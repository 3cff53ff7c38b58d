"""A newcomer's shell: a fresh folder holding this repository's ``.venv`` and ``docs`` and nothing else,
``jpki-service serve`` run there on the embedded defaults (its data under ``./var``, the mock CA started
with it) by :meth:`Newcomer.serve` or by the page's own commands, the documented commands run with bash,
and both servers killed and started again. The port is free, never the documented 8000: the shell's
``PORT`` says which (the walkthrough's port variable), and :meth:`Newcomer.localise` puts it in place of
the documented ports where a page prints them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, stop_process
from tests.helpers import openssl_ocsp

REPO = Path(__file__).resolve().parent.parent
DOC_SERVICE, DOC_CA = "127.0.0.1:8000", "127.0.0.1:8100"


def _free_port_pair() -> int:
    """A port P with P + 100 free too (the service and its embedded CA)."""
    for _ in range(50):
        port = free_port()
        if port + 100 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 100))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


class Newcomer:
    """A shell in a fresh checkout-like folder: ``.venv`` and ``docs`` of this repository, nothing else."""

    def __init__(self, folder: Path, replacements: dict[str, str] | None = None, **environment: str) -> None:
        self.folder = folder
        self.replacements = replacements or {}  # more documented values to replace, e.g. database names
        self._sessions: list[int] = []  # every command's process group: what it left running in the background
        (folder / ".venv").symlink_to(REPO / ".venv")
        (folder / "docs").symlink_to(REPO / "docs")
        self.port = _free_port_pair()
        self.service_url = f"http://127.0.0.1:{self.port}"
        self.ca_url = f"http://127.0.0.1:{self.port + 100}"
        # JPKI_LANG is kept: the docs show the programs' English (tests/conftest.py sets it).
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("JPKI_") or key == "JPKI_LANG"}
        self.env.update(PATH=f"{folder / '.venv' / 'bin'}:{os.environ['PATH']}", HOME=str(folder),
                        JPKI_SERVICE_URL=self.service_url, JPKI_OPERATOR_SERVICE=self.service_url,
                        PORT=str(self.port), **environment)
        self.server: subprocess.Popen | None = None

    def serve(self) -> None:
        log = open(self.folder / "serve.log", "a")
        self.server = subprocess.Popen(["jpki-service", "serve", "--port", str(self.port)], cwd=self.folder,
                                       env=self.env, stdout=log, stderr=log)
        with httpx.Client(timeout=2) as client:  # one client and one connection pool for the polls
            for _ in range(900):
                if self.server.poll() is not None:
                    raise RuntimeError(f"jpki-service serve stopped: {(self.folder / 'serve.log').read_text()}")
                try:
                    if client.get(f"{self.service_url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError("jpki-service serve did not answer within 90 s")

    def kill(self) -> None:
        """SIGKILL the service and its CA: no shutdown code runs."""
        assert self.server is not None
        for pid in [*child_processes(self.server.pid), self.server.pid]:
            os.kill(pid, signal.SIGKILL)
        self.server.wait()

    def kill_background(self) -> None:
        """SIGKILL what the commands left running in the background (a ``jpki-service serve ... &`` and the
        CA it started, in the same process group): no shutdown code runs. Returns once both ports refuse."""
        for session in self._sessions:
            try:
                os.killpg(session, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._sessions.clear()
        for url in (self.service_url, self.ca_url):
            for _ in range(100):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                except httpx.TransportError:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{url} still answers after SIGKILL")

    def stop(self) -> None:
        for session in self._sessions:  # what the commands left running in the background
            try:
                os.killpg(session, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.server is not None and self.server.poll() is None:
            ca = child_processes(self.server.pid)
            stop_process(self.server)
            for pid in ca:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def localise(self, text: str) -> str:
        """Text of the docs with the documented ports (and ``replacements``) replaced by this run's."""
        text = text.replace(DOC_SERVICE, self.service_url[7:]).replace(DOC_CA, self.ca_url[7:])
        text = text.replace("--port 8000", f"--port {self.port}").replace("--port 8100", f"--port {self.port + 100}")
        for documented, ours in self.replacements.items():
            text = text.replace(documented, ours)
        return text

    def run(self, command: str) -> subprocess.CompletedProcess:
        """Run ``command`` with bash, as one line pasted into the same terminal: what it exports stays set
        for the next commands, what it starts with ``&`` keeps running until :meth:`stop`."""
        exported = self.folder / ".exported-environment"
        script = f"{self.localise(command)}\n__status=$?; env -0 > {exported}; exit $__status"
        process = subprocess.Popen(["bash", "-c", script], cwd=self.folder, env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._sessions.append(process.pid)
        stdout, stderr = process.communicate(timeout=300)
        if exported.exists():
            pairs = (entry.split("=", 1) for entry in exported.read_text().split("\0") if "=" in entry)
            self.env = {key: value for key, value in pairs if not key.startswith(("BASH_FUNC_", "__status"))}
            exported.unlink()
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def assert_healthy(self, after: str) -> None:
        for url in (self.service_url, self.ca_url):
            response = httpx.get(f"{url}/healthz", timeout=10)
            assert response.status_code == 200, f"{url} unhealthy after `{after}`: {response.text}"

    def certificate_pem(self, serial: str) -> str:
        token = (self.folder / "var" / "ca" / "api-token").read_text().strip()
        response = httpx.get(f"{self.ca_url}/api/v1/certificates/{serial}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["certificate_pem"]

    def ocsp(self, serial: str) -> str:
        return openssl_ocsp(self.ca_url, self.certificate_pem(serial), self.folder / "ocsp" / serial)
