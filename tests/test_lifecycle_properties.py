"""Property-based tests of the lifecycle table (hypothesis): whatever sequence of events arrives,
a registration is always in a state the domain allows, final states stay final, and what the
CA is asked to do always fits the certificates' status."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jpki_service.lifecycle import (
    BOTH,
    LIVE,
    TRANSITIONS,
    CertKind,
    Event,
    State,
    TransitionRefused,
    signature_reissue_needed,
    transition,
)

EVENTS = [e for e in Event if e is not Event.REGISTERED]


def _run(events: list[Event]):
    """Replay ``events`` from a fresh registration, as the service would: refused events change
    nothing; accepted ones move the state and the certificates' status at the CA."""
    state = TRANSITIONS[Event.REGISTERED].target
    status = {kind: "good" for kind in BOTH}
    accepted: list[Event] = [Event.REGISTERED]
    for event in events:
        try:
            rule = transition(state, event)
        except TransitionRefused:
            continue
        accepted.append(event)
        for kind in BOTH:
            if kind in rule.release and status[kind] == "held":
                status[kind] = "good"
            if kind in rule.hold and status[kind] == "good":
                status[kind] = "held"
            if kind in rule.revoke:
                status[kind] = "revoked"
            if kind in rule.reissue:
                status[kind] = "good"  # a new certificate replaces the revoked one
        state = rule.target or state
        yield state, dict(status), list(accepted)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), max_size=40))
def test_any_sequence_of_events_leaves_an_allowed_state(events):
    final_seen = None
    for state, status, history in _run(events):
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
