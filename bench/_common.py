"""Shared pieces of the benchmarks: temp dirs and child processes that are always cleaned up,
a CA store made through ca_mock's own API, and the files the OpenSSL peers need.

The benchmarks print figures; they are not tests. Run them from the repository root with the
project's virtualenv, e.g. ``.venv/bin/python bench/ocsp_throughput.py --help``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jpki_common import keys

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
JPKI_CA = str(Path(sys.executable).with_name("jpki-ca"))
UVICORN = str(Path(sys.executable).with_name("uvicorn"))

# openssl's index.txt reason spelling (apps/ca.c, compared case-insensitively) for RFC 5280 names.
OPENSSL_REASONS = {
    "unspecified": "unspecified", "keyCompromise": "keyCompromise", "cACompromise": "CACompromise",
    "affiliationChanged": "affiliationChanged", "superseded": "superseded",
    "cessationOfOperation": "cessationOfOperation", "certificateHold": "certificateHold",
}


class Resources(contextlib.AbstractContextManager):
    """Temp dirs and child processes, all removed on exit: normal end, exception, Ctrl-C or SIGTERM."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.dirs: list[Path] = []
        self.processes: list[subprocess.Popen] = []
        self._old_term = None

    def __enter__(self) -> Resources:
        def _on_term(signum, _frame):
            raise SystemExit(128 + signum)

        self._old_term = signal.signal(signal.SIGTERM, _on_term)
        return self

    def tempdir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"jpki-bench-{prefix}-"))
        self.dirs.append(path)
        return path

    def spawn(self, args: list[str], log: Path | None = None, env: dict | None = None,
              **kw) -> subprocess.Popen:
        """Start a child in its own process group (so its own workers go with it)."""
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            process = subprocess.Popen(args, stdout=out,
                                       stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                       env=env, process_group=0, **kw)
        finally:
            if log:
                out.close()
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 10) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Anything left in the child's own group (uvicorn workers, openssl -multi children).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process in self.processes:
            self.processes.remove(process)

    def __exit__(self, *exc) -> None:
        for process in list(self.processes):
            self.stop(process)
        for path in self.dirs:
            if self.keep:
                print(f"(kept {path})", file=sys.stderr)
            else:
                shutil.rmtree(path, ignore_errors=True)
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}: "
                               f"{log.read_text()[-2000:] if log and log.exists() else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {ssl}; {load_line()}"


def load_line() -> str:
    """The machine is shared: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _tree(pid: int) -> list[int]:
    """A live process and all its live descendants (uvicorn's worker processes, say), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # fields[1] is ppid (after the command name).
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and all its live descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def tree_rss_mib(pid: int) -> float:
    """Resident memory (VmRSS) of a live process and all its live descendants, MiB."""
    total = 0.0
    for member in _tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), 0.0)
    return total


