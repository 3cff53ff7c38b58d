"""Status changes racing on the same certificate, from threads with their own connections.

PostgreSQL is the production store: there the row lock (``SELECT ... FOR UPDATE``) must make
concurrent revokes, holds and retries of one operation id behave as if they ran one after the
other. Afterwards the certificate row, its status history, its CRL entry and its pre-produced
OCSP answers must tell one story. SQLite serialises writers with ``BEGIN IMMEDIATE``; its race
test checks that no "database is locked" escapes.

The PostgreSQL races share one CA store for the module (``shared_ca``; its set-up, keys and
migrations, was most of each test's time): each test races on certificates it issued itself,
under operation ids of its own (``ids``), and counts only what it made. The first CRL
publication needs a CA that never published one, and SQLite's test a SQLite store: each has
a CA of its own (``ca``).
"""
from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from asn1crypto import crl as asn1_crl
from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy.exc import DBAPIError

from ca_mock.authorities.service import initialise, load_hierarchy
from ca_mock.certificates.models import IssuedCertificate, StatusEvent
from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import CertStatus, StatusAction, StatusChange, next_status
from ca_mock.crl.models import PublishedCRL
from ca_mock.crl.service import publish
from ca_mock.db import migrate
from ca_mock.ocsp.models import PreparedOCSPResponse
from ca_mock.operations.models import Operation
from ca_mock.problems import OperationConflict, StatusChangeRefused
from ca_mock.settings import CASettings
from jpki_common.problems import Problem
from jpki_common.profiles import KEY_COMPROMISE, REVOCATION_REASONS
from jpki_common.store import Store
from tests.conftest import _empty_database
from tests.helpers import csr_pem, start_handing_out_keys_again
from tests.shared_ca import _fresh_keys_per_test, unique  # noqa: F401 (a fixture)

THREADS = 8
ROUNDS = 20
WEAK_REASONS = [r for r in REVOCATION_REASONS if r != KEY_COMPROMISE]

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# -- set-up -----------------------------------------------------------------------------------
class CA:
    """One initialised store, and one more Store (engine, pool, connections) per racing thread."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.settings = CASettings(data_dir=tmp_path / "ca", database_url=database_url,
                                   public_url="http://127.0.0.1:1")
        self.store = Store(database_url)
        migrate(self.store.url)
        initialise(self.store, self.settings)
        self.thread_stores = [Store(database_url) for _ in range(THREADS)]
        for store in self.thread_stores:
            load_hierarchy(store)  # the race is on status, not on loading keys

    def issue(self, operation_id: str) -> str:
        request = IssueRequest(operation_id=operation_id, profile="card-authentication", csr_pem=csr_pem())
        return issue_certificate(self.store, self.settings, request)["serial"]

    def close(self) -> None:
        for store in (self.store, *self.thread_stores):
            store.dispose()


@pytest.fixture
def ca(database_url: str, tmp_path: Path):
    """A CA of this test's own."""
    authority = CA(database_url, tmp_path)
    yield authority
    authority.close()


@pytest.fixture(scope="module", params=["postgresql"])
def shared_ca(request, tmp_path_factory):
    """One CA for the module's PostgreSQL races: the test keys start over with its new store (csr_pem hands
    out each key once from then on, as _fresh_keys_per_test no longer starts them over at each test)."""
    folder = tmp_path_factory.mktemp("concurrency")
    with _empty_database(request.param, folder, "ca") as database_url:
        start_handing_out_keys_again()
        authority = CA(database_url, folder)
        try:
            yield authority
        finally:
            authority.close()


@pytest.fixture
def ids() -> str:
    """A prefix for this test's operation ids: operation ids are the shared CA's."""
    return unique("t") + "-"


def count_of(store: Store, table) -> int:
    with store.sessions() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table))


