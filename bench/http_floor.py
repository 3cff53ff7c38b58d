"""The floor under a registration: what the plumbing alone costs on this machine, next to its signatures.

The registration goal (docs/benchmarks-history.md, section 4) asks for at least a quarter of the machine's raw
RSA-2048 signing limit: with 6 CA signatures per registration, the whole path may spend at most 4 x the
CPU of those 6 signatures. This script measures, in one run, the pieces every registration is made of,
each doing nothing else:

- raw RSA-2048 PKCS#1 v1.5 SHA-256 signing with `cryptography`, one process (the goal's peer);
- one JSON POST through uvicorn + FastAPI (a sync endpoint with a pydantic body, as the service's and the
  CA's endpoints are) from an httpx client: the server's CPU and the client's CPU per exchange;
- one write transaction of the project's own store (`ca_mock.db.Store.transaction()`: one ORM row added
  and committed) on SQLite (WAL, synchronous=FULL), and on PostgreSQL with `--database-url`;
- one read of the same store (`Store.sessions()`: one row by primary key).

It then adds up what one registration needs at the least from these pieces on the servers' side (counted
from the code: 5 server exchanges, 3 of them with the service as the client of the CA; 10 write
transactions and 5 reads between service and CA; the phone's own client side is left out) and sets it
against the goal's budget.

Example: .venv/bin/python bench/http_floor.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy import String  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

from jpki_common.store import Store  # noqa: E402

# What one registration does, counted from the code (jpki_service.registrations.service.register,
# ca_commands.dispatch, ca_mock.certificates.service.issue_certificate), for the floor below.
EXCHANGES_SERVED = 5  # POST /challenges, POST /registrations; at the CA: POST /ocsp, 2 x POST /certificates
EXCHANGES_SENT_BY_SERVICE = 3  # the card's OCSP check, 2 issues
EXCHANGES_SENT_BY_PHONE = 2
WRITE_TRANSACTIONS = 10  # service: attempt counter, challenge, spend, register, 2 issue results;
                         # CA: 2 x (partition, issuance)
READS = 5  # service: due commands, the answer's document; CA: 2 replay checks, the card's OCSP answer
SIGNATURES = 6

NOOP_APP = '''
from fastapi import FastAPI
from pydantic import BaseModel


class Body(BaseModel):
    operation_id: str
    profile: str
    csr_pem: str


app = FastAPI()


@app.post("/x")
def x(body: Body) -> dict:
    return {"serial": "1f", "status": "good", "certificate_pem": body.csr_pem}
'''


def sign_rate(seconds: float) -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        key.sign(b"x" * 64, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count / (time.process_time() - start)


def http_exchange(res: common.Resources, count: int) -> tuple[float, float]:
    """(server CPU ms, client CPU ms) per POST of a 1.2 KB JSON body through uvicorn + FastAPI + httpx."""
    work = res.tempdir("floor")
    (work / "noop_app.py").write_text(textwrap.dedent(NOOP_APP))
    port = common.free_port()
    server = res.spawn([common.PYTHON, "-m", "uvicorn", "noop_app:app", "--port", str(port), "--log-level",
                        "warning", "--app-dir", str(work)], log=work / "uvicorn.log")
    common.wait_for_port(port, server, log=work / "uvicorn.log")
    body = {"operation_id": "svc-" + "0" * 32, "profile": "phone-signature", "csr_pem": "A" * 1200}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):  # warm-up
            client.post("/x", json=body).raise_for_status()
        server_cpu, client_cpu = common.tree_cpu_seconds(server.pid), time.process_time()
        for _ in range(count):
            client.post("/x", json=body).raise_for_status()
        client_cpu = time.process_time() - client_cpu
        server_cpu = common.tree_cpu_seconds(server.pid) - server_cpu
    res.stop(server)
    return server_cpu / count * 1000, client_cpu / count * 1000


def store_costs(url: str, count: int) -> tuple[float, float]:
    """(ms per write transaction, ms per read), CPU of this process, through the project's Store."""
    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = f"floor_{uuid.uuid4().hex[:8]}"
        id: Mapped[str] = mapped_column(String(32), primary_key=True)
        value: Mapped[str] = mapped_column(String(200))

    store = Store(url)
    Base.metadata.create_all(store.engine)
    try:
        ids = [uuid.uuid4().hex for _ in range(count)]
        start = time.process_time()
        for row_id in ids:
            with store.transaction() as session:
                session.add(Row(id=row_id, value="v" * 100))
        write = (time.process_time() - start) / count * 1000
        start = time.process_time()
        for row_id in ids:
            with store.sessions() as session:
                session.get(Row, row_id)
        read = (time.process_time() - start) / count * 1000
        return write, read
    finally:
        Base.metadata.drop_all(store.engine)
        store.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="POSTs timed (default 3000)")
    parser.add_argument("--transactions", type=int, default=1000, help="store transactions timed (default 1000)")
    parser.add_argument("--database-url", default=None, help="also measure the store on this PostgreSQL database")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    print(f"machine: {common.machine_line()}")
    rate = sign_rate(3.0)
    signature_ms = 1000 / rate
    budget = 4 * SIGNATURES * signature_ms
    print(f"raw RSA-2048 signing, one process: {rate:.0f}/s, {signature_ms:.3f} ms CPU each; "
          f"{SIGNATURES} per registration = {SIGNATURES * signature_ms:.2f} ms")
    print(f"the goal (a quarter of the signing limit) allows {budget:.2f} ms of CPU per registration, "
          "everything included\n")
    with common.Resources(keep=args.keep) as res:
        server_ms, client_ms = http_exchange(res, args.requests)
        print(f"one do-nothing POST (uvicorn + FastAPI + pydantic, httpx client): server {server_ms:.3f} ms, "
              f"client {client_ms:.3f} ms CPU")
        stores = {"SQLite": f"sqlite:///{res.tempdir('floor-db') / 'floor.sqlite3'}"}
        if args.database_url:
            stores["PostgreSQL"] = args.database_url
        # The phones' own client side is left out (phones are not this machine): the floor is the servers'.
        http = EXCHANGES_SERVED * server_ms + EXCHANGES_SENT_BY_SERVICE * client_ms
        print(f"  (not counted below: the phone's own {EXCHANGES_SENT_BY_PHONE} exchanges, "
              f"{EXCHANGES_SENT_BY_PHONE * client_ms:.2f} ms on the phone)")
        for name, url in stores.items():
            write_ms, read_ms = store_costs(url, args.transactions)
            database = WRITE_TRANSACTIONS * write_ms + READS * read_ms
            floor = http + database + SIGNATURES * signature_ms
            print(f"\n{name}: one write transaction {write_ms:.3f} ms, one read {read_ms:.3f} ms CPU "
                  f"(client side{'; the server process not counted' if name == 'PostgreSQL' else ''})")
            print(f"  floor of one registration: HTTP {http:.2f} ms ({EXCHANGES_SERVED} served, "
                  f"{EXCHANGES_SENT_BY_SERVICE} sent by the service) + store {database:.2f} ms "
                  f"({WRITE_TRANSACTIONS} writes, {READS} reads) + signatures {SIGNATURES * signature_ms:.2f} ms "
                  f"= {floor:.2f} ms, against a budget of {budget:.2f} ms: {floor / budget:.1f}x the budget "
                  "before any checking, parsing, certificate building or business logic")
    return 0


if __name__ == "__main__":
    common.run(main)
