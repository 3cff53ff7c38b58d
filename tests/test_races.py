"""Races: every request an owner, an operator or a supervisor can make, fired at once at the same
registration from separate connections, round after round, against the real service and CA
processes. PostgreSQL is the production store (row locks: person, registration, audit head);
SQLite serialises writers and gets a shorter run.

Afterwards, for every registration the service holds:

- its state is one of the domain's (``jpki_service.lifecycle.State``);
- its history is one unbroken chain (each event leaves the state the previous one reached) that
  never leaves a final state (revoked, expired): nothing came back;
- it ends in the state its last history row reached;
- each certificate's status in the service is the CA's (asked at the CA's API), and the CA holds
  no certificate of the card unknown to the service;
- no command towards the CA failed;

and no person has more than one live (pending, active, suspended) registration. Any answer 5xx
is a violation too, and so is a round in which every request was refused (something must win each
race) or more than one of the requests that end the registration (owner's revoke, uninstall,
supervisor's revoke) succeeded. A summary line gives the rounds, requests and violations (must be 0).
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from jpki_service.adapters.db import Store
from jpki_service.ca_commands.models import CACommand
from jpki_service.lifecycle import LIVE, State
from jpki_service.registrations.models import PhoneCertificate, Registration, RegistrationEvent
from tests.helpers import PERSON
from tests.service_helpers import (
    PhoneForTests,
    lift_body,
    make_card,
    operator_client,
    proof_for,
    register,
    register_body,
)

pytestmark = pytest.mark.e2e

ROUNDS = {"postgresql": int(os.environ.get("JPKI_RACE_ROUNDS", "24")), "sqlite": 6}
LOST = {"reason": "lost", "caller": "self", "ticket": "T-1"}
FINAL = {State.REVOKED.value, State.EXPIRED.value}


def _round_requests(client: httpx.Client, card, phone: PhoneForTests, tokens: dict[str, str]) -> list[tuple]:
    """(name, path, body, bearer) for every request aimed at ``phone``'s registration, proofs made now."""
    rid = phone.registration_id
    owner = f"/api/v1/registrations/{rid}"
    operator = f"/api/v1/operator/registrations/{phone.case_reference}"
    reset = proof_for(client, "reset-password", phone, card.key)
    reset["proof"]["card_certificate_pem"] = card.certificate_pem
    return [
        ("owner-revoke", f"{owner}/revoke", proof_for(client, "revoke", phone, phone.signature_key), None),
        ("operator-suspend", f"{operator}/suspend", LOST, tokens["operator"]),
        ("supervisor-lift", f"{operator}/lift", {"reason": "phone found", "ticket": "T-2", "caller": "self"},
         tokens["supervisor"]),
        ("owner-lift", f"{owner}/lift-suspension",
         lift_body(client, card, phone, rsa.generate_private_key(65537, 2048)), None),
        ("password-reset", f"{owner}/reset-password", reset, None),
        ("uninstall", f"{owner}/uninstall", proof_for(client, "uninstall", phone, phone.device_key), None),
        ("supersede-1", "/api/v1/registrations", register_body(client, card, PhoneForTests()), None),
        ("supersede-2", "/api/v1/registrations", register_body(client, card, PhoneForTests()), None),
        ("supervisor-revoke", f"{operator}/revoke", {"reason": "keyCompromise", "ticket": "T-3", "caller": "self"},
         tokens["supervisor"]),
    ]


TERMINAL = ("owner-revoke", "uninstall", "supervisor-revoke", "supersede-1", "supersede-2")
ENDS_THE_REGISTRATION = TERMINAL[:3]  # the supersedes register a new phone, the old one ends as a consequence


def _mix(number: int, requests: list[tuple]) -> tuple[list[tuple], list[float]]:
    """This round's requests and each one's delay after the start. Three kinds of round, in turn:
    any mix; the state-keeping requests (suspend, lifts, password reset) with one final request
    landing in the middle of them; two phones registering the same card against the rest. The slow
    requests (a card proof is checked at the CA's OCSP) would otherwise always lose to a final one."""
    pick = random.Random(number)
    by_name = {r[0]: r for r in requests}
    if number % 3 == 0:
        chosen = pick.sample(requests, pick.randint(4, len(requests)))
        return chosen, [pick.choice((0.0, 0.0, 0.05, 0.15, 0.3)) for _ in chosen]
    if number % 3 == 1:
        chosen = [r for r in requests if r[0] not in TERMINAL] + [by_name[pick.choice(TERMINAL[:3])]]
        return chosen, [0.0] * (len(chosen) - 1) + [pick.uniform(0.1, 0.8)]
    chosen = [by_name[n] for n in ("supersede-1", "supersede-2", "owner-lift", "password-reset", "operator-suspend",
                                   "supervisor-lift")]
    return chosen, [0.0, 0.0, 0.0, 0.0, pick.uniform(0, 0.5), pick.uniform(0, 0.5)]


