"""PostgreSQL restarted under load: does the service recover without a manual step?

Not a test (it restarts the machine's PostgreSQL, which would break every other test using it):
run it by hand, alone. It starts the real service on a fresh PostgreSQL database (the mock CA
embedded, on SQLite), registers phones, then drives the call centre's suspend and the owner's
look-up from several threads while ``pg_ctlcluster ... restart`` runs. It prints how many requests
failed and for how long, whether every request after the restart succeeded, and whether every
suspension the service accepted (200/202) is recorded and carried to the CA.

    .venv/bin/python bench/postgres_restart.py [--phones 40] [--threads 6]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as common  # noqa: E402  (bench/_common.py)

from ca_mock.cards.service import issue_card  # noqa: E402
from ca_mock.certificates.schemas import PersonIn  # noqa: E402
from ca_mock.settings import CASettings  # noqa: E402
from jpki_common.owner_proof import authorised_digest, proof_message, sign_message  # noqa: E402
from jpki_common.store import Store  # noqa: E402

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "restart bench 2026"


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql], check=True)


def _csr(key) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phone")])).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _register(client: httpx.Client, ca_store: Store, ca_settings: CASettings, i: int) -> str:
    person = PersonIn(name=f"再起動 {i}", date_of_birth="1980-01-01", gender="1", address=f"東京都{i}")
    card = issue_card(ca_store, ca_settings, person, "CARD1234", "1234")
    card_key = serialization.load_pem_private_key(card["signature"]["private_key_pem"].encode(), b"CARD1234")
    device = ec.generate_private_key(ec.SECP256R1())
    c = client.post("/api/v1/challenges", json={"action": "register", "registration_id": None}).json()
    device_pem = device.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    csrs = {"signature_csr_pem": _csr(ec.generate_private_key(ec.SECP256R1())),
            "authentication_csr_pem": _csr(ec.generate_private_key(ec.SECP256R1()))}
    message = proof_message("register", None, c["challenge_id"], c["nonce"],
                            authorised_digest(**csrs, device_public_key_pem=device_pem))
    body = {"proof": {"challenge_id": c["challenge_id"], "signature": sign_message(card_key, message),
                      "card_certificate_pem": card["signature"]["certificate_pem"]},
            "device": {"model": "bench", "device_public_key_pem": device_pem}, **csrs}
    answer = client.post("/api/v1/registrations", json=body)
    answer.raise_for_status()
    return answer.json()["registration_id"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=40)
    parser.add_argument("--threads", type=int, default=6)
    args = parser.parse_args()
    cluster = os.listdir("/etc/postgresql")[0]
    database = f"bench_pgrestart_{os.getpid()}"
    _psql(f"CREATE DATABASE {database}")
    with common.Resources() as res:
        work = res.tempdir("pgrestart")
        port = common.free_port()
        env = {**os.environ, "JPKI_DATA_DIR": str(work), "JPKI_OPERATOR_PASSWORD": PASSWORD,
               "JPKI_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
               "JPKI_CHALLENGES_PER_CLIENT_PER_MINUTE": "0", "JPKI_LOGIN_ATTEMPTS_PER_CLIENT_PER_MINUTE": "0",
               "JPKI_DISPATCH_INTERVAL_SECONDS": "0.2", "JPKI_MAX_RETRY_BACKOFF_SECONDS": "2"}
        jpki = str(Path(sys.executable).with_name("jpki-service"))
        # Only migrate (or serve) makes the store; operator add refuses a database without one.
        subprocess.run([jpki, "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([jpki, "operator", "add", "--username", "bench.sup", "--role", "supervisor"], env=env,
                       check=True, capture_output=True)
        res.spawn([jpki, "serve", "--port", str(port)], log=work / "service.log", env=env)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        ca_settings = CASettings(data_dir=work / "ca", public_url=f"http://127.0.0.1:{port + 100}")
        ca_store = Store(ca_settings.resolved_database_url())
        with httpx.Client(base_url=url, timeout=30) as client:
            registrations = [_register(client, ca_store, ca_settings, i) for i in range(args.phones)]
            token = client.post("/api/v1/operator/session",
                                json={"username": "bench.sup", "password": PASSWORD}).json()["token"]
        print(f"{len(registrations)} phones registered on PostgreSQL database {database}")

        outcomes: list[tuple[float, str, int | str]] = []  # (time, kind, status or error)
        accepted: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()
        queue = list(registrations)

        def drive(n: int) -> None:
            with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as c:
                while not stop.is_set():
                    with lock:
                        target = queue.pop() if queue and n % 2 == 0 else None
                    try:
                        if target is not None:
                            r = c.post(f"/api/v1/operator/registrations/{target}/suspend",
                                       json={"reason": "lost", "caller": "self", "ticket": "T-PG"})
                            if r.status_code in (200, 202):
                                with lock:
                                    accepted.append(target)
                            kind = "suspend"
                        else:
                            r = c.get(f"/api/v1/registrations/{registrations[n % len(registrations)]}")
                            kind = "look-up"
                        result: int | str = r.status_code
                    except httpx.HTTPError as exc:
                        kind, result = "any", type(exc).__name__
                    with lock:
                        outcomes.append((time.monotonic(), kind, result))
                    time.sleep(0.05)

        threads = [threading.Thread(target=drive, args=(n,)) for n in range(args.threads)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        restart_started = time.monotonic()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True)
        restart_done = time.monotonic()
        time.sleep(8)
        stop.set()
        for thread in threads:
            thread.join()

        failures = [(t, k, r) for t, k, r in outcomes if not (isinstance(r, int) and r < 500)]
        after = [(t, k, r) for t, k, r in outcomes if t > restart_done + 2]
        after_failures = [o for o in after if not (isinstance(o[2], int) and o[2] < 500)]
        print(f"restart took {restart_done - restart_started:.1f} s; {len(outcomes)} requests in all")
        if failures:
            print(f"failed: {len(failures)}, from {failures[0][0] - restart_started:+.1f} s to "
                  f"{failures[-1][0] - restart_started:+.1f} s after the restart began; kinds "
                  f"{sorted({str(r) for _t, _k, r in failures})}")
        else:
            print("failed: 0")
        print(f"after the restart (+2 s on): {len(after)} requests, {len(after_failures)} failed")

        # Every accepted suspension is recorded and reaches the CA, with no manual step.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with httpx.Client(base_url=url, timeout=10) as c:
                documents = [c.get(f"/api/v1/registrations/{r}").json() for r in accepted]
            if all(d["state"] == "suspended" and d["ca_sync"] == "done" for d in documents):
                break
            time.sleep(1)
        lost = [d["registration_id"] for d in documents if d["state"] != "suspended"]
        unsynced = [d["registration_id"] for d in documents if d["ca_sync"] != "done"]
        print(f"suspensions accepted: {len(accepted)}; not recorded: {len(lost)}; not at the CA after 60 s: "
              f"{len(unsynced)}")
        ca_store.dispose()
        ok = not after_failures and not lost and not unsynced
        print("recovered without a manual step" if ok else "DID NOT recover on its own")
    _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
