"""Fault injection: the service killed with SIGKILL at every step of every transition that
touches the CA, then restarted; and the CA down while owners and operators act.

For each crash point (``jpki_service.common.faults``) and each operation, a registration is prepared by
a normal service process; a second process, started with ``JPKI_CRASH_AT``, receives the
request and kills itself at that point; a third, normal again, is left to settle (no command
pending). Then, at the CA's own API:

- **lost**: the request was recorded (its history row exists) but its effect is not at the CA;
- **diverged**: a certificate's status in the service differs from the CA's, or the CA holds a
  certificate of the card that the service does not know;
- **twice**: a certificate issued twice for one command, or a status change applied twice, or
  a revocation reason other than the one first asked for.

All three must be 0. A crash *before* the record would legitimately lose the request (the owner
got no answer, nothing was promised); every point here is after the record, so that count is
reported and expected to be 0 too. ``docs/faults-and-races.md`` has the figures.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from ca_mock.authorities.service import initialise
from ca_mock.db import migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store as CAStore
from jpki_service.adapters.db import Store as ServiceStore
from jpki_service.ca_commands.service import queue_summary
from jpki_service.common.faults import POINTS
from jpki_service.registrations.models import PhoneCertificate, Registration, RegistrationEvent
from tests.conftest import _empty_database, free_port, start_process, stop_process
from tests.helpers import PERSON
from tests.service_helpers import (
    OPERATOR_PASSWORD,
    PhoneForTests,
    add_operator,
    lift_body,
    make_card,
    proof_for,
    read,
    register,
    register_body,
)

pytestmark = pytest.mark.e2e

LOST = {"reason": "lost", "caller": "self", "ticket": "T-1"}


# -- processes -------------------------------------------------------------------------------
@dataclass
class CAProcess:
    url: str
    token: str
    settings: CASettings
    store: CAStore
    args: list
    env: dict
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start_process(self.args, self.env, f"{self.url}/healthz", self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def kill_and_restart(self) -> None:
        """SIGKILL (no shutdown code runs), then start again on the same store."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.start()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


@dataclass
class ServiceProcess:
    """``jpki-service serve`` on a fixed port and database, started and killed at will."""

    url: str
    port: int
    database_url: str
    data_dir: Path
    env: dict
    log: Path
    process: subprocess.Popen | None = None
    store: ServiceStore | None = None
    armed: bool = False  # the running process was started with JPKI_CRASH_AT (or other extra settings)

    def arm(self, point: str) -> None:
        """Make the running process kill itself at ``point`` (JPKI_CRASH_AT_FILE, common/faults.py)."""
        draft = self.crash_file.with_suffix(".draft")
        draft.write_text(point)
        draft.replace(self.crash_file)

    def disarm(self) -> None:
        self.crash_file.unlink(missing_ok=True)

    @property
    def crash_file(self) -> Path:
        return Path(self.env["JPKI_CRASH_AT_FILE"])

    def start(self, crash_at: str | None = None, **extra: str) -> None:
        env = {**self.env, **extra}
        if crash_at:
            env["JPKI_CRASH_AT"] = crash_at
        self.process = start_process([sys.executable, "-m", "jpki_service", "serve", "--port", str(self.port)],
                                     env, f"{self.url}/healthz", self.log)
        self.armed = bool(crash_at or extra)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def wait_dead(self, timeout: float = 20.0) -> int | None:
        """The exit status once the process has died by itself, or None if it is still running."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.process = None
        return code

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def db(self) -> ServiceStore:
        if self.store is None:
            self.store = ServiceStore(self.database_url)
        return self.store

    def settle(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until the background dispatcher has no command pending; returns the queue summary."""
        deadline = time.monotonic() + timeout
        while True:
            queue = queue_summary(self.db())
            if not queue.get("pending"):
                return queue
            if time.monotonic() > deadline:
                raise AssertionError(f"the CA queue did not settle: {queue}")
            time.sleep(0.2)

    def login(self, username: str, role: str) -> str:
        add_operator(self, username, role)
        with self.client() as client:
            answer = client.post("/api/v1/operator/session", json={"username": username, "password": OPERATOR_PASSWORD})
        assert answer.status_code == 201, answer.text
        return answer.json()["token"]


