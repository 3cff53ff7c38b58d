"""Call-centre look-up and suspension at scale, on PostgreSQL: find by holder, find by code, suspend.

A fresh PostgreSQL database (`--admin-url` names the server; the database is created here and dropped at
the end), migrated with `jpki_service.adapters.db.migrate`, is filled QUICKLY to each size of `--rows` in turn
(cumulative: 10k, then 90k more for 100k, ...). Rows are computed with the real functions under a fixed
data key (`holder_data.holder_index` / `suspension_code_index` / `seal_name` with the keys
`service_keys.load_service_keys` derives from it) and bulk-loaded with COPY, in worker processes, one per core:

  per registration: 1 `registrations` row (active, a distinct holder and suspension code each),
  2 `phone_certificates` (good, fake unique serials; certificate_pem left NULL to keep the load fast),
  2 `registration_events` (registered, certificates-issued) and 2 done `ca_commands` (issue), as a
  registration made through the API leaves behind. No CA is involved: this measures the database.

Secondary indexes are dropped before each COPY and re-created after it with their exact definitions, FK
triggers are skipped during the COPY (session_replication_role = replica; the rows are consistent by
construction), then ANALYZE. The schema afterwards is the migrated one.

Then, per size, the real service (`python -m jpki_service serve`, JPKI_DATABASE_URL, JPKI_DATA_KEY the same
key) with JPKI_CA_URL pointing at a port where nothing listens: a suspension records its two hold commands,
tries the CA once (connection refused at once), marks them for retry and answers 202 `ca_sync: pending`. So
the suspend figures are the service's own recorded-first path plus one refused connect, not a CA round trip.

`--clients` operators (default 50), each its own account and one login (argon2 is slow by design; the bearer
token is reused), drive:
  one client: `--single` requests from one operator, one at a time: the path's own latency, no queueing;
  saturated: every client sends its next request as soon as the last one answered (closed loop: the
             latency there is mostly queueing, Little's law: clients / throughput);
  paced:     `--rate` requests/s in total over the same clients (default 25/s, i.e. each operator acting
             every 2 s, a busy call centre), latency of each request at a load the service can carry.
for each of: find by holder (name + birth date + address), find by code, suspend (distinct active
registrations, never the same one twice). The service's RSS (VmRSS) is read after start, after logins
and after each phase. Goals (from the issue): find p99 < 20 ms, suspend p99 < 50 ms; memory flat.

Example: .venv/bin/python bench/operator_scale.py --rows 10000,100000
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import multiprocessing
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
import httpx  # noqa: E402

DATA_KEY = "bench-operator-scale-fixed-data-key-0123456789abcdef"  # the service gets the same key
PERSON_KEY = "bench-operator-scale-person-key"
OPERATOR_PASSWORD = "correct horse battery staple"
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TABLES = ("registrations", "phone_certificates", "registration_events", "ca_commands")
CHUNK = 5_000
FAKE_PEM = ("-----BEGIN PUBLIC KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + "A" * 52
            + "\\n" + "B" * 36 + "==\\n-----END PUBLIC KEY-----\\n")  # COPY text escapes for newlines


# -- who is in row i -----------------------------------------------------------------------------
def holder(i: int) -> tuple[str, str, str]:
    """(name, birth date, address) of registration i: a distinct holder each."""
    return (f"試験 太郎{i}", f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}", f"東京都港区芝公園{i}-2")


def code(i: int) -> str:
    """Registration i's suspension code, as the app shows it (12 Crockford base32 characters)."""
    value = int.from_bytes(hashlib.sha256(f"code{i}".encode()).digest()[:8], "big") >> 4  # 60 bits
    chars = "".join(CODE_ALPHABET[(value >> (5 * k)) & 31] for k in range(12))
    return "-".join(chars[k:k + 4] for k in range(0, 12, 4))


def registration_id(i: int) -> str:
    return hashlib.md5(f"registration{i}".encode()).hexdigest()  # random-looking, as the service's are


