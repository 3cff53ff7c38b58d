"""Registration throughput, end to end over HTTP: phones registering from their My Number card.

A real mock CA (`python -m ca_mock serve`) and a real lifecycle service (`python -m jpki_service serve`,
JPKI_CA_URL pointing at that CA) run as processes, on SQLite by default or on PostgreSQL with
`--database-url` (then the CA and the service each get their own fresh schema in that database, dropped
at the end). Made IN ADVANCE, not timed: N cards (`ca_mock.cards.service.issue_card`, a distinct person
each, so no registration supersedes another) and N phones (signature, authentication and device key
pairs, P-256 by default (`--phone-keys rsa`: RSA-2048 as a JPKI phone's SE holds, slow to make); the two
CSRs are also made in advance).

Timed: C client threads register the N phones, each registration being what the phone app does:
POST /api/v1/challenges, sign the challenge with the card's key (on the client), POST
/api/v1/registrations. The service spends the challenge, checks the card certificate's chain and its
OCSP status at the CA (its request carries a nonce, so the CA signs a fresh answer, which the service
verifies with pyhanko-certvalidator: jpki_service/adapters/ocsp_verification.py), verifies the card's signature and both
CSRs, records the registration and two issue commands, then carries them to the CA at once: the CA
signs two certificates and pre-produces, for each, two OCSP answers (SHA-1 and SHA-256 CertIDs).
A registration counts only if it answered 201 with ca_sync "done" (both certificates issued).

Signatures counted per registration: the CA's private-key signatures only = 2 certificates + 2 x 2
pre-produced OCSP answers = 6 RSA-2048 signatures (checked after the run against the CA's store:
certificates and ocsp_responses rows added). Not counted: the fresh answer to the card's OCSP check
(a seventh signature, the price of a nonce: never stored, so not seen in the rows), verifications (card
proof, chain, OCSP answer, CSRs: cheap public-key operations) and the card's signature over the
challenge, which the client (the card) makes.

Peer, same run: the machine's raw RSA-2048 PKCS#1 v1.5 SHA-256 signing rate with `cryptography`,
one process and one process per core at once, measured before and after the registrations. The
ratio printed is (registrations/s x 6) / raw rate: the share of the machine's signing capacity the
whole path turns into registrations (the issue's goal: at least a quarter).

Example: .venv/bin/python bench/registration_throughput.py --count 200 --clients 8
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
import httpx  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

SIGNATURES_PER_REGISTRATION = 6  # 2 certificates + 2 x 2 pre-produced OCSP answers (checked after the run)
CARD_PASSWORD, CARD_PIN = "CARD1234", "1234"


# -- the raw signing rate (the peer) ---------------------------------------------------------------
def _sign_loop(seconds: float) -> tuple[int, float]:
    key = rsa.generate_private_key(65537, 2048)
    message = os.urandom(1024)  # about a certificate's TBS
    key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count, time.perf_counter() - start


def raw_sign_rates(seconds: float) -> tuple[float, float]:
    """(signatures/s of one process, signatures/s of one process per core running at once)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        count, elapsed = pool.apply(_sign_loop, (seconds,))
    single = count / elapsed
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        results = pool.map(_sign_loop, [seconds] * cores)
    return single, sum(c / e for c, e in results)


# -- made in advance -----------------------------------------------------------------------------
def _person(i: int) -> dict:
    return {"name": f"試験 花子{i}", "date_of_birth": f"{1950 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "gender": "2", "address": f"東京都千代田区千代田{i}-1"}


def _cards(args: tuple) -> list[tuple[str, str, bytes]]:
    """Worker: issue cards on the CA's store; (certificate PEM, serial, unencrypted key PEM) each."""
    data_dir, database_url, public_url, indexes = args
    from ca_mock.cards.service import issue_card
    from ca_mock.certificates.schemas import PersonIn
    from ca_mock.settings import CASettings
    from jpki_common.store import Store

    settings = CASettings(data_dir=Path(data_dir), public_url=public_url, database_url=database_url)
    store = Store(settings.resolved_database_url())
    out = []
    try:
        for i in indexes:
            card = issue_card(store, settings, PersonIn(**_person(i)), CARD_PASSWORD, CARD_PIN)
            key = serialization.load_pem_private_key(card["signature"]["private_key_pem"].encode(),
                                                     CARD_PASSWORD.encode())
            out.append((card["signature"]["certificate_pem"], card["signature"]["serial"],
                        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())))
    finally:
        store.dispose()
    return out


def _new_key(kind: str):
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _csr(key) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phone")])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _phones(args: tuple) -> list[dict]:
    """Worker: a phone's three key pairs (as its SE makes them) and its two CSRs."""
    kind, count = args
    out = []
    for _ in range(count):
        signature, authentication, device = _new_key(kind), _new_key(kind), _new_key(kind)
        out.append({
            "signature_csr_pem": _csr(signature), "authentication_csr_pem": _csr(authentication),
            "device_public_key_pem": device.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        })
    return out