@dataclass
class Bench:
    """One CA and one service database per backend, for a whole module (each case has a card and
    a person of its own, so the cases of one bench do not meet)."""

    kind: str
    ca: CAProcess
    service: ServiceProcess
    tokens: dict[str, str] = field(default_factory=dict)
    tally: Counter = field(default_factory=Counter)
    people: int = 0

    def person(self) -> dict:
        self.people += 1
        return {**PERSON, "name": f"試験 {self.kind}{self.people}", "address": f"東京都千代田区千代田1-{self.people}"}



def make_bench(kind: str, tmp: Path, stack) -> Bench:
    """Start a CA process and prepare (not start) a service process, on ``kind``; torn down by ``stack``."""
    ca_db = stack.enter_context(_empty_database(kind, tmp, "ca"))
    svc_db = stack.enter_context(_empty_database(kind, tmp, "svc"))
    ca_port = free_port()
    settings = CASettings(data_dir=tmp / "ca", database_url=ca_db, public_url=f"http://127.0.0.1:{ca_port}")
    ca_store = CAStore(settings.resolved_database_url())
    migrate(ca_store.url)
    initialise(ca_store, settings)
    stack.callback(ca_store.dispose)
    ca = CAProcess(f"http://127.0.0.1:{ca_port}", settings.resolved_api_token() or "", settings, ca_store,
                   [sys.executable, "-m", "ca_mock", "serve", "--port", str(ca_port)],
                   {"JPKI_CA_DATA_DIR": str(settings.data_dir),
                    "JPKI_CA_DATABASE_URL": settings.resolved_database_url()}, tmp / "ca-server.log")
    ca.start()
    stack.callback(ca.stop)
    port = free_port()
    env = {
        "JPKI_DATA_DIR": str(tmp / "service"), "JPKI_DATABASE_URL": svc_db,
        "JPKI_CA_URL": ca.url, "JPKI_CA_TOKEN": ca.token,
        "JPKI_DISPATCH_INTERVAL_SECONDS": "0.2", "JPKI_MAX_RETRY_BACKOFF_SECONDS": "1",
        "JPKI_CASCADE_INTERVAL_SECONDS": "1",
        # The crash matrix crashes the acts themselves; the two-person rule's wait has its own tests.
        "JPKI_TWO_PERSON_ACTS": "",
        # The matrix arms the running service for each case (ServiceProcess.arm), no new process needed.
        "JPKI_CRASH_AT_FILE": str(tmp / "crash-at"),
    }
    service = ServiceProcess(f"http://127.0.0.1:{port}", port, svc_db, tmp / "service", env, tmp / "service.log")
    stack.callback(lambda: service.store and service.store.dispose())
    stack.callback(service.stop)
    return Bench(kind, ca, service)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def bench(request, tmp_path_factory):
    """Shared by the matrix's tests on one backend (one per operation, so that xdist's workers share the
    matrix): the CA's store, hierarchy and process and the service's database are made once."""
    import contextlib

    with contextlib.ExitStack() as stack:
        b = make_bench(request.param, tmp_path_factory.mktemp(f"faults-{request.param}"), stack)
        b.service.start()
        b.tokens["operator"] = b.service.login("olga", "operator")
        b.tokens["supervisor"] = b.service.login("sven", "supervisor")
        yield b