def race(ca: CA, job) -> list[tuple[str, object]]:
    """Run ``job(store, index)`` in THREADS threads released together; ("ok", result) or ("error", exc)."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[str, object] | None] = [None] * THREADS

    def worker(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = ("ok", job(ca.thread_stores[index], index))
        except Exception as exc:  # recorded and judged by the test
            outcomes[index] = ("error", exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    assert all(outcome is not None for outcome in outcomes)
    unexpected = [exc for kind, exc in outcomes if kind == "error" and not isinstance(exc, Problem)]
    assert not unexpected, f"non-CA errors escaped: {unexpected!r}"
    return outcomes  # type: ignore[return-value]


def successes(outcomes) -> list[tuple[int, dict]]:
    return [(i, result) for i, (kind, result) in enumerate(outcomes) if kind == "ok"]


def errors(outcomes) -> list[tuple[int, Exception]]:
    return [(i, exc) for i, (kind, exc) in enumerate(outcomes) if kind == "error"]


# -- the one story a certificate must tell ------------------------------------------------------
_ACTION_FOR = {"held": StatusAction.HOLD, "good": StatusAction.RELEASE, "revoked": StatusAction.REVOKE}


def assert_consistent(store: Store, serial: str) -> tuple[IssuedCertificate, list[StatusEvent]]:
    """Row, history, CRL entry, operations and both prepared OCSP answers agree."""
    with store.sessions() as session:
        cert = session.get(IssuedCertificate, serial)
        events = session.scalars(select_events(serial)).all()
        answers = session.scalars(
            sa.select(PreparedOCSPResponse).where(PreparedOCSPResponse.serial == serial)).all()
        operation_ids = set(session.scalars(sa.select(Operation.operation_id)))
    assert cert is not None and events

    # The history is a path the rules allow, from good at issuance.
    assert (events[0].status, events[0].reason) == ("good", None)
    state, listed_since = StatusChange(CertStatus.GOOD, None), None
    for event in events[1:]:
        action = _ACTION_FOR[event.status]
        reason = event.reason if action is StatusAction.REVOKE else None
        allowed = next_status(state.status, state.reason, action, reason)
        assert allowed == StatusChange(CertStatus(event.status), event.reason), (state, event.status, reason)
        state = allowed
        listed_since = None if event.status == "good" else (listed_since or event.at)
    assert [e.at for e in events] == sorted(e.at for e in events)

    # Each change happened under one operation id, recorded once.
    counts = Counter(e.operation_id for e in events)
    assert all(n == 1 for n in counts.values()), counts
    assert set(counts) <= operation_ids

    # The row is the end of the story.
    assert (cert.status, cert.reason) == (state.status.value, state.reason)
    assert cert.status_changed_at == events[-1].at
    assert cert.revoked_at == listed_since  # a revocation after a hold keeps the hold's date

    # The CRL entry stored for the next CRL says the same.
    if cert.status == "good":
        assert cert.crl_entry_der is None
    else:
        entry = asn1_crl.RevokedCertificate.load(cert.crl_entry_der)
        assert entry["user_certificate"].native == int(serial, 16)
        assert entry["revocation_date"].native == cert.revoked_at
        assert entry.crl_reason_value.native == _snake(cert.reason)

    # The pre-produced OCSP answers (one per CertID hash) say the same.
    assert sorted(a.hash_algorithm for a in answers) == ["sha1", "sha256"]
    for answer in answers:
        response = ocsp.load_der_ocsp_response(answer.der)
        assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.serial_number == int(serial, 16)
        assert response.hash_algorithm.name == answer.hash_algorithm
        assert response.produced_at_utc >= cert.status_changed_at
        if cert.status == "good":
            assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
            assert response.revocation_time_utc is None
        else:
            assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
            assert response.revocation_time_utc == cert.revoked_at
            assert response.revocation_reason is x509.ReasonFlags(cert.reason)
    return cert, events


def select_events(serial: str):
    return sa.select(StatusEvent).where(StatusEvent.serial == serial).order_by(StatusEvent.id)


def _snake(reason: str) -> str:
    snake = "".join("_" + c.lower() if c.isupper() else c for c in reason)
    return snake.replace("c_a_", "ca_").replace("a_a_", "aa_")


def test_snake_matches_asn1crypto_names():
    # The helper above, checked against the CA's own table, so the CRL check compares like with like.
    from ca_mock.crl.entries import _ASN1_REASONS

    names = [*REVOCATION_REASONS, "certificateHold"]
    assert {r: _snake(r) for r in names} == {r: _ASN1_REASONS[r] for r in names}


# -- PostgreSQL races -------------------------------------------------------------------------
def test_concurrent_revokes_with_different_operation_ids_revoke_once(shared_ca, ids):
    ca = shared_ca
    for round_ in range(ROUNDS):
        serial = ca.issue(f"{ids}issue-{round_}")
        reasons = [WEAK_REASONS[(round_ + i) % len(WEAK_REASONS)] for i in range(THREADS)]

        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serial, StatusAction.REVOKE, f"{ids}rev-{round_}-{i}", reasons[i]))

        won = successes(outcomes)
        assert len(won) == 1, f"round {round_}: {len(won)} revokes succeeded"
        winner, result = won[0]
        assert result["status"] == "revoked" and result["reason"] == reasons[winner]
        for _, exc in errors(outcomes):
            assert isinstance(exc, StatusChangeRefused) and "already revoked" in exc.detail
        cert, events = assert_consistent(ca.store, serial)
        assert cert.reason == reasons[winner]
        assert [(e.status, e.operation_id) for e in events] == [("good", f"{ids}issue-{round_}"),
                                                                ("revoked", f"{ids}rev-{round_}-{winner}")]


def test_concurrent_revokes_end_in_key_compromise_when_one_asks_for_it(shared_ca, ids):
    ca = shared_ca
    for round_ in range(ROUNDS):
        serial = ca.issue(f"{ids}issue-{round_}")
        reasons = [KEY_COMPROMISE if i % 2 else "superseded" for i in range(THREADS)]

        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serial, StatusAction.REVOKE, f"{ids}rev-{round_}-{i}", reasons[i]))

        won = successes(outcomes)
        by_reason = Counter(reasons[i] for i, _ in won)
        # keyCompromise wins exactly once (first, or as the one allowed strengthening);
        # superseded at most once, and only before it.
        assert by_reason[KEY_COMPROMISE] == 1 and by_reason["superseded"] <= 1, by_reason
        for _, exc in errors(outcomes):
            assert isinstance(exc, StatusChangeRefused)
        cert, events = assert_consistent(ca.store, serial)
        assert (cert.status, cert.reason) == ("revoked", KEY_COMPROMISE)
        expected = (["superseded"] if by_reason["superseded"] else []) + [KEY_COMPROMISE]
        assert [e.reason for e in events[1:]] == expected
        assert len(events) == 1 + len(won)


def test_hold_racing_revoke(shared_ca, ids):
    ca = shared_ca
    held_first = 0
    for round_ in range(ROUNDS):
        serial = ca.issue(f"{ids}issue-{round_}")
        actions = [StatusAction.HOLD if i % 2 else StatusAction.REVOKE for i in range(THREADS)]

        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serial, actions[i], f"{ids}op-{round_}-{i}",
            "cessationOfOperation" if actions[i] is StatusAction.REVOKE else None))

        won = Counter(actions[i] for i, _ in successes(outcomes))
        assert won[StatusAction.REVOKE] == 1, won
        assert won[StatusAction.HOLD] <= 1, won
        for _, exc in errors(outcomes):
            assert isinstance(exc, StatusChangeRefused)
        cert, events = assert_consistent(ca.store, serial)
        assert (cert.status, cert.reason) == ("revoked", "cessationOfOperation")
        if won[StatusAction.HOLD]:
            held_first += 1
            assert [e.status for e in events] == ["good", "held", "revoked"]
            assert cert.revoked_at == events[1].at
        else:
            assert [e.status for e in events] == ["good", "revoked"]
    # Not asserted (it depends on scheduling), but worth seeing when it is always one way.
    print(f"hold won the race in {held_first} of {ROUNDS} rounds")


@pytest.mark.parametrize("action", [StatusAction.REVOKE, StatusAction.HOLD])
def test_same_operation_id_raced_is_done_once_with_identical_answers(shared_ca, ids, action):
    ca = shared_ca
    for round_ in range(ROUNDS):
        serial = ca.issue(f"{ids}issue-{round_}")
        operation_id = f"{ids}same-{round_}"
        reason = "affiliationChanged" if action is StatusAction.REVOKE else None

        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serial, action, operation_id, reason))

        assert not errors(outcomes), errors(outcomes)
        answers = [result for _, result in successes(outcomes)]
        assert all(answer == answers[0] for answer in answers)
        assert answers[0]["status"] == ("revoked" if action is StatusAction.REVOKE else "held")
        cert, events = assert_consistent(ca.store, serial)
        assert [e.operation_id for e in events] == [f"{ids}issue-{round_}", operation_id]
        with ca.store.sessions() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Operation)
                                  .where(Operation.operation_id == operation_id)) == 1


def test_same_operation_id_raced_on_two_certificates_is_one_change_and_conflicts(shared_ca, ids):
    ca = shared_ca
    for round_ in range(ROUNDS // 2):
        serials = [ca.issue(f"{ids}issue-{round_}-a"), ca.issue(f"{ids}issue-{round_}-b")]
        operation_id = f"{ids}shared-{round_}"

        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serials[i % 2], StatusAction.REVOKE, operation_id, "superseded"))

        won = successes(outcomes)
        changed = {serials[i % 2] for i, _ in won}
        assert len(changed) == 1, f"one operation id changed {len(changed)} certificates"
        assert all(result == won[0][1] for _, result in won)
        for i, exc in errors(outcomes):
            assert serials[i % 2] not in changed and isinstance(exc, OperationConflict), exc
        (winner,) = changed
        other = serials[1 - serials.index(winner)]
        assert assert_consistent(ca.store, winner)[0].status == "revoked"
        assert assert_consistent(ca.store, other)[0].status == "good"


def test_same_issue_operation_id_raced_issues_one_certificate(shared_ca, ids):
    ca = shared_ca
    # The store is the module's: the counts below are of what this test made (the tests before it are done).
    before = {table: count_of(ca.store, table) for table in (IssuedCertificate, PreparedOCSPResponse, Operation)}
    for round_ in range(ROUNDS // 2):
        request = IssueRequest(operation_id=f"{ids}issue-{round_}", profile="card-authentication",
                               csr_pem=csr_pem())

        outcomes = race(ca, lambda store, i: issue_certificate(store, ca.settings, request))

        assert not errors(outcomes), errors(outcomes)
        answers = [result for _, result in successes(outcomes)]
        assert all(answer == answers[0] for answer in answers)
        with ca.store.sessions() as session:
            issued = session.scalars(sa.select(IssuedCertificate.serial).join(
                StatusEvent, StatusEvent.serial == IssuedCertificate.serial).where(
                StatusEvent.operation_id == f"{ids}issue-{round_}")).all()
        assert issued == [answers[0]["serial"]]
        assert_consistent(ca.store, answers[0]["serial"])
    made = {table: count_of(ca.store, table) - before[table] for table in before}
    assert made[IssuedCertificate] == ROUNDS // 2
    assert made[PreparedOCSPResponse] == ROUNDS
    assert made[Operation] == ROUNDS // 2


def test_hold_and_release_flapping_keeps_one_story(shared_ca, ids):
    ca = shared_ca
    serials = [ca.issue(f"{ids}issue-{n}") for n in range(2)]
    prefix, numbers = ids, itertools.count()
    lock = threading.Lock()

    def flap(store, index):
        rng = random.Random(index)
        done = []
        for _ in range(ROUNDS):
            with lock:
                operation_id = f"{prefix}flap-{next(numbers)}"
            serial = rng.choice(serials)
            action = rng.choice([StatusAction.HOLD, StatusAction.RELEASE])
            try:
                done.append(change_status(store, ca.settings, serial, action, operation_id)["serial"])
            except StatusChangeRefused:
                pass
        return done

    outcomes = race(ca, flap)
    assert not errors(outcomes)
    changes = Counter(serial for _, done in successes(outcomes) for serial in done)
    for serial in serials:
        cert, events = assert_consistent(ca.store, serial)
        assert len(events) == 1 + changes[serial]
        assert changes[serial] > 0


def test_status_changes_racing_crl_publication_are_never_missed(shared_ca, ids):
    ca = shared_ca
    serials = [ca.issue(f"{ids}issue-{n}") for n in range(THREADS * 2)]
    publish(ca.store, ca.settings, "auth", force=True)  # past the first publication (see below)

    def job(store, index):
        if index % 2:  # publishers
            for _ in range(6):
                publish(store, ca.settings, "auth")
            return None
        mine = serials[index * 2: index * 2 + 4]
        for n, serial in enumerate(mine):
            if n % 2:
                change_status(store, ca.settings, serial, StatusAction.HOLD, f"{ids}hold-{serial}")
            else:
                change_status(store, ca.settings, serial, StatusAction.REVOKE, f"{ids}rev-{serial}", "superseded")
        return mine

    outcomes = race(ca, job)
    assert not errors(outcomes)
    publish(ca.store, ca.settings, "auth")
    with ca.store.sessions() as session:
        full = session.scalars(sa.select(PublishedCRL).where(
            PublishedCRL.authority == "auth", PublishedCRL.partition.is_(None), PublishedCRL.kind == "full")).one()
        # Of this test's certificates (the store is the module's: other tests' are listed too).
        listed = {s for s, in session.execute(sa.select(IssuedCertificate.serial).where(
            IssuedCertificate.status.in_(("held", "revoked")), IssuedCertificate.serial.in_(serials)))}
    crl = x509.load_der_x509_crl(full.der)
    assert {format(entry.serial_number, "x") for entry in crl} & set(serials) == listed
    assert len(listed) == len([s for _, done in successes(outcomes) if done for s in done])
    for serial in listed:
        assert_consistent(ca.store, serial)


@postgresql_only
def test_first_crl_publication_raced_is_not_an_error(ca):
    # A fresh CA: no CRL published yet. The server's background publisher and a relying party's
    # first fetch of /crl/NAME.crl race exactly like this.
    outcomes = race(ca, lambda store, i: publish(store, ca.settings, "sign"))
    assert not errors(outcomes)
    assert sum(1 for _, publication in successes(outcomes) if publication is not None) >= 1
    with ca.store.sessions() as session:
        number = session.scalar(sa.text("select crl_number from authorities where name = 'sign'"))
        full, delta = (
            session.scalars(sa.select(PublishedCRL).where(
                PublishedCRL.authority == "sign", PublishedCRL.partition.is_(None), PublishedCRL.kind == kind,
            )).one_or_none()
            for kind in ("full", "delta"))
    assert full is not None and delta is not None
    assert full.number == delta.number == number


def test_race_helper_reports_database_errors(tmp_path):
    # The helper must not swallow what these tests are looking for.
    class FakeCA:
        thread_stores = [None] * THREADS

    def job(_store, index):
        raise DBAPIError("statement", {}, Exception("database is locked"))

    with pytest.raises(AssertionError, match="database is locked"):
        race(FakeCA(), job)  # type: ignore[arg-type]


# -- SQLite -----------------------------------------------------------------------------------
@sqlite_only
def test_sqlite_writers_racing_never_see_database_is_locked(ca):
    assert ca.store.engine.dialect.name == "sqlite"
    for round_ in range(ROUNDS // 2):
        serial = ca.issue(f"issue-{round_}")
        actions = [StatusAction.HOLD if i % 2 else StatusAction.REVOKE for i in range(THREADS)]

        # The last two threads share one operation id (a hold and a revoke: one of them conflicts).
        operation_ids = [f"op-{round_}-{i}" for i in range(THREADS - 2)] + [f"same-{round_}"] * 2
        outcomes = race(ca, lambda store, i: change_status(
            store, ca.settings, serial, actions[i], operation_ids[i],
            "superseded" if actions[i] is StatusAction.REVOKE else None))

        for _, exc in errors(outcomes):
            assert isinstance(exc, (StatusChangeRefused, OperationConflict)), repr(exc)
        won = Counter(actions[i] for i, _ in successes(outcomes))
        assert won[StatusAction.REVOKE] >= 1
        cert, events = assert_consistent(ca.store, serial)
        assert cert.status == "revoked"
        assert sum(1 for e in events if e.status == "revoked") == 1

    # Issuing and publishing race too, from every thread at once.
    outcomes = race(ca, lambda store, i: (
        issue_certificate(store, ca.settings, IssueRequest(
            operation_id=f"bulk-{i}", profile="card-authentication", csr_pem=csr_pem())),
        publish(store, ca.settings, "auth"),
    ))
    assert not errors(outcomes)
    for _, (issued, _publication) in successes(outcomes):
        assert_consistent(ca.store, issued["serial"])