def _fire(url: str, requests: list[tuple], jitter: list[float]) -> list[tuple[str, int, str]]:
    """Every request from its own thread and connection, released together (then each after its jitter)."""
    barrier = threading.Barrier(len(requests))
    answers: list[tuple[str, int, str]] = []

    def one(name, path, body, bearer, delay):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            barrier.wait()
            time.sleep(delay)
            try:
                answer = client.post(path, json=body)
                answers.append((name, answer.status_code, answer.text[:300]))
            except httpx.HTTPError as exc:
                answers.append((name, 0, repr(exc)))

    threads = [threading.Thread(target=one, args=(*request, delay))
               for request, delay in zip(requests, jitter, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _settle(store: Store, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while store_pending(store):
        assert time.monotonic() < deadline, "the CA queue did not settle"
        time.sleep(0.3)


def store_pending(store: Store) -> int:
    with store.sessions() as session:
        return len(session.scalars(select(CACommand.id).where(CACommand.state == "pending")).all())


def _violations(store: Store, ca_client: httpx.Client) -> tuple[list[str], int]:
    """Everything wrong with every registration (see the module's doc); and how many were checked."""
    problems: list[str] = []
    states = {s.value for s in State}
    with store.sessions() as session:
        registrations = list(session.scalars(select(Registration)))
        live_per_person = Counter(r.person_key for r in registrations if r.state in {s.value for s in LIVE})
        problems += [f"person has {n} live registrations" for n in live_per_person.values() if n > 1]
        failed = session.scalars(select(CACommand).where(CACommand.state == "failed")).all()
        problems += [f"command {c.id} {c.action} failed: {c.last_error}" for c in failed]
        known_by_card: dict[str, dict[str, str]] = defaultdict(dict)
        for registration in registrations:
            rid = registration.id[:8]
            if registration.state not in states:
                problems.append(f"{rid}: state {registration.state!r} is not a domain state")
            events = list(session.scalars(select(RegistrationEvent)
                                          .where(RegistrationEvent.registration_id == registration.id)
                                          .order_by(RegistrationEvent.id)))
            previous = "-"
            for event in events:
                if event.from_state != previous:
                    problems.append(f"{rid}: {event.event} leaves {event.from_state}, but it was {previous}")
                if previous in FINAL:
                    problems.append(f"{rid}: {event.event} after the final state {previous}: came back")
                previous = event.to_state
            if previous != registration.state:
                problems.append(f"{rid}: state {registration.state}, history ends in {previous}")
            for certificate in session.scalars(select(PhoneCertificate)
                                               .where(PhoneCertificate.registration_id == registration.id)):
                if certificate.serial is None:
                    if registration.state not in FINAL:
                        problems.append(f"{rid}: {certificate.kind} never issued on a live registration")
                    continue
                known_by_card[registration.card_serial][certificate.serial] = certificate.status
    for card_serial, known in known_by_card.items():
        answer = ca_client.get("/api/v1/certificates", params={"card_serial": card_serial})
        assert answer.status_code == 200, answer.text
        for at_ca in answer.json():
            serial = at_ca["serial"]
            if serial not in known:
                problems.append(f"certificate {serial[:8]} at the CA unknown to the service")
            elif known[serial] != at_ca["status"]:
                problems.append(f"certificate {serial[:8]}: service {known[serial]}, CA {at_ca['status']}")
    return problems, len(registrations)


def test_concurrent_requests_on_one_registration(ca_server, service_server, capsys):
    kind = "sqlite" if service_server.database_url.startswith("sqlite") else "postgresql"
    rounds = ROUNDS[kind]
    started = time.monotonic()
    codes: Counter = Counter()
    samples: dict[tuple[str, int], str] = {}
    server_errors: list[str] = []
    successes = 0
    with operator_client(service_server, "olga", "operator") as operator_, \
            operator_client(service_server, "sven", "supervisor") as supervisor_:
        tokens = {"operator": operator_.headers["Authorization"].split()[1],
                  "supervisor": supervisor_.headers["Authorization"].split()[1]}
        for number in range(rounds):
            card = make_card(ca_server.store, ca_server.settings,
                             {**PERSON, "name": f"競合 {kind}{number}", "address": f"京都府京都市{number}"})
            phone = PhoneForTests()
            with service_server.client() as client:
                answer = register(client, card, phone)
                assert answer.status_code == 201, answer.text
                if number % 2:  # every other round starts suspended, so that the lifts have something to lift
                    suspended = operator_.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend",
                                               json=LOST)
                    assert suspended.status_code == 200, suspended.text
                requests = _round_requests(client, card, phone, tokens)
            # A different mix each round, each request a little late or not: the fast ones (the
            # call centre's, no card check at the CA) would otherwise always win.
            requests, jitter = _mix(number, requests)
            answers = _fire(service_server.url, requests, jitter)
            for name, code, text in answers:
                codes[(name, code)] += 1
                samples.setdefault((name, code), text[:160])
                if code >= 500 or code == 0:
                    server_errors.append(f"round {number} {name}: {code} {text}")
            succeeded = [name for name, code, _ in answers if 200 <= code < 300]
            if not succeeded:
                # Refusing everything would keep every invariant below: a round must move something.
                server_errors.append(f"round {number}: all {len(answers)} requests refused")
            # Each of these ends the one registration of this round: at most one of them can succeed.
            ended = [name for name in succeeded if name in ENDS_THE_REGISTRATION]
            if len(ended) > 1:
                server_errors.append(f"round {number}: {', '.join(ended)} all succeeded on one registration")
            successes += len(succeeded)
    store = Store(service_server.database_url)
    try:
        _settle(store)
        with ca_server.client() as ca_client:
            problems, checked = _violations(store, ca_client)
    finally:
        store.dispose()
    problems += server_errors
    outcome = ", ".join(f"{name} {code}x{n}" for (name, code), n in sorted(codes.items()))
    line = (f"races on {kind}: rounds {rounds}, requests {sum(codes.values())} ({successes} succeeded), "
            f"registrations checked {checked}, "
            f"violations {len(problems)} ({time.monotonic() - started:.0f} s)")
    with capsys.disabled():
        print(f"\nanswers: {outcome}")
        if os.environ.get("JPKI_RACE_VERBOSE"):
            for key, text in sorted(samples.items()):
                print("  ", key, text)
        print(line)
        for problem in problems[:40]:
            print("  VIOLATION", problem)
    assert not problems, line