# -- reading the CA and the service ----------------------------------------------------------
def ca_certificate(bench: Bench, serial: str) -> dict:
    with bench.ca.client() as client:
        answer = client.get(f"/api/v1/certificates/{serial}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def ca_certificates_of_card(bench: Bench, card_serial: str) -> list[dict]:
    with bench.ca.client() as client:
        answer = client.get("/api/v1/certificates", params={"card_serial": card_serial})
    assert answer.status_code == 200, answer.text
    return answer.json()


def service_snapshot(bench: Bench, card_serial: str) -> list[dict]:
    with bench.service.db().sessions() as session:
        out = []
        for registration in session.scalars(select(Registration).where(Registration.card_serial == card_serial)
                                            .order_by(Registration.created_at)):
            events = [(e.event, e.from_state, e.to_state) for e in session.scalars(
                select(RegistrationEvent).where(RegistrationEvent.registration_id == registration.id)
                .order_by(RegistrationEvent.id))]
            certificates = [{"kind": c.kind, "serial": c.serial, "status": c.status, "current": c.current}
                            for c in session.scalars(select(PhoneCertificate)
                                                     .where(PhoneCertificate.registration_id == registration.id)
                                                     .order_by(PhoneCertificate.id))]
            out.append({"id": registration.id, "state": registration.state, "events": events,
                        "certificates": certificates})
        return out


def divergences(bench: Bench, card_serial: str) -> list[str]:
    """Every disagreement between the service and the CA about the certificates of one card."""
    problems = []
    known = {}
    for registration in service_snapshot(bench, card_serial):
        for certificate in registration["certificates"]:
            if certificate["serial"] is None:
                # An unissued certificate may only remain on a registration that died before issuance.
                if registration["state"] not in ("revoked", "expired"):
                    problems.append(f"{registration['id']}: {certificate['kind']} never issued")
                continue
            known[certificate["serial"]] = certificate["status"]
    for at_ca in ca_certificates_of_card(bench, card_serial):
        serial = at_ca["serial"]
        if serial not in known:
            problems.append(f"certificate {serial} issued at the CA but unknown to the service")
        elif known[serial] != at_ca["status"]:
            problems.append(f"certificate {serial}: service {known[serial]}, CA {at_ca['status']}")
    return problems


def applied_twice(bench: Bench, card_serial: str) -> list[str]:
    """A status change repeated at the CA (two events in a row with one status)."""
    problems = []
    for at_ca in ca_certificates_of_card(bench, card_serial):
        statuses = [e["status"] for e in ca_certificate(bench, at_ca["serial"])["history"]]
        if any(a == b for a, b in zip(statuses, statuses[1:], strict=False)):
            problems.append(f"certificate {at_ca['serial']}: history {statuses}")
    return problems


# -- the operations --------------------------------------------------------------------------
@dataclass
class Case:
    card: object
    phone: PhoneForTests
    registration_id: str | None = None
    before: dict | None = None  # the registration's certificates before the request: kind -> serial


def _registered(bench: Bench, suspended: bool = False) -> Case:
    card = make_card(bench.ca.store, bench.ca.settings, bench.person())
    phone = PhoneForTests()
    with bench.service.client() as client:
        answer = register(client, card, phone)
        assert answer.status_code == 201, answer.text
        if suspended:
            with bench.service.client(bench.tokens["operator"]) as operator:
                answer = operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend", json=LOST)
            assert answer.status_code == 200, answer.text
    serials = {c["kind"]: c["serial"] for c in answer.json()["certificates"] if c["current"]}
    return Case(card, phone, phone.registration_id, serials)


def _fresh(bench: Bench) -> Case:
    return Case(make_card(bench.ca.store, bench.ca.settings, bench.person()), PhoneForTests())


def _send(bench: Bench, method_path: str, body_for, token: str | None = None) -> httpx.Response:
    """Build the body against the (crash-armed) service and post it; the answer, or None if cut off."""
    with bench.service.client(token) as client:
        body = body_for(client)
        try:
            return client.post(method_path, json=body)
        except httpx.TransportError:
            return None


def op_register(bench, case):
    def body(client):
        return register_body(client, case.card, case.phone)
    return _send(bench, "/api/v1/registrations", body)


def op_owner_revoke(bench, case):
    return _send(bench, f"/api/v1/registrations/{case.registration_id}/revoke",
                 lambda client: proof_for(client, "revoke", case.phone, case.phone.signature_key))


def op_uninstall(bench, case):
    return _send(bench, f"/api/v1/registrations/{case.registration_id}/uninstall",
                 lambda client: proof_for(client, "uninstall", case.phone, case.phone.device_key))


def op_operator_suspend(bench, case):
    return _send(bench, f"/api/v1/operator/registrations/{case.phone.case_reference}/suspend", lambda _c: LOST,
                 bench.tokens["operator"])


def op_supervisor_lift(bench, case):
    return _send(bench, f"/api/v1/operator/registrations/{case.phone.case_reference}/lift",
                 lambda _c: {"reason": "phone found", "ticket": "T-2", "caller": "self"}, bench.tokens["supervisor"])


def op_owner_lift(bench, case):
    case.new_key = rsa.generate_private_key(65537, 2048)
    return _send(bench, f"/api/v1/registrations/{case.registration_id}/lift-suspension",
                 lambda client: lift_body(client, case.card, case.phone, case.new_key))


def op_supervisor_revoke(bench, case):
    return _send(bench, f"/api/v1/operator/registrations/{case.phone.case_reference}/revoke",
                 lambda _c: {"reason": "keyCompromise", "ticket": "T-3", "caller": "self"}, bench.tokens["supervisor"])


def _revoked_both(reason: str):
    def check(bench, case, registration) -> list[str]:
        problems = []
        for kind, serial in case.before.items():
            at_ca = ca_certificate(bench, serial)
            if (at_ca["status"], at_ca["reason"]) != ("revoked", reason):
                problems.append(f"{kind} {serial} at the CA: {at_ca['status']} {at_ca['reason']}, not revoked {reason}")
        return problems
    return check


def _check_registered(bench, case, registration) -> list[str]:
    at_ca = ca_certificates_of_card(bench, case.card.serial)
    problems = [] if registration["state"] == "active" else [f"state {registration['state']}, not active"]
    if sorted(c["profile"] for c in at_ca) != ["phone-authentication", "phone-signature"]:
        problems.append(f"certificates of the card at the CA: {[c['profile'] for c in at_ca]}")
    problems += [f"{c['serial']} is {c['status']} at the CA" for c in at_ca if c["status"] != "good"]
    return problems


def _check_suspended(bench, case, registration) -> list[str]:
    problems = [] if registration["state"] == "suspended" else [f"state {registration['state']}, not suspended"]
    for kind, serial in case.before.items():
        if ca_certificate(bench, serial)["status"] != "held":
            problems.append(f"{kind} {serial} not held at the CA")
    return problems


def _check_supervisor_lifted(bench, case, registration) -> list[str]:
    problems = [] if registration["state"] == "active" else [f"state {registration['state']}, not active"]
    auth, sign = ca_certificate(bench, case.before["authentication"]), ca_certificate(bench, case.before["signature"])
    if auth["status"] != "good":
        problems.append(f"authentication {auth['status']} at the CA, not good")
    if (sign["status"], sign["reason"]) != ("revoked", "superseded"):
        problems.append(f"old signature {sign['status']} {sign['reason']} at the CA, not revoked superseded")
    return problems


def _check_owner_lifted(bench, case, registration) -> list[str]:
    problems = _check_supervisor_lifted(bench, case, registration)
    at_ca = ca_certificates_of_card(bench, case.card.serial)
    if len(at_ca) != 3:
        problems.append(f"{len(at_ca)} certificates of the card at the CA, not 3 (one reissue)")
    current = [c for c in registration["certificates"] if c["current"] and c["kind"] == "signature"]
    if len(current) != 1 or not current[0]["serial"] or ca_certificate(bench, current[0]["serial"])["status"] != "good":
        problems.append(f"no good new signature certificate: {current}")
    return problems


OPERATIONS = {
    # name: (setup, send, event recorded, check)
    "register": (_fresh, op_register, "registered", _check_registered),
    "owner-revoke": (_registered, op_owner_revoke, "owner-revoked", _revoked_both("cessationOfOperation")),
    "uninstall": (_registered, op_uninstall, "uninstalled", _revoked_both("cessationOfOperation")),
    "operator-suspend": (_registered, op_operator_suspend, "suspended", _check_suspended),
    "supervisor-lift": (lambda b: _registered(b, suspended=True), op_supervisor_lift, "supervisor-lifted",
                        _check_supervisor_lifted),
    "owner-lift": (lambda b: _registered(b, suspended=True), op_owner_lift, "owner-lifted", _check_owner_lifted),
    "supervisor-revoke": (_registered, op_supervisor_revoke, "supervisor-revoked", _revoked_both("keyCompromise")),
}
# The second command of a request too (every operation here carries two or three).
CRASH_AT = [*POINTS, "during-ca-call:2", "after-ca-answer:2"]


def service_cli(bench: Bench, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``jpki-service ARGS`` on the service's data folder and database."""
    env = {**os.environ, "JPKI_DATA_DIR": str(bench.service.data_dir), "JPKI_DATABASE_URL": bench.service.database_url}
    result = subprocess.run([sys.executable, "-m", "jpki_service", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def ca_cli(bench: Bench, *args: str) -> subprocess.CompletedProcess:
    """``jpki-ca ARGS`` on the CA's data folder and store."""
    result = subprocess.run([sys.executable, "-m", "ca_mock", "--data", str(bench.ca.settings.data_dir), *args],
                            env={**os.environ, **bench.ca.env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def run_admin_commands(bench: Bench, card_serial: str, on_the_ca: bool) -> None:
    """What an administrator runs while the CA serves and the service is down after a crash, each on the
    live stores: ``jpki-service status`` on the store the crash just left, and with ``on_the_ca``
    ``jpki-ca status`` and ``jpki-ca crl`` (``jpki-ca status`` once made the running CA's commits vanish at
    its next restart). The CA's store is the same whichever point the service crashed at, so its two
    commands run at each test's first crash, before the commits of its other cases, which the CA's SIGKILL
    and restart at the test's end then checks; the service's command runs beside them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        service_status = pool.submit(service_cli, bench, "status")
        if on_the_ca:
            ca_cli(bench, "status", card_serial)
            ca_cli(bench, "crl", "--issuer", "sign")
        service_status.result()


def run_case(bench: Bench, point: str, operation: str, first: bool = True) -> dict:
    setup, send, event, check = OPERATIONS[operation]
    bench.service.disarm()  # left armed by a case that failed half-way (the bench is shared)
    if bench.service.process is not None and bench.service.armed:
        bench.service.stop()  # started with other settings by a case that failed half-way
    if bench.service.process is None:
        bench.service.start()
    case = setup(bench)
    bench.service.settle()  # nothing left for the dispatcher: the next pass of a point is the request's

    bench.service.arm(point)
    try:
        answer = send(bench, case)
        code = bench.service.wait_dead()
    finally:
        bench.service.disarm()
    crashed = code == -9
    if code is None:
        bench.service.stop()  # the point was not reached: the request ran to its end
    run_admin_commands(bench, case.card.serial, on_the_ca=first)
    bench.service.start()
    queue = bench.service.settle()

    registrations = service_snapshot(bench, case.card.serial)
    registration = next((r for r in registrations if r["id"] == case.registration_id), None) \
        if case.registration_id else (registrations[0] if registrations else None)
    recorded = registration is not None and any(e[0] == event for e in registration["events"])
    outcome = {"point": point, "operation": operation, "card": case.card.serial, "crashed": crashed,
               "answered": answer is not None,
               "status": answer.status_code if answer is not None else None, "recorded": recorded,
               "lost": [], "diverged": [], "twice": [], "failed_commands": queue.get("failed", 0)}
    if answer is not None and answer.status_code >= 500:
        outcome["diverged"].append(f"HTTP {answer.status_code}: {answer.text[:200]}")
    if recorded:
        outcome["lost"] = check(bench, case, registration)
    outcome["diverged"] += divergences(bench, case.card.serial)
    outcome["twice"] = applied_twice(bench, case.card.serial)
    return outcome


CASES = [(point, operation) for point in CRASH_AT for operation in OPERATIONS]


def summary_line(kind: str, outcomes: list[dict], seconds: float) -> str:
    count = Counter()
    for o in outcomes:
        count["crashed"] += o["crashed"]
        count["answered"] += o["answered"]
        count["recorded"] += o["recorded"]
        count["lost"] += bool(o["lost"])
        count["diverged"] += bool(o["diverged"])
        count["twice"] += bool(o["twice"])
    return (f"fault injection on {kind}: crash points {len({o['point'] for o in outcomes})}, "
            f"operations {len({o['operation'] for o in outcomes})}, cases {len(outcomes)}, "
            f"crashed {count['crashed']}, answered anyway {count['answered']}, recorded {count['recorded']}, "
            f"not recorded {len(outcomes) - count['recorded']}, lost {count['lost']}, "
            f"diverged {count['diverged']}, applied twice {count['twice']} ({seconds:.0f} s)")


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_crash_point_of_every_operation(bench: Bench, operation: str, capsys):
    """The matrix, one test per backend and operation, on one CA and one service database per backend
    (``JPKI_FAULT_CASES=word,word`` narrows it; on SQLite the ``:2`` points need ``JPKI_FAULT_FULL=1``)."""
    wanted = [w for w in os.environ.get("JPKI_FAULT_CASES", "").split(",") if w]
    cases = [(p, o) for p, o in CASES
             if o == operation and (not wanted or any(w in f"{p}/{o}" for w in wanted))]
    if bench.kind == "sqlite" and not os.environ.get("JPKI_FAULT_FULL"):
        cases = [(p, o) for p, o in cases if p in POINTS]  # the 2nd-command points on PostgreSQL only, for time
    if not cases:
        pytest.skip(f"JPKI_FAULT_CASES leaves no case of {operation}")
    started = time.monotonic()
    outcomes = []
    for point, _ in cases:
        began = time.monotonic()
        outcome = run_case(bench, point, operation, first=not outcomes)
        outcomes.append(outcome)
        with capsys.disabled():
            print(f"\n[{bench.kind}] {point:18} {operation:18} {time.monotonic() - began:4.1f}s "
                  f"crashed={outcome['crashed']} "
                  f"answer={outcome['status']} recorded={outcome['recorded']} lost={outcome['lost']} "
                  f"diverged={outcome['diverged']} twice={outcome['twice']}", end="")
    # The CA killed and started again: every change it took during the matrix is still there.
    bench.ca.kill_and_restart()
    for outcome in outcomes:
        outcome["diverged"] += [f"after the CA's restart: {problem}"
                                for problem in divergences(bench, outcome["card"])]
    line = summary_line(bench.kind, outcomes, time.monotonic() - started)
    with capsys.disabled():
        print("\n" + line)
    assert all(o["crashed"] for o in outcomes), [o for o in outcomes if not o["crashed"]]
    assert all(o["recorded"] for o in outcomes), [o for o in outcomes if not o["recorded"]]
    assert not any(o["lost"] or o["diverged"] or o["twice"] or o["failed_commands"] for o in outcomes), line


# -- the CA down -----------------------------------------------------------------------------
OUTAGE_SECONDS = 6.0  # stands in for "minutes": the retry back-off is capped at 1 s here, 30 s by default


def test_ca_down_then_back_everything_carried_in_order(ca_server, service_server):
    """Owners revoke and operators suspend while the CA is down: 202 pending, visible in
    ``jpki-service status``; when the CA is back the background dispatcher carries every
    command, in each registration's order, with no further action."""
    from tests.service_helpers import operator_client

    phones = []
    with service_server.client() as client:
        for i in range(4):
            card = make_card(ca_server.store, ca_server.settings,
                             {**PERSON, "name": f"停電 {i}", "address": f"大阪府大阪市{i}"})
            phone = PhoneForTests()
            answer = register(client, card, phone)
            assert answer.status_code == 201, answer.text
            phones.append((phone, {c["kind"]: c["serial"] for c in answer.json()["certificates"]}))

    ca_server.stop()
    with service_server.client() as owner, operator_client(service_server, "otto", "operator") as operator:
        answers = []
        for phone, _ in phones[:2]:  # the owners revoke before selling
            answers.append(owner.post(f"/api/v1/registrations/{phone.registration_id}/revoke",
                                      json=proof_for(owner, "revoke", phone, phone.signature_key)))
        for phone, _ in phones[2:]:  # lost phones reported to the call centre
            answers.append(operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend", json=LOST))
        # ... and the owner of the third one then revokes it for good: hold, then revoke, in that order.
        phone = phones[2][0]
        answers.append(owner.post(f"/api/v1/registrations/{phone.registration_id}/revoke",
                                  json=proof_for(owner, "revoke", phone, phone.signature_key)))
    for answer in answers:
        assert answer.status_code == 202 and answer.json()["ca_sync"] == "pending", answer.text
    assert [a.json()["state"] for a in answers] == ["revoked", "revoked", "suspended", "suspended", "revoked"]

    env = {**os.environ, "JPKI_DATA_DIR": str(service_server.data_dir),
           "JPKI_DATABASE_URL": service_server.database_url}
    status = subprocess.run([sys.executable, "-m", "jpki_service", "status"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    # 2 + 2 revokes, 2 + 2 holds, 2 revokes after the third one's holds.
    assert "CA queue       pending 10, failed 0" in status.stdout, status.stdout

    time.sleep(OUTAGE_SECONDS)  # the dispatcher keeps trying, and keeps failing, meanwhile
    ca_server.start()

    def settled():
        return "CA queue       pending 0, failed 0" in subprocess.run(
            [sys.executable, "-m", "jpki_service", "status"], env=env, capture_output=True, text=True,
            timeout=60).stdout

    deadline = time.monotonic() + 60
    while not settled():
        assert time.monotonic() < deadline, "the commands were not carried after the CA came back"
        time.sleep(0.5)

    def at_ca(serial):
        with httpx.Client(base_url=ca_server.url, headers={"Authorization": f"Bearer {ca_server.token}"}) as ca:
            return ca.get(f"/api/v1/certificates/{serial}").json()

    expected = [("revoked", "cessationOfOperation", ["good", "revoked"])] * 2 + [
        ("revoked", "cessationOfOperation", ["good", "held", "revoked"]), ("held", "certificateHold", ["good", "held"])]
    with service_server.client() as client:
        for (phone, _serials), (status_, reason, history) in zip(phones, expected, strict=True):
            document = read(client, phone)
            assert document["ca_sync"] == "done"
            for certificate in document["certificates"]:
                seen = at_ca(certificate["serial"])
                assert (seen["status"], seen["reason"]) == (status_, reason), seen
                assert [e["status"] for e in seen["history"]] == history, seen["history"]
                assert certificate["status"] == seen["status"]  # the service agrees with the CA


# -- the ordering hole these found, now closed (docs/faults-and-races.md, "Bugs found") ------------
def test_commands_of_one_certificate_stay_in_order_across_back_off(tmp_path):
    """Suspended while the CA is down (the holds are retried with a growing back-off), then lifted
    while it is still down: the release must not reach the CA before the hold it undoes."""
    import contextlib
    import datetime as dt

    from jpki_service.adapters.db import utcnow
    from jpki_service.ca_commands.models import CACommand

    with contextlib.ExitStack() as stack:
        bench = make_bench("sqlite", tmp_path, stack)
        bench.service.start(JPKI_MAX_RETRY_BACKOFF_SECONDS="30")  # the default cap
        bench.tokens["operator"] = bench.service.login("olga", "operator")
        bench.tokens["supervisor"] = bench.service.login("sven", "supervisor")
        case = _registered(bench)
        bench.ca.stop()
        with bench.service.client(bench.tokens["operator"]) as operator:
            assert operator.post(f"/api/v1/operator/registrations/{case.phone.case_reference}/suspend",
                                 json=LOST).status_code == 202
        time.sleep(3)  # the holds fail once or twice
        with bench.service.client(bench.tokens["supervisor"]) as supervisor:
            lifted = supervisor.post(f"/api/v1/operator/registrations/{case.phone.case_reference}/lift",
                                     json={"reason": "phone found", "ticket": "T-9", "caller": "self"})
        assert lifted.status_code == 202, lifted.text
        # Where the holds' back-off would stand after a few minutes' outage (4 failures: 16 s; cap
        # 30 s), written directly rather than waited for; the release has failed at most once (2 s).
        with bench.service.db().transaction() as session:
            for command in session.scalars(select(CACommand).where(CACommand.action == "hold")):
                command.attempts, command.next_attempt_at = 4, utcnow() + dt.timedelta(seconds=16)
        with bench.service.db().sessions() as session:
            queue = [(c.id, c.action, c.certificate_id, c.attempts, c.next_attempt_at.isoformat())
                     for c in session.scalars(select(CACommand).where(CACommand.state == "pending")
                                              .order_by(CACommand.id))]
        print("\nqueue after the lift:", *queue, sep="\n  ")
        bench.ca.start()
        bench.service.settle()
        auth = ca_certificate(bench, case.before["authentication"])
        registration = service_snapshot(bench, case.card.serial)[0]
        print("authentication at the CA:", auth["status"], [e["status"] for e in auth["history"]])
        print("service:", registration["state"], registration["certificates"])
        assert registration["state"] == "active"
        assert [e["status"] for e in auth["history"]] == ["good", "held", "good"], auth["history"]
        assert not divergences(bench, case.card.serial)


def test_revoke_never_overtakes_its_issue_in_back_off(tmp_path):
    """Registered, then the CA stops answering before the issue reached it (the issues wait in
    back-off); the owner uninstalls (device key: no CA needed). When the CA is back, no
    certificate of that registration may be good there."""
    import contextlib
    import datetime as dt

    from jpki_service.adapters.db import utcnow
    from jpki_service.ca_commands.models import CACommand

    with contextlib.ExitStack() as stack:
        bench = make_bench("sqlite", tmp_path, stack)
        case = _fresh(bench)
        bench.service.start(crash_at="during-ca-call")  # recorded, then killed before the issue call
        assert op_register(bench, case) is None
        assert bench.service.wait_dead() == -9
        bench.ca.stop()
        bench.service.start()  # the issues fail: the CA is down; they wait in back-off
        registration = service_snapshot(bench, case.card.serial)[0]
        case.registration_id = case.phone.registration_id = registration["id"]
        time.sleep(1)
        with bench.service.db().transaction() as session:  # where a few minutes' outage would leave them
            for command in session.scalars(select(CACommand).where(CACommand.action == "issue")):
                command.attempts, command.next_attempt_at = 4, utcnow() + dt.timedelta(seconds=10)
        answer = op_uninstall(bench, case)
        print("\nuninstall:", answer.status_code, answer.json()["state"], answer.json()["ca_sync"])
        with bench.service.db().sessions() as session:
            print("queue:", *[(c.id, c.action, c.state, c.last_error) for c in
                              session.scalars(select(CACommand).order_by(CACommand.id))], sep="\n  ")
        bench.ca.start()
        bench.service.settle()
        at_ca = ca_certificates_of_card(bench, case.card.serial)
        print("at the CA:", [(c["profile"], c["status"]) for c in at_ca])
        print("service:", service_snapshot(bench, case.card.serial)[0])
        assert all(c["status"] == "revoked" for c in at_ca), "uninstalled, yet good at the CA"
        assert not divergences(bench, case.card.serial)
