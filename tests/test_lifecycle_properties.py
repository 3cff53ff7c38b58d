"""Property-based tests of the lifecycle (hypothesis): whatever sequence of events arrives, driven
through :func:`~jpki_service.registrations.transitions.apply_event` (the one applier of the table,
on a real database) a registration is always in a state the domain allows, final states stay
final, refused events change nothing, the history is one unbroken chain, and what the CA is asked
to do (the queued commands, certificate by certificate) always fits the certificates' status."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from jpki_service.adapters.db import Store, migrate
from jpki_service.ca_commands.models import CACommand
from jpki_service.common.problems import StateConflict
from jpki_service.lifecycle import (
    LIVE,
    TRANSITIONS,
    CertKind,
    Event,
    State,
    TransitionRefused,
    signature_reissue_needed,
    transition,
)
from jpki_service.registrations.models import PhoneCertificate, Registration, RegistrationEvent
from jpki_service.registrations.transitions import NewKey, Reissue, apply_event, current_certificates

EVENTS = [e for e in Event if e is not Event.REGISTERED]
REASONS = ["keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation", "unspecified"]
RID = "cd" * 16


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'svc.sqlite3'}"
    migrate(url)
    store = Store(url)
    yield store
    store.dispose()


def _arguments(event: Event, reason: str) -> dict:
    """What the use case (owner's or call centre's) hands ``apply_event`` with this event."""
    rule = TRANSITIONS[event]
    arguments: dict = {}
    if rule.actor.value in ("operator", "supervisor"):
        arguments["operator"] = "o"
    if event is Event.SUSPENDED:
        arguments["suspension_reason"] = "lost"
    if rule.revoke and rule.ca_reason is None:
        arguments["ca_reason"] = reason
    if rule.reissue:
        arguments["reissue"] = Reissue({kind: NewKey("csr", "key") for kind in rule.reissue}, card_serial="1")
    return arguments


def _snapshot(session: Session) -> tuple:
    registration = session.get_one(Registration, RID)
    status = {CertKind(c.kind): c.status for c in current_certificates(session, RID)}
    events = session.scalars(select(RegistrationEvent.id).where(RegistrationEvent.registration_id == RID)).all()
    commands = session.scalars(select(CACommand.id)).all()
    return State(registration.state), status, len(events), len(commands)


def _drive(session: Session, steps: list[tuple[Event, str]]):
    """A fresh pending registration with its two certificates, then ``steps`` through apply_event:
    refused ones must raise :class:`StateConflict` and change nothing. Yields after each accepted one."""
    now = dt.datetime.now(dt.UTC)
    session.add(Registration(id=RID, case_reference="ABCD-EFGH-JKMN",
                             state=TRANSITIONS[Event.REGISTERED].target.value, reason=None,
                             person_key="p" * 64, card_serial="1", device_model="m", device_public_key_pem="-",
                             created_at=now, updated_at=now))
    session.flush()  # before its certificates (their foreign key)
    session.add_all([PhoneCertificate(registration_id=RID, kind=kind.value, public_key_pem="-", serial=kind.value,
                                      status="good", current=True) for kind in CertKind])
    session.flush()
    accepted: list[Event] = [Event.REGISTERED]
    for event, reason in steps:
        before = _snapshot(session)
        registration = session.get_one(Registration, RID)
        try:
            apply_event(session, registration, event, **_arguments(event, reason))
        except StateConflict:
            assert _snapshot(session) == before, (event, "a refused event changed something")
            with pytest.raises(TransitionRefused):  # refused exactly when the table says so
                transition(before[0], event)
            continue
        session.flush()
        accepted.append(event)
        state, status, events, _ = _snapshot(session)
        assert events == before[2] + 1, "one history row per accepted event"
        yield before[0], state, status, list(accepted)


def _check_history(session: Session) -> None:
    """One unbroken chain from the registration's first state, never leaving a final state."""
    previous = TRANSITIONS[Event.REGISTERED].target.value
    for row in session.scalars(select(RegistrationEvent).where(RegistrationEvent.registration_id == RID)
                               .order_by(RegistrationEvent.id)):
        assert row.from_state == previous, (row.event, row.from_state, previous)
        assert not State(previous).is_final, f"{row.event} after {previous}"
        previous = row.to_state
    assert previous == session.get_one(Registration, RID).state


