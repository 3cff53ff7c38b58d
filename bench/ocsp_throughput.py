"""OCSP throughput and latency: our responder (`jpki-ca serve`) versus `openssl ocsp -index`.

Both answer for the same certificates (phone-authentication certificates of the 'auth' CA, some
revoked), signed by the same delegated OCSP signer, and are loaded by `wrk` with the same settings
and the same nonce-less DER requests (SHA-1 CertID, as pyHanko asks), round-robin.

Before loading, every request is sent once to each responder and the answer is checked: successful,
signed by the OCSP signer, for the right serial, with the status (and reason) in the CA's store.

Variants measured:
  ours            one `jpki-ca serve` process, keep-alive connections (what wrk does by default)
  ours-close      the same server, but every request on a new TCP connection (Connection: close),
                  the way openssl's responder works (OpenSSL 3.0's responder never keeps a connection)
  ours-workersN   `jpki-ca serve --workers N`
  openssl         `openssl ocsp -index ... -port P` (one process; it signs every response)
  openssl-multiN  the same with `-multi N` (only with --openssl-multi N)

Example: .venv/bin/python bench/ocsp_throughput.py --certs 1000 --duration 20
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509 import ocsp  # noqa: E402

REASONS = ("keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation")

LUA = r"""
-- Round-robin POST of pre-built OCSP requests; counts answers that are not a signed OCSP response.
local bodies_file = "%(bodies)s"
local path = "%(path)s"
local close = %(close)s
local requests = {}
local counter = 0
bad = 0
local threads = {}
local next_id = 0

-- wrk.resolve normally test-connects to each address and closes the socket without sending
-- anything; OpenSSL 3.0's responder never recovers from such an empty connection (it spins at
-- 100%% CPU re-reading it). Resolve without the test connection, for every variant alike.
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup(host, service)
end

local function unhex(s)
  return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(bodies_file) do
    local headers = { ["Content-Type"] = "application/ocsp-request" }
    if close then headers["Connection"] = "close" end
    table.insert(requests, wrk.format("POST", path, headers, unhex(line)))
  end
  -- Threads start at different places in the list.
  counter = (thread_id * 7919) %% #requests
end

function request()
  counter = counter %% #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  -- An unsuccessful OCSP response is 5 bytes; a signed one with the signer certificate is > 1 KB.
  if status ~= 200 or #body < %(min_body)d then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("bad") or 0) end
  io.write(string.format("BAD_BODIES %%d\n", total))