# -- the fill ------------------------------------------------------------------------------------
def _chunk(args: tuple[int, int]) -> tuple[int, list[bytes]]:
    """COPY text for registrations [start, end): one buffer per table."""
    from jpki_service import holder_data
    from jpki_service.adapters.service_keys import load_service_keys
    from jpki_service.common.settings import ServiceSettings

    start, end = args
    keys = load_service_keys(ServiceSettings(data_key=DATA_KEY, person_key=PERSON_KEY), create=False)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out = [[], [], [], []]
    for i in range(start, end):
        rid = registration_id(i)
        name, birth, address = holder(i)
        at = (base + dt.timedelta(seconds=i * 7)).isoformat()
        person_key = hmac.new(keys.person_index, str(i).encode(), hashlib.sha256).hexdigest()
        out[0].append("\t".join((
            rid, "active", "\\N", person_key, format(0x10_0000_0000 + i, "x"), "Bench Phone", FAKE_PEM,
            holder_data.seal_name(keys.holder_seal, name),
            holder_data.holder_index(keys.holder_index, name, birth, address),
            holder_data.suspension_code_index(keys.holder_index, code(i)), at, at)))
        for k, kind in enumerate(("signature", "authentication")):
            cert_id = 2 * i + k + 1
            serial = hashlib.sha1(f"serial{i}{kind}".encode()).hexdigest()[:32]
            out[1].append(f"{cert_id}\t{rid}\t{kind}\t{FAKE_PEM}\t{serial}\tgood\t\\N\tt")
            out[3].append(f"{rid}\t{cert_id}\tissue\t\\N\tsvc-{hashlib.md5(serial.encode()).hexdigest()}"
                          f"\t\\N\tdone\t1\t\\N\t{at}\t{at}\t{at}")
        out[2].append(f"{rid}\t{at}\tregistered\towner\t-\tpending\t\\N\t\\N")
        out[2].append(f"{rid}\t{at}\tcertificates-issued\tsystem\tpending\tactive\t\\N\t\\N")
    return end - start, ["\n".join(lines).encode() + b"\n" for lines in out]


COLUMNS = {
    "registrations": "id, state, reason, person_key, card_serial, device_model, device_public_key_pem, "
                     "holder_sealed, holder_index, suspension_code_index, created_at, updated_at",
    "phone_certificates": "id, registration_id, kind, public_key_pem, serial, status, certificate_pem, current",
    "registration_events": "registration_id, at, event, actor, from_state, to_state, operator, note",
    "ca_commands": "registration_id, certificate_id, action, reason, operation_id, payload, state, attempts, "
                   "last_error, created_at, next_attempt_at, done_at",
}


