"""docs/lifecycle.md shows exactly the transition table of jpki_service/lifecycle.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from jpki_service.lifecycle import TRANSITIONS, Event, State, TransitionRefused, next_state


def _rows() -> list[str]:
    rows = []
    for t in TRANSITIONS.values():
        sources = ", ".join(s.value for s in t.sources) or "(new)"
        target = t.target.value if t.target else "(unchanged)"
        at_ca = "; ".join(
            f"{verb} {', '.join(k.value for k in kinds)}"
            for verb, kinds in (("hold", t.hold), ("release", t.release), ("revoke", t.revoke), ("reissue", t.reissue))
            if kinds
        ) or "-"
        reason = t.ca_reason or ("chosen by the supervisor" if t.revoke else "-")
        actors = " or ".join(a.value for a in (t.actor, *(a for a, _ in t.also_by)))
        proofs = " or ".join(p.value for p in (t.proof, *(p for _, p in t.also_by)))
        rows.append(f"| `{t.event.value}` | {sources} | {target} | {actors} | {proofs} | "
                    f"{at_ca} | {reason} | {'yes' if t.notify_owner else '-'} |")
    return rows


def test_the_doc_table_is_the_code_table():
    doc = (Path(__file__).parent.parent / "docs" / "lifecycle.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| `")]
    assert table == _rows()


@pytest.mark.parametrize("state", [State.REVOKED, State.EXPIRED])
def test_final_states_accept_no_event(state):
    for event in Event:
        with pytest.raises(TransitionRefused):
            next_state(state, event)


def test_state_keeping_events():
    assert next_state(State.ACTIVE, Event.CARD_REVOKED) is State.ACTIVE
    assert next_state(State.SUSPENDED, Event.PASSWORD_RESET) is State.SUSPENDED
    assert next_state(State.PENDING, Event.CERTIFICATES_ISSUED) is State.ACTIVE
    with pytest.raises(TransitionRefused):
        next_state(State.PENDING, Event.CARD_REVOKED)