# -- the CA store ------------------------------------------------------------------------------
def make_ca(data_dir: Path, public_url: str):
    """A fresh, initialised CA store under ``data_dir`` (SQLite), through ca_mock's own API."""
    from ca_mock.authorities.service import initialise
    from ca_mock.db import migrate
    from ca_mock.settings import CASettings
    from jpki_common.store import Store

    settings = CASettings(data_dir=data_dir, public_url=public_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    migrate(store.url)
    initialise(store, settings)
    return store, settings


def csr_pem(key=None) -> str:
    """A PKCS#10 request on a fresh P-256 key (cheap; the CA accepts RSA-2048+ or P-256)."""
    return keys.csr_pem(key or ec.generate_private_key(ec.SECP256R1()), "bench")


def run(main) -> None:
    """Run a benchmark's ``main``; Ctrl-C exits 130 after the clean-up has run."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; temp dirs and child processes removed", file=sys.stderr)
        sys.exit(130)


PERSON = {"name": "山田 太郎", "date_of_birth": "1990-01-02", "gender": "1",
          "address": "東京都千代田区千代田1-1"}


def export_authority(store, name: str, out_dir: Path) -> tuple[Path, Path]:
    """Certificate (PEM) and private key (PEM) of one row of the ``authorities`` table."""
    from sqlalchemy import select

    from ca_mock.authorities.models import Authority

    with store.sessions() as session:
        row = session.scalars(select(Authority).where(Authority.name == name)).one()
        cert_der, key_pem = row.certificate_der, row.private_key_pem
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    cert_path.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return cert_path, key_path


def openssl_serial(serial: int | str) -> str:
    """The spelling of a serial in index.txt that openssl looks up: BN_bn2hex (upper case, even length)."""
    value = int(serial, 16) if isinstance(serial, str) else serial
    text = format(value, "X")
    return "0" + text if len(text) % 2 else text


def openssl_time(value: dt.datetime) -> str:
    value = value.astimezone(dt.UTC)
    return value.strftime("%y%m%d%H%M%SZ") if value.year < 2050 else value.strftime("%Y%m%d%H%M%SZ")


def index_line(serial: int | str, not_after: dt.datetime, subject: str, revoked_at: dt.datetime | None = None,
               reason: str | None = None) -> str:
    """One line of openssl's index.txt: status, expiry, revocation[,reason], serial, file, subject."""
    if revoked_at is None:
        return f"V\t{openssl_time(not_after)}\t\t{openssl_serial(serial)}\tunknown\t{subject}\n"
    revocation = openssl_time(revoked_at) + (f",{OPENSSL_REASONS[reason]}" if reason else "")
    return f"R\t{openssl_time(not_after)}\t{revocation}\t{openssl_serial(serial)}\tunknown\t{subject}\n"


def write_index(path: Path, lines) -> None:
    """Write index.txt (and index.txt.attr: unique_subject = no, openssl's cheapest setting)."""
    with open(path, "w") as out:
        out.writelines(lines)
    Path(f"{path}.attr").write_text("unique_subject = no\n")


def peak_rss_mib(rusage) -> float:
    return rusage.ru_maxrss / 1024  # Linux: KiB


GNU_TIME = "/usr/bin/time"


def run_measured(args: list[str], resources: Resources, env: dict | None = None,
                 timeout: float = 3600) -> tuple[float, float, int, str, float]:
    """Run a child to completion: (wall seconds, its peak RSS in MiB, exit code, output, CPU seconds).

    The peak RSS comes from GNU time (``%M``), which forks the command from its own small process.
    Taken from this process with wait4 instead, it would include this Python's whole RSS: Linux
    carries the high-water mark of the forked copy over the exec.
    """
    fd, name = tempfile.mkstemp(prefix="jpki-bench-out-")
    os.close(fd)
    log, rss_file = Path(name), Path(name + ".rss")
    use_time = Path(GNU_TIME).exists()
    command = [GNU_TIME, "-f", "%M %U %S", "-o", str(rss_file), *args] if use_time else args
    try:
        start = time.perf_counter()
        process = resources.spawn(command, log=log, env=env)
        deadline = start + timeout
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                resources.stop(process)
                raise RuntimeError(f"{args[0]} took longer than {timeout} s")
            time.sleep(0.002)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        resources.processes.remove(process)
        cpu = rusage.ru_utime + rusage.ru_stime
        if use_time:
            kib, user, system = rss_file.read_text().strip().splitlines()[-1].split()
            peak, cpu = int(kib) / 1024, float(user) + float(system)
        else:  # pragma: no cover - overstated, see above
            peak = peak_rss_mib(rusage)
        return wall, peak, process.returncode, log.read_text(errors="replace"), cpu
    finally:
        log.unlink(missing_ok=True)
        rss_file.unlink(missing_ok=True)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(output: str) -> dict:
    """req/s, p50/p99 (ms), request count and errors out of ``wrk --latency`` output."""
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        return float(match.group(1)) * _WRK_UNITS[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad = re.search(r"BAD_BODIES (\d+)", output)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": latency("50"), "p99_ms": latency("99"),
        "requests": int(total.group(1)) if total else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "bad_bodies": int(bad.group(1)) if bad else 0,
    }


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-pct / 100 * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]