def fill(url: str, start: int, end: int, cores: int) -> dict:
    """Registrations [start, end) into the database at ``url``; timings of the steps."""
    import psycopg

    times = {}
    with psycopg.connect(url, autocommit=True) as connection:
        t = time.perf_counter()
        indexes = connection.execute(
            "select i.indexname, i.indexdef from pg_indexes i where i.schemaname = current_schema() "
            "and i.tablename = any(%s) and i.indexname not in (select conname from pg_constraint)",
            [list(TABLES)]).fetchall()
        for name, _ in indexes:
            connection.execute(f'drop index "{name}"')
        times["drop indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        connection.execute("set session_replication_role = replica")  # no FK triggers during the load
        chunks = [(a, min(a + CHUNK, end)) for a in range(start, end, CHUNK)]
        with multiprocessing.get_context("fork").Pool(cores, initializer=_default_sigterm) as pool:
            for _, buffers in pool.imap(_chunk, chunks):
                with connection.transaction():
                    for table, data in zip(TABLES, buffers, strict=True):  # _chunk: one buffer per table
                        with connection.cursor().copy(f"copy {table} ({COLUMNS[table]}) from stdin") as copy:
                            copy.write(data)
            pool.close()
            pool.join()
        connection.execute("set session_replication_role = origin")
        times["compute + COPY"] = time.perf_counter() - t
        t = time.perf_counter()
        for _, definition in indexes:
            connection.execute(definition)
        times["re-create indexes"] = time.perf_counter() - t
        t = time.perf_counter()
        connection.execute("select setval(pg_get_serial_sequence('phone_certificates', 'id'), "
                           "(select max(id) from phone_certificates))")
        connection.execute("analyze")
        times["sequences + ANALYZE"] = time.perf_counter() - t
    return times


def _default_sigterm() -> None:
    """In pool workers: the parent's SIGTERM handler (raise SystemExit) must not run there, or
    Pool.terminate() can leave a worker stuck holding the task queue's lock."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- the load ------------------------------------------------------------------------------------
async def run_load(url: str, tokens: list[str], requests: list, rate: float | None) -> tuple[list, float, dict]:
    """Send ``requests`` (method, path, json, expected statuses) over len(tokens) clients.

    rate None: closed loop. Otherwise each request has a start time (Poisson arrivals at ``rate``/s in
    total) and a free client sends it then; its latency counts from its start time, so queueing shows.
    """
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    latencies, statuses = [], {}
    # The clients are made before the clock starts: each httpx client builds a TLS context (~40 ms of
    # CPU, even for plain HTTP), and 50 of them made inside the timed loop stalled it for ~2 s, which
    # showed up as second-long "latencies" of the first requests, a cost of this script, not the service.
    # uvicorn closes a keep-alive connection idle for 5 s; close ours first, or a request sent at that
    # moment meets a closed socket (paced clients wait seconds between requests).
    clients = [httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(keepalive_expiry=3.0)) for token in tokens]
    schedule = []
    if rate:
        t = 0.0
        for _ in requests:
            t += random.expovariate(rate)
            schedule.append(t)
    position = iter(range(len(requests)))
    begin = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        async with http:
            while True:
                try:
                    method, path, body, ok = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                n = next(position)
                if rate:
                    due = begin + schedule[n]
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    start = due
                else:
                    start = time.perf_counter()
                try:
                    answer = await http.request(method, path, json=body)
                except httpx.TransportError as exc:
                    key = f"transport error {exc.__class__.__name__}"
                    statuses[key] = statuses.get(key, 0) + 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                key = answer.status_code if answer.status_code in ok else f"{answer.status_code} {answer.text[:120]}"
                statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(client(http) for http in clients))
    return latencies, time.perf_counter() - begin, statuses


def find_holder(i: int) -> tuple:
    name, birth, address = holder(i)
    return ("POST", "/api/v1/operator/registrations/search", {"name": name, "birth": birth, "address": address},
            (200,))


def find_code(i: int) -> tuple:
    return ("POST", "/api/v1/operator/registrations/search", {"code": code(i)}, (200,))


def suspend(i: int, n: int) -> tuple:
    return ("POST", f"/api/v1/operator/registrations/{registration_id(i)}/suspend",
            {"reason": "lost", "caller": "self", "ticket": f"BENCH-{n}", "channel": "phone"}, (200, 202))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000",
                        help="comma-separated registration counts, filled cumulatively and measured at each "
                             "(default 10000,100000; 1000000 takes a few minutes to fill here)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent operators (default 50)")
    parser.add_argument("--workers", type=int, default=1,
                        help="service processes (`jpki-service serve --workers`; default 1); CPU and RSS are "
                             "those of all of them")
    parser.add_argument("--requests", type=int, default=500,
                        help="requests per operation and mode at each size (default 500)")
    parser.add_argument("--rate", type=float, default=25.0,
                        help="total requests/s of the paced mode (default 25; 0 skips the paced mode)")
    parser.add_argument("--single", type=int, default=100,
                        help="requests per operation from ONE client first, no concurrency: the path's own "
                             "latency without queueing (default 100; 0 skips)")
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a database on the PostgreSQL server, to create and drop the bench's own database")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--py-spy", metavar="FILE", default=None,
                        help="record a py-spy profile (collapsed stacks) of the service during the saturated "
                             "phases at one size (--py-spy-rows, default the largest)")
    parser.add_argument("--py-spy-rows", type=int, default=None, help="the size at which --py-spy records")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.rows.split(","))
    cores = os.cpu_count() or 1

    import sqlalchemy as sa

    name = f"bench_operator_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'create database "{name}"')
    url = sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    print(f"machine: {common.machine_line()}")
    print(f"database: {name}")
    try:
        with common.Resources(keep=args.keep) as res:
            return _run(args, res, url, sizes, cores)
    finally:
        if not args.keep_db:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'drop database if exists "{name}" with (force)')
        admin.dispose()


def _run(args, res: common.Resources, url: str, sizes: list[int], cores: int) -> int:
    from jpki_service.adapters.db import Store, migrate
    from jpki_service.operators.roles import Role
    from jpki_service.operators.service import add_operator

    migrate(url)
    store = Store(url)
    t = time.perf_counter()
    for k in range(args.clients):
        add_operator(store, f"bench-op-{k:03d}", Role.OPERATOR, OPERATOR_PASSWORD)
    store.dispose()
    print(f"{args.clients} operator accounts made in {time.perf_counter() - t:.1f} s (argon2 each)")
    psycopg_url = url.replace("postgresql+psycopg://", "postgresql://")
    work = res.tempdir("operator")
    filled, suspended = 0, set()
    summary = []
    for size in sizes:
        t = time.perf_counter()
        times = fill(psycopg_url, filled, size, cores)
        took = time.perf_counter() - t
        print(f"\n== {size:,} registrations: filled {size - filled:,} more in {took:.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in times.items())}; {common.load_line()})")
        filled = size
        with store_sizes(psycopg_url) as sizes_text:
            print(f"   on disk: {sizes_text}")
        summary.append(measure(args, res, url, work, size, suspended,
                               size == (args.py_spy_rows or sizes[-1])))
    print("\nsummary (ms; saturated = closed loop with every client busy; paced = "
          f"{args.rate:g} req/s in total):")
    print(f"  {'rows':>9} {'operation':16} {'1 cl p50':>8} {'1 cl p99':>8} {'sat req/s':>9} {'sat p50':>8} "
          f"{'sat p99':>8} {'paced p50':>9} {'paced p99':>9}  goal")
    for size, results, rss in summary:
        for op, goal in (("find by holder", 20), ("find by code", 20), ("suspend", 50)):
            sat, paced, one = results[(op, "saturated")], results.get((op, "paced")), results.get((op, "one client"))
            met = f"p99 < {goal:d} ms: {'met' if paced and paced['p99'] < goal else 'NOT met'}"
            print(f"  {size:>9,} {op:16} {one['p50'] if one else float('nan'):8.1f} "
                  f"{one['p99'] if one else float('nan'):8.1f} {sat['rps']:9.1f} {sat['p50']:8.1f} {sat['p99']:8.1f} "
                  f"{paced['p50'] if paced else float('nan'):9.1f} {paced['p99'] if paced else float('nan'):9.1f}"
                  f"  {met} (paced)")
        print(f"  {size:>9,} service RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    return 0


class store_sizes:
    """Table + index sizes, as text."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        import psycopg

        with psycopg.connect(self.url) as connection:
            rows = connection.execute(
                "select relname, pg_total_relation_size(oid) from pg_class where relname = any(%s)",
                [list(TABLES)]).fetchall()
        total = sum(r[1] for r in rows)
        return ", ".join(f"{n} {s / 2**20:.0f} MiB" for n, s in sorted(rows)) + f"; total {total / 2**20:.0f} MiB"

    def __exit__(self, *exc) -> None:
        return None


def measure(args, res: common.Resources, url: str, work: Path, size: int, suspended: set, last: bool):
    port, dead_ca = common.free_port(), common.free_port()  # nothing listens on dead_ca
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    env.update({"JPKI_DATA_DIR": str(work / "service"), "JPKI_DATABASE_URL": url, "JPKI_DATA_KEY": DATA_KEY,
                "JPKI_PERSON_KEY": PERSON_KEY, "JPKI_CA_URL": f"http://127.0.0.1:{dead_ca}", "JPKI_CA_TOKEN": "x",
                # All the operators log in from 127.0.0.1: lift the per-address login limit (still counted).
                "JPKI_LOGIN_ATTEMPTS_PER_CLIENT_PER_MINUTE": "1000000000"})
    log = work / f"service-{size}.log"
    service = res.spawn([common.PYTHON, "-m", "jpki_service", "serve", "--port", str(port),
                         "--workers", str(args.workers)], log=log, env=env)
    base = f"http://127.0.0.1:{port}"
    common.wait_for_port(port, service, timeout=120, log=log)
    time.sleep(1.0)
    rss = {"started": common.tree_rss_mib(service.pid)}
    t = time.perf_counter()
    tokens = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for k in range(args.clients):
            answer = http.post("/api/v1/operator/session", json={"username": f"bench-op-{k:03d}",
                                                                 "password": OPERATOR_PASSWORD})
            answer.raise_for_status()
            tokens.append(answer.json()["token"])
    rss["logged in"] = common.tree_rss_mib(service.pid)
    print(f"   service up; {len(tokens)} logins in {time.perf_counter() - t:.1f} s; RSS {rss['logged in']:.0f} MiB")
    rng = random.Random(size)
    results = {}
    spy = None
    if last and args.py_spy:
        import shutil

        tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        spy = res.spawn([tool, "record", "--pid", str(service.pid), "--subprocesses", "--format", "raw",
                         "--rate", "200", "--output", args.py_spy, "--nonblocking"], log=work / "py-spy.log")
        time.sleep(1.0)
    modes = ([("one client", None, 1, args.single)] if args.single else []) + [
        ("saturated", None, len(tokens), args.requests)] + (
        [("paced", args.rate, len(tokens), args.requests)] if args.rate else [])
    for mode, rate, clients, count in modes:
        for op in ("find by holder", "find by code", "suspend"):
            if op == "suspend":
                chosen = []
                while len(chosen) < count:
                    i = rng.randrange(size)
                    if i not in suspended:
                        suspended.add(i)
                        chosen.append(i)
                requests = [suspend(i, n) for n, i in enumerate(chosen)]
            else:
                make = find_holder if op == "find by holder" else find_code
                requests = [make(rng.randrange(size)) for _ in range(count)]
            cpu = common.tree_cpu_seconds(service.pid)
            latencies, elapsed, statuses = asyncio.run(run_load(base, tokens[:clients], requests, rate))
            cpu = common.tree_cpu_seconds(service.pid) - cpu
            results[(op, mode)] = {"rps": len(latencies) / elapsed, "p50": common.percentile(latencies, 50),
                                   "p99": common.percentile(latencies, 99)}
            rss[f"after {op} {mode}"] = common.tree_rss_mib(service.pid)
            print(f"   {mode:9} {op:15} {len(latencies)} requests {results[(op, mode)]['rps']:7.1f}/s  "
                  f"p50 {results[(op, mode)]['p50']:7.1f} ms  p99 {results[(op, mode)]['p99']:7.1f} ms  "
                  f"service CPU {cpu / len(latencies) * 1000:5.1f} ms/request  answers {statuses}  "
                  f"RSS {rss[f'after {op} {mode}']:.0f} MiB  ({common.load_line()})")
        if spy is not None and mode == "saturated":
            import signal

            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            print(f"   py-spy profile written: {args.py_spy}")
            spy = None
    res.stop(service)
    return size, results, {k: v for k, v in rss.items() if k in ("started", "logged in")} | {
        "max": max(rss.values()), "end": list(rss.values())[-1]}


if __name__ == "__main__":
    common.run(main)
