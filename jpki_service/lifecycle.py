"""The lifecycle of a registration (one phone, two certificates), as one table.

Pure domain: no I/O. Each transition names the event, the states it may leave, the state it
reaches, who may cause it, with what proof, and what must then happen at the CA. The service
layer asks :func:`transition` and carries out the answer; nothing else decides a state.

    pending --issued--> active --(call centre) suspended--> suspended --lifted--> active
       |                  |                                      |
       +--- revoke / supersede / uninstall / stale --------------+--> revoked | expired   (final)

A lift never reinstates the signature certificate (DESIGN.md 2.8): it is revoked and a new one
is issued to a new key, in the same transition when the owner lifts with the card, or by a later
``signature-reissued`` when a supervisor lifted (a supervisor has neither the card nor the key).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from jpki_common.i18n import N_, Sentence


class State(str, enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (State.REVOKED, State.EXPIRED)


class Actor(str, enum.Enum):
    OWNER = "owner"
    SYSTEM = "system"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    CARRIER = "carrier"  # a mobile carrier's system reporting a lost or stolen phone (jpki_service/carriers)


class ProofKind(str, enum.Enum):
    CARD = "card signature key (card password), card good at OCSP"
    PHONE_SIGNATURE_KEY = "phone signature key (phone password)"
    DEVICE_KEY = "device key (no secret)"
    CARD_AND_DEVICE_KEY = "card proof (matching the registering card) + device key"
    OPERATOR_SESSION = "operator session with the role, caller identified, ticket"
    CA_RESULT = "the CA's answer"
    CARD_AT_CA = "the card certificate revoked at the CA"
    CARRIER_TOKEN = "carrier's access token (OAuth2 client credentials), subscriber's items as verified at contract"


class Event(str, enum.Enum):
    REGISTERED = "registered"
    CERTIFICATES_ISSUED = "certificates-issued"
    ISSUANCE_REFUSED = "issuance-refused"
    OWNER_REVOKED = "owner-revoked"
    SUPERSEDED = "superseded"
    UNINSTALLED = "uninstalled"
    STALE_CERTIFICATE = "stale-certificate"
    CARD_REVOKED = "card-revoked"
    PASSWORD_RESET = "password-reset"
    SUSPENDED = "suspended"
    OWNER_LIFTED = "owner-lifted"
    SUPERVISOR_LIFTED = "supervisor-lifted"
    SIGNATURE_REISSUED = "signature-reissued"
    SUPERVISOR_REVOKED = "supervisor-revoked"
    OWNER_CARD_REVOKED = "owner-card-revoked"  # the owner with the card alone, from any phone or PC
    OWNER_SUSPENDED = "owner-suspended"  # likewise


class CertKind(str, enum.Enum):
    SIGNATURE = "signature"
    AUTHENTICATION = "authentication"


BOTH = (CertKind.SIGNATURE, CertKind.AUTHENTICATION)


@dataclass(frozen=True)
class Transition:
    event: Event
    sources: tuple[State, ...]
    target: State | None  # None: the registration keeps its state
    actor: Actor
    proof: ProofKind
    revoke: tuple[CertKind, ...] = ()  # certificates to revoke at the CA
    ca_reason: str | None = None  # RFC 5280 reason for those revocations (None: the actor chooses)
    hold: tuple[CertKind, ...] = ()  # certificates put on hold (certificateHold)
    release: tuple[CertKind, ...] = ()  # held certificates made good again
    reissue: tuple[CertKind, ...] = ()  # new certificates to new keys, replacing the current ones
    notify_owner: bool = False  # told through another channel than the phone: someone else may have acted
    also_by: tuple[tuple[Actor, ProofKind], ...] = ()  # other actors who may cause it, each with its proof

    def proof_of(self, actor: Actor) -> ProofKind:
        """The proof ``actor`` gives for this transition; ValueError if ``actor`` may not cause it."""
        proofs = {self.actor: self.proof, **dict(self.also_by)}
        if actor not in proofs:
            raise ValueError(f"{actor.value} may not cause {self.event.value}")
        return proofs[actor]


LIVE = (State.PENDING, State.ACTIVE, State.SUSPENDED)

TRANSITIONS: dict[Event, Transition] = {
    t.event: t
    for t in (
        # Creates a registration: it has no source state.
        Transition(Event.REGISTERED, (), State.PENDING, Actor.OWNER, ProofKind.CARD),
        Transition(Event.CERTIFICATES_ISSUED, (State.PENDING,), State.ACTIVE, Actor.SYSTEM, ProofKind.CA_RESULT),
        Transition(Event.ISSUANCE_REFUSED, (State.PENDING,), State.REVOKED, Actor.SYSTEM, ProofKind.CA_RESULT,
                   BOTH, "cessationOfOperation"),
        Transition(Event.OWNER_REVOKED, LIVE, State.REVOKED, Actor.OWNER, ProofKind.PHONE_SIGNATURE_KEY,
                   BOTH, "cessationOfOperation"),
        # The owner registered another phone; the old one may be in someone else's hands: tell the owner.
        Transition(Event.SUPERSEDED, LIVE, State.REVOKED, Actor.OWNER, ProofKind.CARD, BOTH, "superseded",
                   notify_owner=True),
        # The device key needs no secret: whoever holds the phone (a thief included) can send these. Tell the owner.
        Transition(Event.UNINSTALLED, LIVE, State.EXPIRED, Actor.OWNER, ProofKind.DEVICE_KEY,
                   BOTH, "cessationOfOperation", notify_owner=True),
        Transition(Event.STALE_CERTIFICATE, LIVE, State.EXPIRED, Actor.OWNER, ProofKind.DEVICE_KEY,
                   BOTH, "cessationOfOperation", notify_owner=True),
        # Policy (DESIGN.md 2.9): the phone signature certificate follows the card's; the
        # user-authentication certificate and the registration stay as they are.
        Transition(Event.CARD_REVOKED, (State.ACTIVE, State.SUSPENDED), None, Actor.SYSTEM, ProofKind.CARD_AT_CA,
                   (CertKind.SIGNATURE,), "affiliationChanged", notify_owner=True),
        Transition(Event.PASSWORD_RESET, (State.ACTIVE, State.SUSPENDED), None, Actor.OWNER, ProofKind.CARD),
        # The call centre (DESIGN.md 2.7): both certificates on hold at once, OCSP says certificateHold.
        # A carrier's lost-phone report does the same (docs/carriers.md); it can never lift nor revoke.
        Transition(Event.SUSPENDED, (State.ACTIVE,), State.SUSPENDED, Actor.OPERATOR, ProofKind.OPERATOR_SESSION,
                   hold=BOTH, notify_owner=True, also_by=((Actor.CARRIER, ProofKind.CARRIER_TOKEN),)),
        # Found again (DESIGN.md 2.8): authentication reinstated, signature revoked and reissued.
        Transition(Event.OWNER_LIFTED, (State.SUSPENDED,), State.ACTIVE, Actor.OWNER, ProofKind.CARD_AND_DEVICE_KEY,
                   (CertKind.SIGNATURE,), "superseded", release=(CertKind.AUTHENTICATION,),
                   reissue=(CertKind.SIGNATURE,)),
        Transition(Event.SUPERVISOR_LIFTED, (State.SUSPENDED,), State.ACTIVE, Actor.SUPERVISOR,
                   ProofKind.OPERATOR_SESSION, (CertKind.SIGNATURE,), "superseded",
                   release=(CertKind.AUTHENTICATION,), notify_owner=True),
        # After a supervisor's lift the phone has no signature certificate until the owner proves card + phone.
        Transition(Event.SIGNATURE_REISSUED, (State.ACTIVE,), None, Actor.OWNER, ProofKind.CARD_AND_DEVICE_KEY,
                   reissue=(CertKind.SIGNATURE,)),
        # The phone is gone for good, or its key is compromised: the supervisor names the RFC 5280 reason.
        Transition(Event.SUPERVISOR_REVOKED, LIVE, State.REVOKED, Actor.SUPERVISOR, ProofKind.OPERATOR_SESSION,
                   BOTH, None, notify_owner=True),
        # The card as the owner's master key (issue 15): with the card alone, from any phone or PC with a card
        # reader, the owner revokes or suspends any of the person's phones; lifting still needs card and phone
        # (owner-lifted). Told to the owner: the card and its password may be in another's hands.
        Transition(Event.OWNER_CARD_REVOKED, LIVE, State.REVOKED, Actor.OWNER, ProofKind.CARD,
                   BOTH, "cessationOfOperation", notify_owner=True),
        Transition(Event.OWNER_SUSPENDED, (State.ACTIVE,), State.SUSPENDED, Actor.OWNER, ProofKind.CARD,
                   hold=BOTH, notify_owner=True),
    )
}


# The proofs only the owner can give: the card with its password, or the phone's password. A change made
# with any other proof (a device key, an operator session, the CA's record) must be told to the owner
# through the notice channel; tests/test_lifecycle_properties.py holds the table to that.
OWNER_SECRET_PROOFS = (ProofKind.CARD, ProofKind.PHONE_SIGNATURE_KEY, ProofKind.CARD_AND_DEVICE_KEY)
# The CA's answer to a registration the owner just proved with the card: the owner's own app receives it.
ANSWERS_TO_THE_OWNER = (ProofKind.CA_RESULT,)


# What a person is told of a state the CA does not have yet (the service's queue to the CA, ``ca_sync``,
# still pending): that it was asked for, not that it is done, since relying parties still get the
# CA's old answer (issue 14: "held" before the CA has it). Translated where it is shown.
REQUESTED_WORDING = {
    State.SUSPENDED: N_("suspension requested, waiting for the CA"),
    State.REVOKED: N_("revocation requested, waiting for the CA"),
    State.ACTIVE: N_("lift requested, waiting for the CA"),
}


def requested_wording(state: str, ca_sync: str | None) -> str | None:
    """The words for ``state`` while the CA does not have it yet; None when the CA has it (or refused it)."""
    if ca_sync != "pending":
        return None
    try:
        return REQUESTED_WORDING.get(State(state))
    except ValueError:
        return None


class TransitionRefused(Exception):
    def __init__(self, event: Event, state: State) -> None:
        allowed = ", ".join(s.value for s in TRANSITIONS[event].sources)
        self.sentence = Sentence("{event} is not possible on a {state} registration (only from: {allowed})",
                                 event=event.value, state=state.value, allowed=allowed)
        super().__init__(str(self.sentence))
        self.event, self.state = event, state


def transition(state: State, event: Event) -> Transition:
    """The transition ``event`` causes from ``state``, or :class:`TransitionRefused`."""
    rule = TRANSITIONS[event]
    if state not in rule.sources:
        raise TransitionRefused(event, state)
    return rule


def next_state(state: State, event: Event) -> State:
    rule = transition(state, event)
    return rule.target if rule.target is not None else state


def signature_reissue_needed(state: State, history: list[Event]) -> bool:
    """True while a supervisor's lift waits for the owner to prove card + phone for a new
    signature certificate. The owner's own lift reissues at once; a card revocation ends the
    need (a changed card means registering again)."""
    if state is not State.ACTIVE:
        return False
    for event in reversed(history):
        if event is Event.SUPERVISOR_LIFTED:
            return True
        if event in (Event.SIGNATURE_REISSUED, Event.OWNER_LIFTED, Event.CARD_REVOKED):
            return False
    return False