end
"""


# -- setup ---------------------------------------------------------------------------------------
def build_store(data_dir: Path, port: int, count: int, revoked_fraction: float):
    from ca_mock.certificates.schemas import IssueRequest
    from ca_mock.certificates.service import change_status, issue_certificate
    from ca_mock.certificates.status_rules import StatusAction

    store, settings = common.make_ca(data_dir, f"http://127.0.0.1:{port}")
    card = issue_certificate(store, settings, IssueRequest(
        operation_id="card", profile="card-signature", csr_pem=common.csr_pem(), person=common.PERSON))
    serials = []
    for i in range(count):
        issued = issue_certificate(store, settings, IssueRequest(
            operation_id=f"issue-{i}", profile="phone-authentication", csr_pem=common.csr_pem(),
            card_serial=card["serial"]))
        serials.append(issued["serial"])
    step = max(1, round(1 / revoked_fraction)) if revoked_fraction > 0 else 0
    for n, serial in enumerate(serials[::step] if step else []):
        change_status(store, settings, serial, StatusAction.REVOKE, f"revoke-{n}", REASONS[n % len(REASONS)])
    return store, settings


def certificates_of(store, authority: str) -> list[dict]:
    from sqlalchemy import select

    from ca_mock.certificates.models import IssuedCertificate

    with store.sessions() as session:
        rows = session.scalars(
            select(IssuedCertificate).where(IssuedCertificate.authority == authority)).all()
        return [{"serial": r.serial, "der": r.der, "status": r.status, "reason": r.reason,
                 "revoked_at": r.revoked_at, "not_after": r.not_after} for r in rows]


def ocsp_request(cert_der: bytes, issuer: x509.Certificate) -> bytes:
    cert = x509.load_der_x509_certificate(cert_der)
    return ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)


# -- checking answers ------------------------------------------------------------------------------
def post(port: int, path: str, body: bytes, timeout: float = 10) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/ocsp-request"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} from port {port}")
        return data
    finally:
        connection.close()


def check_answer(der: bytes, cert: dict, signer: x509.Certificate) -> ocsp.OCSPResponse:
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise AssertionError(f"serial {cert['serial']}: {response.response_status}")
    if response.serial_number != int(cert["serial"], 16):
        raise AssertionError(f"serial {cert['serial']}: answer is for {response.serial_number:x}")
    expected = ocsp.OCSPCertStatus.GOOD if cert["status"] == "good" else ocsp.OCSPCertStatus.REVOKED
    if response.certificate_status is not expected:
        raise AssertionError(f"serial {cert['serial']}: {response.certificate_status},"
                             f" store says {cert['status']}")
    if expected is ocsp.OCSPCertStatus.REVOKED and cert["reason"]:
        got = response.revocation_reason.value if response.revocation_reason else None
        if got != cert["reason"]:
            raise AssertionError(f"serial {cert['serial']}: reason {got}, store says {cert['reason']}")
    key = signer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                   response.signature_hash_algorithm)
    else:
        key.verify(response.signature, response.tbs_response_bytes,
                   ec.ECDSA(response.signature_hash_algorithm))
    return response


def verify_all(name: str, port: int, path: str, certs: list[dict], requests: list[bytes],
               signer: x509.Certificate, setup_done: dt.datetime | None = None) -> str:
    revoked = pre_produced = 0
    for cert, body in zip(certs, requests, strict=True):
        response = check_answer(post(port, path, body), cert, signer)
        revoked += cert["status"] != "good"
        if setup_done is not None and response.produced_at_utc <= setup_done:
            pre_produced += 1
    note = (f"{len(certs)} answers correct ({revoked} revoked, {len(certs) - revoked} good),"
            f" signatures verified")
    if setup_done is not None:
        note += f"; {pre_produced} pre-produced (producedAt before the server started)"
    print(f"  {name}: {note}", flush=True)
    return note


# -- servers ------------------------------------------------------------------------------------------
class Server:
    """One responder under test: its process (and its workers), port and URL path."""

    def __init__(self, res: common.Resources, label: str, path: str, start) -> None:
        self.res, self.label, self.path, self._start = res, label, path, start
        self.port = common.free_port()
        self.process = start(self.port)
        self.restarts = 0

    def restart(self) -> None:
        self.res.stop(self.process)
        self.port = common.free_port()
        self.process = self._start(self.port)
        self.restarts += 1

    def stop(self) -> None:
        self.res.stop(self.process)


def _wait_healthy(port: int, process, log: Path) -> None:
    common.wait_for_port(port, process, log=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the app (every worker's) is up: /healthz answers
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no /healthz answer on port {port}: {log.read_text()[-2000:]}")


def start_ours(res: common.Resources, data: Path, work: Path, workers: int, port: int):
    log = work / f"ours-{port}.log"
    env = {**os.environ, "JPKI_CA_DATA_DIR": str(data)}
    env.pop("JPKI_CA_DATABASE_URL", None)
    args = [common.JPKI_CA, "--data", str(data), "serve", "--port", str(port), "--workers", str(max(workers, 1))]
    process = res.spawn(args, log=log, env=env, cwd=common.REPO)
    _wait_healthy(port, process, log)
    time.sleep(0.5 if workers <= 1 else 2.0)
    return process


def start_openssl(res: common.Resources, work: Path, multi: int, probe: bytes, port: int):
    log = work / f"openssl-{port}.log"
    args = ["openssl", "ocsp", "-index", str(work / "index.txt"), "-port", str(port),
            "-rsigner", str(work / "auth-ocsp.pem"), "-rkey", str(work / "auth-ocsp.key"),
            "-CA", str(work / "auth.pem"), "-ndays", "1"]
    if multi > 1:
        args += ["-multi", str(multi)]
    process = res.spawn(args, log=log)
    # Not wait_for_port: an empty connection (connect, close) sends OpenSSL 3.0's responder into a
    # busy loop that never answers again. Wait for its "ACCEPT" line, then for a real answer.
    deadline = time.monotonic() + 30
    while "ACCEPT" not in (log.read_text(errors="replace") if log.exists() else ""):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"openssl ocsp did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    time.sleep(0.3 if multi <= 1 else 1.0)
    while True:
        try:
            post(port, "/", probe, timeout=5)
            return process
        except (OSError, RuntimeError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


CEILING_APP = """
BODY = b"x" * %d
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/ocsp-response"), (b"content-length", b"%d")]})
    await send({"type": "http.response.body", "body": BODY})