def _default_sigterm() -> None:
    """In pool workers: the parent's SIGTERM handler (raise SystemExit) must not run there, or
    Pool.terminate() can leave a worker stuck holding the task queue's lock."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


# -- the databases -------------------------------------------------------------------------------
class Databases:
    """SQLite files in the temp dir, or two fresh schemas in the PostgreSQL database given."""

    def __init__(self, work: Path, database_url: str | None) -> None:
        self.url, self.schemas = database_url, []
        if database_url is None:
            self.ca = f"sqlite:///{work / 'ca' / 'ca.sqlite3'}"
            self.service = f"sqlite:///{work / 'service' / 'service.sqlite3'}"
            return
        import sqlalchemy as sa

        tag = uuid.uuid4().hex[:10]
        self.schemas = [f"bench_ca_x{tag}", f"bench_svc_x{tag}"]
        engine = sa.create_engine(database_url)
        with engine.begin() as connection:
            for schema in self.schemas:
                connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
        separator = "&" if "?" in database_url else "?"
        self.ca, self.service = (f"{database_url}{separator}options=-csearch_path%3D{s}" for s in self.schemas)

    def drop(self) -> None:
        if not self.schemas:
            return
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        with engine.begin() as connection:
            for schema in self.schemas:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def ca_counts(url: str) -> tuple[int, int]:
    """(certificates, ocsp_responses) rows in the CA's store."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        counts = tuple(connection.exec_driver_sql(f"select count(*) from {t}").scalar()
                       for t in ("certificates", "ocsp_responses"))
    engine.dispose()
    return counts


def start_py_spy(res: common.Resources, prefix: str | None, pids: dict[str, int], work: Path) -> list:
    if not prefix:
        return []
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spies = []
    for name, pid in pids.items():
        out = f"{prefix}-{name}.txt"
        spies.append((res.spawn([spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "200",
                                 "--output", out, "--nonblocking"], log=work / f"py-spy-{name}.log"), out))
    time.sleep(1.0)  # let py-spy attach
    return spies


def stop_py_spy(res: common.Resources, spies: list) -> None:
    import signal

    for process, out in spies:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except Exception:
            res.stop(process)
        print(f"py-spy profile written: {out}")


# -- the registrations ---------------------------------------------------------------------------
def register_one(client: httpx.Client, card: tuple, phone: dict, sign_key) -> tuple[float, float, int, str]:
    """challenge + card signature + register: (total s, register request s, status, ca_sync)."""
    from jpki_common.owner_proof import authorised_digest, proof_message, sign_message

    start = time.perf_counter()
    answer = client.post("/api/v1/challenges", json={"action": "register", "registration_id": None})
    if answer.status_code != 201:
        return time.perf_counter() - start, 0.0, answer.status_code, answer.text[:200]
    c = answer.json()
    authorised = authorised_digest(signature_csr_pem=phone["signature_csr_pem"],
                                   authentication_csr_pem=phone["authentication_csr_pem"],
                                   device_public_key_pem=phone["device_public_key_pem"])
    signature = sign_message(sign_key, proof_message(c["action"], c["registration_id"], c["challenge_id"],
                                                     c["nonce"], authorised))
    body = {"proof": {"challenge_id": c["challenge_id"], "signature": signature, "card_certificate_pem": card[0]},
            "device": {"model": "Bench Phone", "device_public_key_pem": phone["device_public_key_pem"]},
            "signature_csr_pem": phone["signature_csr_pem"],
            "authentication_csr_pem": phone["authentication_csr_pem"]}
    sent = time.perf_counter()
    answer = client.post("/api/v1/registrations", json=body)
    done = time.perf_counter()
    sync = answer.json().get("ca_sync", "") if answer.status_code in (201, 202) else answer.text[:200]
    return done - start, done - sent, answer.status_code, sync