def _check_ca_commands(session: Session) -> None:
    """Replay each certificate's queued CA commands as the CA would: hold only what is good, release
    only what is held, nothing but a stronger revocation (keyCompromise) after a revocation; the
    status the service recorded is the one the commands lead to."""
    commands = defaultdict(list)
    for command in session.scalars(select(CACommand).order_by(CACommand.id)):
        commands[command.certificate_id].append(command)
    for certificate in session.scalars(select(PhoneCertificate).where(PhoneCertificate.registration_id == RID)):
        status = "good" if certificate.serial else "pending"
        for command in commands[certificate.id]:
            action = command.action
            if action == "issue":
                assert status == "pending", (certificate.kind, status, action)
                status = "good"
            elif action == "hold":
                assert status in ("good", "pending"), (certificate.kind, status, action)
                status = "held"
            elif action == "release":
                assert status == "held", (certificate.kind, status, action)
                status = "good"
            else:
                assert action == "revoke" and command.reason in REASONS, (action, command.reason)
                assert status != "revoked" or command.reason == "keyCompromise", (certificate.kind, command.reason)
                status = "revoked"
        # "pending": a reissued certificate, good once the CA carries its queued issue.
        recorded = "good" if certificate.status == "pending" else certificate.status
        assert recorded == status, (certificate.kind, certificate.status, status)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(EVENTS), st.sampled_from(REASONS)), max_size=40))
def test_any_sequence_of_events_leaves_an_allowed_state(store, steps):
    with Session(store.engine) as session:  # never committed: each example starts on an empty store
        final_seen = None
        for _source, state, status, history in _drive(session, steps):
            assert state in State
            if final_seen is not None:
                raise AssertionError(f"{final_seen.value} was left for {state.value} by {history[-1].value}")
            if state.is_final:
                final_seen = state
                # Nothing valid remains at the CA once a registration is over.
                assert set(status.values()) == {"revoked"}, (history, status)
            if state is State.SUSPENDED:
                # Suspended means both certificates on hold (or already revoked for good by a card cascade).
                assert set(status.values()) <= {"held", "revoked"}, (history, status)
            if state is State.ACTIVE:
                assert status[CertKind.AUTHENTICATION] == "good", (history, status)
                assert "held" not in status.values(), (history, status)
                if status[CertKind.SIGNATURE] == "revoked":
                    # Only two ways to an active phone without a signature certificate: a supervisor's
                    # lift (the owner must reissue) or the card's revocation (register again).
                    assert signature_reissue_needed(state, history[1:]) or Event.CARD_REVOKED in history, history
        _check_history(session)
        _check_ca_commands(session)
        session.rollback()


@given(st.sampled_from([State.REVOKED, State.EXPIRED]), st.sampled_from(list(Event)))
def test_final_states_refuse_every_event(state, event):
    try:
        transition(state, event)
    except TransitionRefused:
        return
    raise AssertionError(f"{event.value} accepted on a {state.value} registration")


def test_every_transition_names_a_reason_or_lets_the_actor_choose():
    for rule in TRANSITIONS.values():
        if rule.revoke and rule.ca_reason is None:
            assert rule.actor.value == "supervisor", rule.event
        assert set(rule.sources) <= set(LIVE), rule.event


def test_every_change_not_made_with_the_owners_secret_is_told_to_the_owner():
    """Issue 12, item 6: a change made with a device key (no secret: a thief holding the phone can send
    it), by the call centre or from the CA's record is told through the notice channel. The CA's answer
    to the owner's own card-proven registration goes back to the owner's app instead."""
    from jpki_service.lifecycle import ANSWERS_TO_THE_OWNER, OWNER_SECRET_PROOFS, TRANSITIONS, ProofKind

    untold = [t.event.value for t in TRANSITIONS.values()
              if any(p not in OWNER_SECRET_PROOFS + ANSWERS_TO_THE_OWNER for p in (t.proof, *dict(t.also_by).values()))
              and not t.notify_owner]
    assert not untold
    assert TRANSITIONS[Event.UNINSTALLED].notify_owner and TRANSITIONS[Event.STALE_CERTIFICATE].notify_owner
    assert {t.proof for t in TRANSITIONS.values()} >= {ProofKind.DEVICE_KEY, ProofKind.OPERATOR_SESSION}