"""


def start_ceiling(res: common.Resources, work: Path, size: int, port: int):
    """A do-nothing ASGI app under the same uvicorn: the most one Python process could serve."""
    (work / "ceiling_app.py").write_text(CEILING_APP % (size, size))
    log = work / f"ceiling-{port}.log"
    process = res.spawn([common.UVICORN, "ceiling_app:app", "--app-dir", str(work), "--host", "127.0.0.1",
                         "--port", str(port), "--log-level", "warning"], log=log)
    common.wait_for_port(port, process, log=log)
    time.sleep(0.5)
    return process


# -- load ----------------------------------------------------------------------------------------------
def run_wrk(args, server: Server, bodies: Path, work: Path, probe: bytes, close: bool = False,
            label: str | None = None, check_body: bool = True) -> dict:
    """Warm up; check the server still answers (restart it if not); measure with wrk and server CPU."""
    label = label or server.label
    script = work / f"wrk-{label}.lua"
    script.write_text(LUA % {"bodies": bodies, "path": server.path, "close": "true" if close else "false",
                             "min_body": 200 if check_body else 0})

    def wrk(seconds: int) -> str:
        return subprocess.run(
            ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s", "--latency",
             "-s", str(script), "--timeout", "10s", f"http://127.0.0.1:{server.port}{server.path}"],
            capture_output=True, text=True, check=True).stdout

    if args.warmup > 0:
        wrk(args.warmup)
        try:
            post(server.port, server.path, probe, timeout=3)
        except OSError:
            # wrk closing its sockets at the end of a run can leave an empty connection in the
            # backlog; OpenSSL 3.0's responder then spins forever (see the Lua script).
            print(f"  ({label}: no answer after the warm-up; restarted for the measured run)", flush=True)
            server.restart()
    cpu_before = common.tree_cpu_seconds(server.process.pid)
    output = wrk(args.duration)
    cpu = common.tree_cpu_seconds(server.process.pid) - cpu_before
    (work / f"wrk-{label}.out").write_text(output)
    result = common.parse_wrk(output)
    result["label"] = label
    result["cpu_s"] = cpu
    result["cpu_us_per_req"] = cpu / result["requests"] * 1e6 if result["requests"] else float("nan")
    if args.show_wrk:
        print(output)
    print(f"  {label:16} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms"
          f"  p99 {result['p99_ms']:6.2f} ms  server CPU {result['cpu_us_per_req']:6.0f} us/answer"
          f"  ({result['requests']} requests; socket errors {result['socket_errors']},"
          f" non-2xx {result['non_2xx']}, not a signed answer {result['bad_bodies']})",
          flush=True)
    return result


# -- where the time goes (in-process, no network) --------------------------------------------------------
def breakdown(data: Path, requests: list[bytes], rounds: int) -> list[tuple[str, float]]:
    """Per-request cost of each step of the responder, measured in this process on the same store.

    The last rows call the same SELECT through sqlite3 directly, and answer from a dict, to show what
    the SQLAlchemy layer costs; they change nothing in ca_mock (they are measured here only).
    """
    import asyncio
    import sqlite3

    from sqlalchemy import bindparam, select

    from ca_mock.app import CAApplication
    from ca_mock.authorities.service import load_hierarchy
    from ca_mock.ocsp.models import PreparedOCSPResponse as P
    from ca_mock.settings import CASettings

    settings = CASettings(data_dir=data)
    app = CAApplication(settings, background=False)
    responder = app.ocsp
    loop = asyncio.new_event_loop()

    async def call(target, body: bytes) -> None:
        scope = {"type": "http", "method": "POST", "path": "/ocsp", "query_string": b"",
                 "headers": [(b"content-type", b"application/ocsp-request"),
                             (b"content-length", str(len(body)).encode())]}

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(_message):
            return None

        await target(scope, receive, send)

    parsed = [responder._parse(r) for r in requests]
    hierarchy = load_hierarchy(app.store)
    keys = [(format(p[2], "x"), p[1]) for p in parsed]
    issuer = hierarchy.issuer_for_cert_id(parsed[0][1], parsed[0][0].issuer_name_hash,
                                          parsed[0][0].issuer_key_hash)
    raw = sqlite3.connect(str(data / "ca.sqlite3"))
    query = ("SELECT der, next_update FROM ocsp_responses WHERE serial = ? AND hash_algorithm = ?"
             " AND authority = ?")
    table = {(s, a): d for s, a, d in raw.execute("SELECT serial, hash_algorithm, der FROM ocsp_responses")}

    statement = select(P.der, P.next_update).where(
        P.serial == bindparam("serial"), P.hash_algorithm == bindparam("algorithm"),
        P.authority == bindparam("authority"))

    def prebuilt(i: int):
        with app.store.engine.connect() as connection:
            return connection.execute(statement, {"serial": keys[i][0], "algorithm": keys[i][1],
                                                  "authority": issuer.name}).first()

    async def many(target, n: int) -> None:
        for i in range(n):
            await call(target, requests[i % len(requests)])

    async def answers(n: int) -> None:
        for i in range(n):
            await responder.answer(requests[i % len(requests)])

    def timed(fn, n: int) -> float:
        fn(min(n, 200))  # warm
        t0 = time.process_time()  # CPU time: the machine is shared, wall time is not ours alone
        fn(n)
        return (time.process_time() - t0) / n * 1e6

    def loop_over(step):
        def run(n):
            for i in range(n):
                step(i % len(requests))
        return run

    steps = [
        ("whole ASGI app (CAApplication), POST /ocsp", lambda k: loop.run_until_complete(many(app, k))),
        ("  OCSPResponder.answer()", lambda k: loop.run_until_complete(answers(k))),
        ("    _parse(): load_der_ocsp_request + nonce look-up",
         loop_over(lambda i: responder._parse(requests[i]))),
        ("    load_hierarchy() + issuer_for_cert_id()", loop_over(
            lambda i: load_hierarchy(app.store).issuer_for_cert_id(
                parsed[i][1], parsed[i][0].issuer_name_hash, parsed[i][0].issuer_key_hash))),
        ("    _prepared(): PreparedLookup, the SELECT compiled once and run on a pooled driver connection",
         loop_over(lambda i: responder._prepared(keys[i][0], keys[i][1], issuer.name))),
        ("      the same SELECT through sqlite3 directly (comparison only)",
         loop_over(lambda i: raw.execute(query, (keys[i][0], keys[i][1], issuer.name)).fetchone())),
        ("      building the select(...).where(...) expression alone",
         loop_over(lambda i: select(P.der, P.next_update).where(
             P.serial == keys[i][0], P.hash_algorithm == keys[i][1], P.authority == issuer.name))),
        ("      engine.connect() + close alone (pool checkout and return, no statement)",
         loop_over(lambda i: app.store.engine.connect().close())),
        ("      a select() built once with bindparams, same engine (comparison only)", loop_over(prebuilt)),
        ("      a dict look-up of the same DER (comparison only)", loop_over(lambda i: table.get(keys[i]))),
    ]
    # Five rounds, every step once per round, median per step: the machine is shared and its speed
    # drifts, so a step measured only once, at another moment than the others, misleads.
    blocks = 5
    samples: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(blocks):
        for name, fn in steps:
            samples[name].append(timed(fn, max(1, rounds // blocks)))
    rows = [(name, sorted(values)[len(values) // 2]) for name, values in samples.items()]
    raw.close()
    app.store.dispose()
    loop.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--certs", type=int, default=1000,
                        help="phone-authentication certificates (default 1000)")
    parser.add_argument("--revoked", type=float, default=0.10, help="fraction revoked (default 0.10)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per variant (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load first (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk threads (default 1: the machine has 2 cores)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure uvicorn with this many workers (default 2; 0 or 1 skips)")
    parser.add_argument("--no-close-variant", action="store_true",
                        help="skip 'ours-close' (a new connection per request)")
    parser.add_argument("--openssl-multi", type=int, default=0, help="also measure `openssl ocsp -multi N`")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the do-nothing uvicorn app (the ceiling of one Python process)")
    parser.add_argument("--breakdown-rounds", type=int, default=3000,
                        help="requests per step of the in-process breakdown (default 3000; 0 skips it)")
    parser.add_argument("--show-wrk", action="store_true", help="print wrk's own output")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store, index, wrk outputs)")
    args = parser.parse_args()

    print(f"machine: {common.machine_line()}")
    with common.Resources(keep=args.keep) as res:
        work = res.tempdir("ocsp")
        data = work / "ca"
        t0 = time.perf_counter()
        store, _settings = build_store(data, common.free_port(), args.certs, args.revoked)
        certs = certificates_of(store, "auth")
        auth_pem, _ = common.export_authority(store, "auth", work)
        signer_pem, _ = common.export_authority(store, "auth-ocsp", work)
        store.dispose()
        issuer = x509.load_pem_x509_certificate(auth_pem.read_bytes())
        signer = x509.load_pem_x509_certificate(signer_pem.read_bytes())
        common.write_index(work / "index.txt", (
            common.index_line(c["serial"], c["not_after"], f"/C=JP/O=JPKI Mock/CN=bench-{c['serial']}",
                              c["revoked_at"] if c["status"] != "good" else None, c["reason"])
            for c in certs))
        requests = [ocsp_request(c["der"], issuer) for c in certs]
        bodies = work / "requests.hex"
        bodies.write_text("".join(r.hex() + "\n" for r in requests))
        revoked = sum(c["status"] != "good" for c in certs)
        print(f"setup: {len(certs)} phone-authentication certificates ({revoked} revoked) issued through "
              f"ca_mock's API in {time.perf_counter() - t0:.1f} s; {len(requests)} DER requests without"
              f" nonce, "
              f"SHA-1 CertID, {min(map(len, requests))}-{max(map(len, requests))} bytes")
        print(f"wrk: -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
              f"(after {args.warmup} s warm-up), same Lua script for every variant")

        results: dict[str, dict] = {}
        probe = requests[0]

        # Ours, one process (what `jpki-ca serve` runs).
        # Answers signed before this second were made at issuance/revocation (pre-produced); one
        # signed on request would carry a later producedAt.
        setup_done = dt.datetime.now(dt.UTC).replace(microsecond=0)
        time.sleep(1.05 - dt.datetime.now(dt.UTC).microsecond / 1e6)
        ours = Server(res, "ours", "/ocsp", lambda port: start_ours(res, data, work, 1, port))
        print("checking every answer before load:")
        verify_all("ours", ours.port, "/ocsp", certs, requests, signer, setup_done=setup_done)
        openssl = Server(res, "openssl", "/", lambda port: start_openssl(res, work, 1, probe, port))
        verify_all("openssl", openssl.port, "/", certs, requests, signer)
        openssl.stop()
        print("load:")
        results["ours"] = run_wrk(args, ours, bodies, work, probe)
        if not args.no_close_variant:
            results["ours-close"] = run_wrk(args, ours, bodies, work, probe, close=True, label="ours-close")
        ours.stop()

        if args.workers > 1:
            label = f"ours-workers{args.workers}"
            server = Server(res, label, "/ocsp", lambda port: start_ours(res, data, work, args.workers, port))
            verify_all(label, server.port, "/ocsp", certs[::10], requests[::10], signer)
            results[label] = run_wrk(args, server, bodies, work, probe)
            server.stop()

        # The peer.
        for multi in sorted({1, args.openssl_multi} - {0}):
            label = "openssl" if multi == 1 else f"openssl-multi{multi}"
            server = Server(res, label, "/",
                            lambda port, multi=multi: start_openssl(res, work, multi, probe, port))
            if multi > 1:
                verify_all(label, server.port, "/", certs[::10], requests[::10], signer)
            results[label] = run_wrk(args, server, bodies, work, probe)
            server.stop()

        if not args.no_ceiling:
            size = len(one_answer(data))
            server = Server(res, "ceiling", "/ocsp", lambda port: start_ceiling(res, work, size, port))
            results["do-nothing app"] = run_wrk(args, server, bodies, work, probe, label="do-nothing app",
                                                check_body=False)
            server.stop()

        print(f"\nsummary (same certificates, same requests, same wrk settings; {common.load_line()}):")
        print(f"  {'variant':16} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/answer':>14}"
              f" {'req/s vs openssl':>17}")
        peer = results["openssl"]["rps"]
        for label, r in results.items():
            print(f"  {label:16} {r['rps']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f}"
                  f" {r['cpu_us_per_req']:14.0f}"
                  f" {r['rps'] / peer:16.2f}x")
        ratio = results["ours"]["rps"] / peer
        cpu_ratio = results["openssl"]["cpu_us_per_req"] / results["ours"]["cpu_us_per_req"]
        # A failed answer (socket error, non-2xx, not a signed OCSP answer) still counts in wrk's req/s:
        # the goal is met only by a run in which every measured responder answered every request.
        failed = {k: r["socket_errors"] + r["non_2xx"] + r["bad_bodies"]
                  for k, r in results.items() if k != "do-nothing app"}
        failures = sum(failed.values())
        print(f"\nfailed answers under load: {failures}"
              + (" (" + ", ".join(f"{k} {n}" for k, n in failed.items() if n) + "; see the lines above)"
                 if failures else ""))
        met = ratio >= 10 and failures == 0
        print(f"ratio ours/openssl, one process each: {ratio:.2f}x in req/s, {cpu_ratio:.2f}x in server"
              f" CPU per "
              f"answer  (goal >= 10x with 0 failed answers: {'met' if met else 'NOT met'}"
              f"{'' if failures == 0 else f'; {failures} failed'})")
        if "do-nothing app" in results:
            ceiling = results["do-nothing app"]["rps"] / peer
            print(f"a do-nothing ASGI app under the same uvicorn reaches {ceiling:.2f}x openssl on this"
                  f" machine")

        if args.breakdown_rounds > 0:
            print(f"\nwhere our time goes, in-process, no network (CPU time per request, median of 5"
                  f" rounds of"
                  f" {args.breakdown_rounds // 5} requests; {common.load_line()}):")
            for name, us in breakdown(data, requests, args.breakdown_rounds):
                print(f"  {us:8.1f} us  {name}")
    return 0


def one_answer(data: Path) -> bytes:
    """One real answer of ours, to give the do-nothing app a body of the same size."""
    from sqlalchemy import select

    from ca_mock.ocsp.models import PreparedOCSPResponse
    from ca_mock.settings import CASettings
    from jpki_common.store import Store

    store = Store(CASettings(data_dir=data).resolved_database_url())
    try:
        with store.sessions() as session:
            return session.scalars(select(PreparedOCSPResponse.der).limit(1)).one()
    finally:
        store.dispose()


if __name__ == "__main__":
    common.run(main)