def run_clients(url: str, jobs: list, clients: int) -> list[tuple]:
    results: list[tuple] = []
    lock = threading.Lock()
    position = iter(range(len(jobs)))

    def client_thread() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                outcome = register_one(client, *jobs[i])
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="registrations timed (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    parser.add_argument("--warmup", type=int, default=10, help="registrations before timing (default 10)")
    parser.add_argument("--service-workers", type=int, default=1,
                        help="lifecycle service processes (`jpki-service serve --workers`; default 1)")
    parser.add_argument("--ca-workers", type=int, default=1,
                        help="mock CA processes (`jpki-ca serve --workers`; default 1)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/bench); "
                             "default SQLite files in the temp dir")
    parser.add_argument("--phone-keys", choices=("rsa", "ec"), default="ec",
                        help="phone key pairs: P-256 (default: 3 RSA-2048 keys per phone make the set-up take "
                             "minutes here) or RSA-2048")
    parser.add_argument("--sign-seconds", type=float, default=3.0,
                        help="seconds of each raw signing measurement (default 3)")
    parser.add_argument("--py-spy", metavar="PREFIX", default=None,
                        help="record py-spy profiles (collapsed stacks) of the service and the CA during the "
                             "timed phase into PREFIX-service.txt and PREFIX-ca.txt (needs py-spy on the PATH "
                             "or in the virtualenv)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and print its path)")
    args = parser.parse_args()
    total = args.count + args.warmup
    cores = os.cpu_count() or 1

    print(f"machine: {common.machine_line()}")
    with common.Resources(keep=args.keep) as res:
        work = res.tempdir("registration")
        dbs = Databases(work, args.database_url)
        try:
            return _run(args, res, work, dbs, total, cores)
        finally:
            dbs.drop()


def _run(args, res: common.Resources, work: Path, dbs: Databases, total: int, cores: int) -> int:
    ca_port, service_port = common.free_port(), common.free_port()
    ca_url, service_url = f"http://127.0.0.1:{ca_port}", f"http://127.0.0.1:{service_port}"
    t0 = time.perf_counter()
    from ca_mock.authorities.service import initialise
    from ca_mock.db import migrate
    from ca_mock.settings import CASettings
    from jpki_common.store import Store

    ca_settings = CASettings(data_dir=work / "ca", public_url=ca_url, database_url=dbs.ca)
    ca_settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(ca_settings.resolved_database_url())
    migrate(store.url)
    initialise(store, ca_settings)
    store.dispose()
    token = ca_settings.resolved_api_token()

    # Made in advance, in one worker process per core.
    with multiprocessing.get_context("fork").Pool(cores, initializer=_default_sigterm) as pool:
        card_parts = pool.map_async(_cards, [(str(ca_settings.data_dir), dbs.ca, ca_url, part)
                                             for part in _split(list(range(total)), cores)])
        phone_parts = pool.map_async(_phones, [(args.phone_keys, len(part))
                                               for part in _split(list(range(total)), cores)])
        cards = [card for part in card_parts.get() for card in part]
        phones = [phone for part in phone_parts.get() for phone in part]
    jobs = [(card, phone, serialization.load_pem_private_key(card[2], None))
            for card, phone in zip(cards, phones, strict=True)]  # one card and one phone per index
    before_certs, before_ocsp = ca_counts(dbs.ca)
    print(f"set-up: CA, {total} cards ({before_certs} CA certificates incl. the cards') and {total} phones "
          f"({args.phone_keys} keys, CSRs made) in {time.perf_counter() - t0:.1f} s "
          f"({'PostgreSQL' if args.database_url else 'SQLite'})")

    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}
    ca_env = {**env, "JPKI_CA_DATA_DIR": str(ca_settings.data_dir), "JPKI_CA_DATABASE_URL": dbs.ca}
    ca = res.spawn([common.PYTHON, "-m", "ca_mock", "serve", "--port", str(ca_port), "--workers",
                    str(args.ca_workers)], log=work / "ca.log",
                   env=ca_env)
    common.wait_for_port(ca_port, ca, log=work / "ca.log")
    # Every client here is 127.0.0.1: raise the per-address challenge limit out of the way (phones come
    # from many addresses), but keep it counting, so each challenge still pays its counter write.
    service_env = {**env, "JPKI_DATA_DIR": str(work / "service"), "JPKI_DATABASE_URL": dbs.service,
                   "JPKI_CA_URL": ca_url, "JPKI_CA_TOKEN": token or "",
                   "JPKI_CHALLENGES_PER_CLIENT_PER_MINUTE": "1000000000"}
    service = res.spawn([common.PYTHON, "-m", "jpki_service", "serve", "--port", str(service_port),
                         "--workers", str(args.service_workers)],
                        log=work / "service.log", env=service_env)
    common.wait_for_port(service_port, service, timeout=60, log=work / "service.log")
    for _ in range(100):
        try:
            if httpx.get(f"{service_url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)

    raw_before = raw_sign_rates(args.sign_seconds)
    print(f"raw RSA-2048 signing (before): {raw_before[0]:.0f}/s one process, {raw_before[1]:.0f}/s "
          f"{cores} processes at once ({common.load_line()})")

    warm = run_clients(service_url, jobs[:args.warmup], min(args.clients, max(args.warmup, 1)))
    bad = [r for r in warm if r[2] != 201]
    if bad:
        print(f"warm-up failed: {bad[:3]}\n{(work / 'service.log').read_text()[-3000:]}")
        return 1
    spies = start_py_spy(res, args.py_spy, {"service": service.pid, "ca": ca.pid}, work)
    cpu_service, cpu_ca = common.tree_cpu_seconds(service.pid), common.tree_cpu_seconds(ca.pid)
    cpu_client = time.process_time()
    load_start = common.load_line()
    start = time.perf_counter()
    results = run_clients(service_url, jobs[args.warmup:], args.clients)
    elapsed = time.perf_counter() - start
    cpu_service = common.tree_cpu_seconds(service.pid) - cpu_service
    cpu_ca = common.tree_cpu_seconds(ca.pid) - cpu_ca
    cpu_client = time.process_time() - cpu_client
    load_end = common.load_line()
    service_rss, ca_rss = common.tree_rss_mib(service.pid), common.tree_rss_mib(ca.pid)
    stop_py_spy(res, spies)

    raw_after = raw_sign_rates(args.sign_seconds)
    print(f"raw RSA-2048 signing (after):  {raw_after[0]:.0f}/s one process, {raw_after[1]:.0f}/s "
          f"{cores} processes at once ({common.load_line()})")

    after_certs, after_ocsp = ca_counts(dbs.ca)
    ok = [r for r in results if r[2] == 201 and r[3] == "done"]
    failed = [r for r in results if not (r[2] == 201 and r[3] == "done")]
    new_certs, new_ocsp = after_certs - before_certs, after_ocsp - before_ocsp
    registered = len(ok) + len(warm)
    print(f"\nCA store: {new_certs} certificates and {new_ocsp} OCSP answers added for {registered} registrations "
          f"(warm-up included): {new_certs / registered:.2f} + {new_ocsp / registered:.2f} signatures per registration")

    rate = len(ok) / elapsed
    total_ms = [r[0] * 1000 for r in ok]
    register_ms = [r[1] * 1000 for r in ok]
    sigs = rate * SIGNATURES_PER_REGISTRATION
    single = (raw_before[0] + raw_after[0]) / 2
    machine = (raw_before[1] + raw_after[1]) / 2
    print(f"\nresults ({len(ok)}/{len(results)} registered with ca_sync done, {args.clients} clients, "
          f"{elapsed:.1f} s; {load_start} at the start, {load_end} at the end):")
    if failed:
        print(f"  NOT registered: {len(failed)}, e.g. {failed[:3]}")
    print(f"  registrations/s             {rate:8.1f}")
    print(f"  whole registration  p50 {common.percentile(total_ms, 50):8.1f} ms   p99 "
          f"{common.percentile(total_ms, 99):8.1f} ms   (challenge + card signature + register)")
    print(f"  POST /registrations p50 {common.percentile(register_ms, 50):8.1f} ms   p99 "
          f"{common.percentile(register_ms, 99):8.1f} ms")
    print(f"  CPU per registration: service {cpu_service / len(ok) * 1000:.1f} ms, CA {cpu_ca / len(ok) * 1000:.1f} ms,"
          f" client {cpu_client / len(ok) * 1000:.1f} ms (this process; it shares the {cores} cores)")
    print(f"  CPU busy during the run: service {cpu_service / elapsed:.2f} cores, CA {cpu_ca / elapsed:.2f} cores,"
          f" client {cpu_client / elapsed:.2f} cores")
    print(f"  RSS after the run: service {service_rss:.0f} MiB, CA {ca_rss:.0f} MiB")
    print(f"  one RSA-2048 signature costs {1000 / single:.2f} ms of CPU: the CA's 6 per registration are "
          f"{SIGNATURES_PER_REGISTRATION * 1000 / single:.1f} ms of the "
          f"{(cpu_service + cpu_ca) / len(ok) * 1000:.1f} ms server CPU per registration")
    print(f"\nsignatures/s through registrations: {rate:.1f} x {SIGNATURES_PER_REGISTRATION} = {sigs:.0f}/s")
    print(f"  vs raw, one process   ({single:.0f}/s): {sigs / single:.3f}")
    print(f"  vs raw, {cores} processes  ({machine:.0f}/s): {sigs / machine:.3f}"
          f"   goal >= 0.25 of the raw limit: {'met' if sigs / machine >= 0.25 else 'NOT met'}")
    server_ms = (cpu_service + cpu_ca) / len(ok) * 1000
    sign_ms = SIGNATURES_PER_REGISTRATION * 1000 / single
    print(f"  CPU-normalised (the machine is shared, so wall-clock rates move with other load): the 6 signatures "
          f"are {sign_ms / server_ms:.3f} of the service + CA CPU per registration"
          f"{' (PostgreSQL server CPU not included)' if args.database_url else ''}; with all {cores} cores to "
          f"themselves service + CA would reach about {cores * 1000 / server_ms:.1f} registrations/s")
    return 0 if not failed else 1


if __name__ == "__main__":
    common.run(main)
