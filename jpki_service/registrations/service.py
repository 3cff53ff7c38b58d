"""The owner's use cases: register, look up, revoke, authorise a password reset, uninstall,
stale certificate, lift a suspension (or finish a supervisor's lift), and the card cascade.

Each one checks its proof, then records the lifecycle change and the CA commands it needs in
one transaction, then tries to carry those commands to the CA at once. If the CA is away, the
change stands and the background dispatcher finishes the job (``ca_sync: pending``).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki_common import reset_authorisation
from jpki_common.keys import check_subject_key
from jpki_common.owner_proof import (
    NOTHING_AUTHORISED,
    PROOF_VERSION,
    Action,
    ProofChallenge,
    authorised_digest,
    email_digest,
    version_accepted,
)
from jpki_common.problems import pem_reason
from jpki_service import holder_data, lifecycle
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import utcnow
from jpki_service.ca_commands import service as ca_commands
from jpki_service.cards.service import VerifiedCard, person_key, person_of_certificate, verify_card_proof
from jpki_service.challenges.service import spend_challenge
from jpki_service.common.problems import (
    InvalidInput,
    OwnerTokenMissing,
    ProofRejected,
    RegistrationNotFound,
    StateConflict,
)
from jpki_service.lifecycle import Actor, CertKind, Event, State
from jpki_service.registrations.models import Person, PhoneCertificate, Registration, RegistrationEvent
from jpki_service.registrations.schemas import EmailRequest, LiftRequest, OwnerProof, RegisterRequest
from jpki_service.registrations.transitions import (
    NewKey,
    Reissue,
    apply_event,
    carry_quietly,
    current_certificates,
    history,
    holder_matches,
    issue_payload,
    load_registration,
    signature_reissue_needed,
)

log = logging.getLogger("jpki_service.registrations")


# -- reading ---------------------------------------------------------------------------------
def registration_document(session: Session, registration: Registration, seal_key: bytes) -> dict[str, Any]:
    sync = ca_commands.registration_sync(session, registration.id)
    certificates = session.scalars(
        select(PhoneCertificate).where(PhoneCertificate.registration_id == registration.id)
        .order_by(PhoneCertificate.id)
    )
    events = history(session, registration.id)
    last = events[-1] if events else None
    return {
        "registration_id": registration.id, "case_reference": registration.case_reference,
        "state": registration.state, "reason": registration.reason,
        "device_model": registration.device_model,
        "created_at": registration.created_at.isoformat(), "updated_at": registration.updated_at.isoformat(),
        "certificates": [
            {"kind": c.kind, "serial": c.serial, "status": c.status, "current": c.current,
             "certificate_pem": holder_data.open_certificate(seal_key, c.serial, c.certificate_pem)}
            for c in certificates
        ],
        "ca_sync": sync.state,
        "ca_sync_reason": sync.reason,
        "pending_ca_operations": sync.pending,
        "failed_ca_operations": sync.failed,
        "signature_reissue_needed": lifecycle.signature_reissue_needed(
            State(registration.state), [Event(e.event) for e in events]),
        # Who changed it last, so the phone can say "suspended by the call centre"; never the note.
        "last_change": {"event": last.event, "actor": last.actor, "at": last.at.isoformat()} if last else None,
        "login_notices": registration.login_notices,
    }


def get_registration(ctx: ServiceContext, registration_id: str) -> dict[str, Any]:
    """The owner's view, for answers to requests already proven (or the owner token checked)."""
    with ctx.store.sessions() as session:
        return registration_document(session, load_registration(session, registration_id), ctx.keys.holder_seal)


# -- the owner token: reads the registration -------------------------------------------------
# 256 random bits, handed to the phone in the answer to registering (or to a device-key proof) and
# kept here only as its SHA-256: a copy of the table reads nothing. Nobody but the phone sees it:
# staff, the audit trail and notices name the registration by its case reference.
def _new_owner_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, _owner_token_hash(token)


def _owner_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def read_registration(ctx: ServiceContext, registration_id: str, owner_token: str | None) -> dict[str, Any]:
    """``GET /api/v1/registrations/{id}``: only with this registration's owner token.

    No token: 401. A wrong token and an unknown id get the same 404, so the answer tells a stranger
    nothing, not even whether the id exists.
    """
    if not owner_token:
        raise OwnerTokenMissing("reading a registration needs its owner token (Authorization: Bearer <owner "
                                "token>), which the phone got when it registered; without it, prove the device "
                                f"key: POST /api/v1/registrations/{registration_id}/owner-token")
    with ctx.store.sessions() as session:
        registration = session.get(Registration, registration_id)
        if registration is None or registration.owner_token_hash is None or not hmac.compare_digest(
                registration.owner_token_hash, _owner_token_hash(owner_token)):
            raise RegistrationNotFound(f"no registration {registration_id} answers to this owner token",
                                       field="registration_id")
        return registration_document(session, registration, ctx.keys.holder_seal)


def issue_owner_token(ctx: ServiceContext, registration_id: str, proof: OwnerProof) -> dict[str, Any]:
    """A new owner token for a phone that proves its device key (one registered before tokens existed,
    or one that lost its token); the previous token stops working. The answer holds the document too."""
    with ctx.store.sessions() as session:
        device_key = load_registration(session, registration_id).device_public_key_pem
    challenge = spend_challenge(ctx.store, proof.challenge_id, Action.OWNER_TOKEN, registration_id)
    _check_key(device_key, challenge, proof.signature, "device key")
    token, token_hash = _new_owner_token()
    with ctx.store.transaction() as session:
        registration = load_registration(session, registration_id, lock=True)
        registration.owner_token_hash = token_hash
        document = registration_document(session, registration, ctx.keys.holder_seal)
    document["owner_token"] = token
    return document


# -- input checks ----------------------------------------------------------------------------
def _csr_public_key_pem(pem: str, field: str) -> str:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a PEM PKCS#10 request: {pem_reason(exc, 'CERTIFICATE REQUEST')}",
                           field=field) from None
    if not csr.is_signature_valid:
        raise InvalidInput(f"{field}: the request's self-signature does not verify", field=field)
    check_subject_key(csr.public_key())
    return csr.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _public_key(pem: str, field: str):
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{field} is not a PEM public key: {pem_reason(exc, 'PUBLIC KEY')}", field=field) from None
    check_subject_key(key)
    return key


def _lock_person(session: Session, ctx: ServiceContext, card: VerifiedCard) -> None:
    """Serialise registrations of one person (PostgreSQL row lock; SQLite writers are serial), and
    bring the person's older rows under the person key (items normalised, ``cards/service.py``).

    Every request locks the row of the normalised key first, made if absent: one lock order, so no
    deadlock, and two cards of one person (one spelling the name with U+0020, one with U+3000)
    wait for each other. Under that lock, rows keyed before the items were normalised are re-keyed
    in this transaction, so the supersede that follows sees them and the next request finds the
    person directly:

    - the legacy key of this very card (its raw items): that ``people`` row is deleted (waiting for
      whoever still holds it) and the registrations under it move to the new key;
    - the key of this very card as made before spoken addresses (its address by ``normalise_item``
      alone: ``previous_person_key``), likewise;
    - a live registration of the same person under another raw spelling (the old card wrote
      U+0020, the renewed one U+3000, or 1-1 and 一丁目1番): found by the blind index (normalised
      since it exists; under either rule set, ``holder_matches``) and confirmed by the items of its
      signature certificate giving this very person key; its key moves likewise.
    """
    new_key = card.person_key
    try:
        with session.begin_nested():
            session.add(Person(person_key=new_key))
    except IntegrityError:
        pass
    session.scalars(select(Person).where(Person.person_key == new_key).with_for_update()).one()
    old_keys = {card.legacy_person_key, card.previous_person_key} - {new_key}
    same_holder = holder_matches(ctx.keys.holder_index, card.person["name"], card.person["date_of_birth"],
                                 card.person["address"])
    for old_key, serial, stored in session.execute(
        select(Registration.person_key, PhoneCertificate.serial, PhoneCertificate.certificate_pem)
        .join(PhoneCertificate, PhoneCertificate.registration_id == Registration.id)
        .where(same_holder, Registration.person_key != new_key,
               Registration.state.in_([s.value for s in lifecycle.LIVE]),
               PhoneCertificate.kind == CertKind.SIGNATURE.value, PhoneCertificate.certificate_pem.is_not(None))
    ):
        pem = holder_data.open_certificate(ctx.keys.holder_seal, serial, stored) if old_key not in old_keys else None
        items = person_of_certificate(pem) if pem else None
        if items is not None and person_key(ctx.keys.person_index, items) == new_key:
            old_keys.add(old_key)
    for old_key in sorted(old_keys):
        session.execute(delete(Person).where(Person.person_key == old_key))
        session.execute(update(Registration).where(Registration.person_key == old_key).values(person_key=new_key))


# -- use cases -----------------------------------------------------------------------------
def register(ctx: ServiceContext, request: RegisterRequest) -> dict[str, Any]:
    """Register this phone from the card; supersede the same person's other phones."""
    _check_login_notices(request.email, request.login_notices)
    challenge = spend_challenge(ctx.store, request.proof.challenge_id, Action.REGISTER, None)
    if not request.proof.card_certificate_pem:
        raise InvalidInput("registering needs proof.card_certificate_pem", field="proof.card_certificate_pem")
    keys = {
        CertKind.SIGNATURE: _csr_public_key_pem(request.signature_csr_pem, "signature_csr_pem"),
        CertKind.AUTHENTICATION: _csr_public_key_pem(request.authentication_csr_pem, "authentication_csr_pem"),
    }
    csrs = {CertKind.SIGNATURE: request.signature_csr_pem, CertKind.AUTHENTICATION: request.authentication_csr_pem}
    _public_key(request.device.device_public_key_pem, "device.device_public_key_pem")
    # The card signs the two CSRs and the device key with the challenge: nothing swapped after it signed passes.
    authorised = authorised_digest(signature_csr_pem=request.signature_csr_pem,
                                   authentication_csr_pem=request.authentication_csr_pem,
                                   device_public_key_pem=request.device.device_public_key_pem)
    message = _card_message(challenge, request.proof, authorised)
    card = verify_card_proof(ctx.ca, request.proof.card_certificate_pem, message, request.proof.signature,
                             ctx.keys.person_index)
    registration_id = secrets.token_hex(16)
    suspension_code = holder_data.new_suspension_code()
    owner_token, owner_token_hash = _new_owner_token()
    with ctx.store.transaction() as session:
        _lock_person(session, ctx, card)
        superseded = []
        for old in session.scalars(
            select(Registration).where(Registration.person_key == card.person_key,
                                       Registration.state.in_([s.value for s in lifecycle.LIVE]))
            .with_for_update()
        ):
            apply_event(session, old, Event.SUPERSEDED)
            superseded.append(old.id)
        now = utcnow()
        initial = lifecycle.TRANSITIONS[Event.REGISTERED]
        assert initial.target is not None  # registering makes a pending registration
        session.add(Registration(
            id=registration_id, case_reference=holder_data.new_case_reference(), owner_token_hash=owner_token_hash,
            state=initial.target.value, reason=None, person_key=card.person_key,
            card_serial=card.serial, device_model=request.device.model,
            device_public_key_pem=request.device.device_public_key_pem, created_at=now, updated_at=now,
            holder_sealed=holder_data.seal_name(ctx.keys.holder_seal, card.person["name"]),
            holder_index=holder_data.holder_index(ctx.keys.holder_index, card.person["name"],
                                                  card.person["date_of_birth"], card.person["address"]),
            holder_index_rules=holder_data.HOLDER_INDEX_RULES,
            suspension_code_index=holder_data.suspension_code_index(ctx.keys.holder_index, suspension_code),
            email_sealed=holder_data.seal_email(ctx.keys.holder_seal, registration_id, request.email)
            if request.email else None,
            login_notices=request.login_notices,
        ))
        session.add(RegistrationEvent(registration_id=registration_id, at=now, event=Event.REGISTERED.value,
                                      actor=Actor.OWNER.value, from_state="-", to_state=initial.target.value))
        session.flush()
        for kind in lifecycle.BOTH:
            certificate = PhoneCertificate(registration_id=registration_id, kind=kind.value,
                                           public_key_pem=keys[kind], status="pending", current=True)
            session.add(certificate)
            session.flush()
            ca_commands.enqueue(session, certificate, "issue",
                                payload=issue_payload(kind, csrs[kind], card.serial))
    for affected in (registration_id, *superseded):
        carry_quietly(ctx, affected)
    document = get_registration(ctx, registration_id)
    document["superseded"] = superseded
    document["email"] = request.email  # echoed once, so the owner sees where notices go; kept sealed
    document["suspension_code"] = suspension_code  # shown once; only its keyed hash is kept
    document["owner_token"] = owner_token  # shown once; only its hash is kept
    # The SE pins it: only statements signed with it may reset its password (authorise_password_reset).
    document["statement_key_pem"] = ctx.keys.statement_public_key_pem()
    return document


def _owner_event(ctx: ServiceContext, registration_id: str, event: Event) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        apply_event(session, load_registration(session, registration_id, lock=True), event)
    carry_quietly(ctx, registration_id)
    return get_registration(ctx, registration_id)


def _proven_message(challenge: ProofChallenge, public_key: object, signature: str, authorised: str, what: str,
                    field: str) -> bytes:
    """The message ``signature`` covers for this request (its keys' ``authorised`` digest), or 403 saying why not.

    A version-1 proof covers no key: refused by name on a request that carries one
    (jpki_common/owner_proof.py). Called after the challenge is spent and before anything is written.
    """
    version = challenge.signed_version(public_key, authorised, signature)
    if version is None:
        if authorised == NOTHING_AUTHORISED:
            raise ProofRejected(f"the {what} did not sign this challenge", field=field)
        raise ProofRejected(f"the {what} did not sign this challenge with the keys this request carries "
                            f"(authorised {authorised}): a CSR or key differs from what was signed, or another "
                            "key signed", field=field)
    if not version_accepted(version, authorised):
        raise ProofRejected(f"the {what} signed a {version} proof, which covers no key, and this request carries "
                            f"keys: sign {PROOF_VERSION} (docs/service-api.md)", field=field)
    return challenge.message(authorised if version == PROOF_VERSION else NOTHING_AUTHORISED, version)


def _card_message(challenge: ProofChallenge, proof: OwnerProof, authorised: str) -> bytes:
    """The message the card's signature covers (its chain and status are checked after, by verify_card_proof)."""
    try:
        card_key = x509.load_pem_x509_certificate((proof.card_certificate_pem or "").encode()).public_key()
    except ValueError:
        return challenge.message(authorised)  # not a certificate: verify_card_proof says so (422)
    return _proven_message(challenge, card_key, proof.signature, authorised, "card", "proof.signature")


def _check_key(pem: str, challenge: ProofChallenge, signature: str, what: str) -> None:
    """A proof by a registered key of a request that carries no key (revoke, uninstall, stale certificate)."""
    _proven_message(challenge, serialization.load_pem_public_key(pem.encode()), signature, NOTHING_AUTHORISED, what,
                    "proof.signature")


def revoke_registration(ctx: ServiceContext, registration_id: str, proof: OwnerProof) -> dict[str, Any]:
    """The owner revokes (before selling): proven by the phone signature key."""
    with ctx.store.sessions() as session:
        load_registration(session, registration_id)
        signature_key = next(c.public_key_pem for c in current_certificates(session, registration_id)
                             if c.kind == CertKind.SIGNATURE.value)
    challenge = spend_challenge(ctx.store, proof.challenge_id, Action.REVOKE, registration_id)
    _check_key(signature_key, challenge, proof.signature, "phone signature key")
    return _owner_event(ctx, registration_id, Event.OWNER_REVOKED)


def authorise_password_reset(ctx: ServiceContext, registration_id: str, proof: OwnerProof) -> dict[str, Any]:
    """The card that registered this phone proves itself; the SE may then set a new password.

    The answer carries the authorisation the SE checks: a statement signed with the service's
    statement key, for this registration and its current phone signature key, valid a few minutes
    (jpki_common/reset_authorisation.py).
    """
    with ctx.store.sessions() as session:
        card_serial = load_registration(session, registration_id).card_serial
    challenge = spend_challenge(ctx.store, proof.challenge_id, Action.RESET_PASSWORD, registration_id)
    _registering_card(ctx, proof, challenge, NOTHING_AUTHORISED, card_serial)
    with ctx.store.transaction() as session:
        registration = load_registration(session, registration_id, lock=True)
        apply_event(session, registration, Event.PASSWORD_RESET)
        signature_key = next(c.public_key_pem for c in current_certificates(session, registration_id)
                             if c.kind == CertKind.SIGNATURE.value)
    if ctx.keys.statement is None:
        raise RuntimeError("the service runs without its statement key")  # only read-only commands lack it
    statement = reset_authorisation.issue(ctx.keys.statement, registration_id,
                                          reset_authorisation.key_fingerprint(signature_key), challenge.challenge_id)
    return {"registration_id": registration_id, "reset_allowed": True, "authorisation": statement.to_json()}


def _check_login_notices(email: str | None, login_notices: bool) -> None:
    if login_notices and not email:
        raise InvalidInput("login_notices needs an email address: log-in notices go by e-mail", field="login_notices")


def set_email(ctx: ServiceContext, registration_id: str, request: EmailRequest) -> dict[str, Any]:
    """The owner sets, changes or removes the notice address (and the log-in notices) with the card that
    registered this phone; the card signs the address with the challenge (``owner_proof.email_digest``).
    Not a lifecycle event: the certificates and the state stay as they are."""
    _check_login_notices(request.email, request.login_notices)
    with ctx.store.sessions() as session:
        registration = load_registration(session, registration_id)
        card_serial, state = registration.card_serial, State(registration.state)
    challenge = spend_challenge(ctx.store, request.proof.challenge_id, Action.EMAIL, registration_id)
    _registering_card(ctx, request.proof, challenge, email_digest(request.email, request.login_notices), card_serial)
    if state.is_final:
        raise StateConflict(f"the registration is {state.value}: it gets no more notices", state=state.value)
    with ctx.store.transaction() as session:
        registration = load_registration(session, registration_id, lock=True)
        registration.email_sealed = (holder_data.seal_email(ctx.keys.holder_seal, registration_id, request.email)
                                     if request.email else None)
        registration.login_notices = request.login_notices
    document = get_registration(ctx, registration_id)
    document["email"] = request.email
    return document


def statement_key(ctx: ServiceContext) -> dict[str, str]:
    """The public half of the key that signs reset authorisations, for the phone to pin."""
    pem = ctx.keys.statement_public_key_pem()
    return {"algorithm": "Ed25519", "public_key_pem": pem, "fingerprint": reset_authorisation.key_fingerprint(pem),
            "purpose": reset_authorisation.PURPOSE_PASSWORD_RESET}


def _proven_card(ctx: ServiceContext, proof: OwnerProof, challenge: ProofChallenge, authorised: str) -> VerifiedCard:
    """The card's proof: a card signature certificate of the CA, good at OCSP, whose key signed the challenge."""
    if not proof.card_certificate_pem:
        raise InvalidInput("this request needs proof.card_certificate_pem", field="proof.card_certificate_pem")
    message = _card_message(challenge, proof, authorised)
    return verify_card_proof(ctx.ca, proof.card_certificate_pem, message, proof.signature, ctx.keys.person_index)


def _registering_card(ctx: ServiceContext, proof: OwnerProof, challenge: ProofChallenge, authorised: str,
                      card_serial: str) -> VerifiedCard:
    """The card's proof, from the very card that registered this phone."""
    card = _proven_card(ctx, proof, challenge, authorised)
    if card.serial != card_serial:
        raise ProofRejected("this card is not the one that registered this phone", field="proof.card_certificate_pem")
    return card


def lift_suspension(ctx: ServiceContext, registration_id: str, request: LiftRequest) -> dict[str, Any]:
    """The phone was found: card + device key lift the suspension (DESIGN.md 2.8).

    The authentication certificate is released; the signature certificate is revoked and a new
    one issued to the new key in ``signature_csr_pem``. The same request finishes a supervisor's
    lift, which could not reissue (no card, no key): then only the signature is reissued.
    """
    with ctx.store.sessions() as session:
        registration = load_registration(session, registration_id)
        card_serial, device_key = registration.card_serial, registration.device_public_key_pem
    challenge = spend_challenge(ctx.store, request.proof.challenge_id, Action.LIFT_SUSPENSION, registration_id)
    if not request.proof.device_signature:
        raise InvalidInput("lifting a suspension needs proof.device_signature (the phone's device key)",
                           field="proof.device_signature")
    new_key = NewKey(request.signature_csr_pem, _csr_public_key_pem(request.signature_csr_pem, "signature_csr_pem"))
    # Card and device key both sign the new signature CSR with the challenge (jpki_common/owner_proof.py).
    authorised = authorised_digest(signature_csr_pem=request.signature_csr_pem)
    _proven_message(challenge, serialization.load_pem_public_key(device_key.encode()), request.proof.device_signature,
                    authorised, "device key", "proof.device_signature")
    card = _registering_card(ctx, request.proof, challenge, authorised, card_serial)
    with ctx.store.transaction() as session:
        registration = load_registration(session, registration_id, lock=True)
        if registration.state == State.SUSPENDED.value:
            event = Event.OWNER_LIFTED
        elif signature_reissue_needed(session, registration):
            event = Event.SIGNATURE_REISSUED
        else:
            raise StateConflict(f"the registration is {registration.state}, not suspended, and its signature "
                                "certificate needs no reissue", state=registration.state)
        apply_event(session, registration, event,
                    reissue=Reissue({CertKind.SIGNATURE: new_key}, card.serial))
    carry_quietly(ctx, registration_id)
    return get_registration(ctx, registration_id)


def report_device_event(ctx: ServiceContext, registration_id: str, proof: OwnerProof, event: Event) -> dict[str, Any]:
    """Uninstall or stale certificate at reinstall: proven by the device key, no secret."""
    action = Action.UNINSTALL if event is Event.UNINSTALLED else Action.STALE_CERTIFICATE
    with ctx.store.sessions() as session:
        registration = load_registration(session, registration_id)
        device_key, state = registration.device_public_key_pem, State(registration.state)
    challenge = spend_challenge(ctx.store, proof.challenge_id, action, registration_id)
    _check_key(device_key, challenge, proof.signature, "device key")
    if state.is_final and event is Event.STALE_CERTIFICATE:
        return get_registration(ctx, registration_id)  # already dead: the phone may delete its copy
    return _owner_event(ctx, registration_id, event)


# -- the card as the owner's master key ---------------------------------------------------------
# From any phone or PC with a card reader, the card alone (card password, card good at OCSP) lists the
# registrations of the person it names and revokes or suspends any of them (docs/service-api.md). They
# are found by the person key, as registering finds the phones it supersedes (``_lock_person``: a renewed
# card of the same person finds them too), and named by their case reference, which unlocks nothing.
CARD_NOTE = "with the card"  # the history's note on the owner's act
CARD_EVENTS = {Action.CARD_REVOKE: Event.OWNER_CARD_REVOKED, Action.CARD_SUSPEND: Event.OWNER_SUSPENDED}


def card_summary(session: Session, registration: Registration) -> dict[str, Any]:
    """What the card sees of a registration: the phone model, when it was registered, its state and whether
    the CA has it all; nothing else (no id, no certificate, no history)."""
    return {"case_reference": registration.case_reference, "device_model": registration.device_model,
            "registered_at": registration.created_at.isoformat(), "state": registration.state,
            "ca_sync": ca_commands.registration_sync(session, registration.id).state}


def list_with_card(ctx: ServiceContext, proof: OwnerProof) -> list[dict[str, Any]]:
    """The registrations of the person the card names, oldest first (``card-list``)."""
    challenge = spend_challenge(ctx.store, proof.challenge_id, Action.CARD_LIST, None)
    card = _proven_card(ctx, proof, challenge, NOTHING_AUTHORISED)
    with ctx.store.transaction() as session:
        _lock_person(session, ctx, card)  # older rows of this person come under the card's person key
        # created_at is to the second: two phones registered within one second are ordered by their first
        # history entry (an autoincrement id, written in the registering transaction; the person is locked).
        first_entry = (select(func.min(RegistrationEvent.id))
                       .where(RegistrationEvent.registration_id == Registration.id).scalar_subquery())
        return [card_summary(session, registration) for registration in session.scalars(
            select(Registration).where(Registration.person_key == card.person_key)
            .order_by(Registration.created_at, first_entry))]


def act_with_card(ctx: ServiceContext, action: Action, case_reference: str, proof: OwnerProof,
                  suspension_reason: str | None = None) -> dict[str, Any]:
    """Revoke (``card-revoke``) or suspend (``card-suspend``) one of the person's registrations with the card.

    The challenge names the action and the case reference, so a proof serves neither another act nor another
    registration. A registration of another person answers exactly as an unknown case reference does (404).
    """
    event = CARD_EVENTS[action]
    reference = holder_data.normalise_case_reference(case_reference)
    challenge = spend_challenge(ctx.store, proof.challenge_id, action, reference)
    card = _proven_card(ctx, proof, challenge, NOTHING_AUTHORISED)
    with ctx.store.transaction() as session:
        _lock_person(session, ctx, card)
        registration = session.scalars(
            select(Registration).where(Registration.case_reference == reference,
                                       Registration.person_key == card.person_key).with_for_update()
        ).one_or_none()
        if registration is None:
            raise RegistrationNotFound(f"no registration with case reference {reference} answers to this card",
                                       field="case_reference")
        apply_event(session, registration, event, note=CARD_NOTE, suspension_reason=suspension_reason)
        registration_id = registration.id
    carry_quietly(ctx, registration_id)
    with ctx.store.sessions() as session:
        return card_summary(session, load_registration(session, registration_id))


# -- the blind index under older rules ---------------------------------------------------------
def _signature_items(session: Session, ctx: ServiceContext, registration_id: str) -> dict[str, str] | None:
    """The four items a registration's signature certificate carries (the current one first), or None
    when none is stored or none opens with the holder-data key."""
    for serial, stored in session.execute(
        select(PhoneCertificate.serial, PhoneCertificate.certificate_pem)
        .where(PhoneCertificate.registration_id == registration_id, PhoneCertificate.kind == CertKind.SIGNATURE.value,
               PhoneCertificate.certificate_pem.is_not(None))
        .order_by(PhoneCertificate.current.desc(), PhoneCertificate.id.desc())
    ):
        pem = holder_data.open_certificate(ctx.keys.holder_seal, serial, stored)
        items = person_of_certificate(pem) if pem else None
        if items is not None:
            return items
    return None


def reindex_holders(ctx: ServiceContext, batch: int = 200) -> tuple[int, int]:
    """Recompute the blind index of registrations indexed under older rules (``holder_index_rules`` below
    ``holder_data.HOLDER_INDEX_RULES``: made before era dates and spoken addresses) from the four items of
    their sealed signature certificate; returns (recomputed, left). A start-up step, like
    ``ca_commands.seal_clear_certificates`` and for the same reason not an Alembic revision (a migration
    gets only the database URL, never the data key); idempotent, and cheap when there is nothing to do.

    A registration whose signature certificate does not open (not issued yet, refused by the CA, sealed
    under another key) is left under its old index, which the call-centre search still looks under
    (``transitions.holder_matches``): it is found by what found it before, and recomputed at a later
    start, once its certificate is there. The person key does not depend on the index; rows keyed before
    spoken addresses are re-keyed when the person registers again (``_lock_person``)."""
    old_rules = and_(Registration.holder_index.is_not(None),
                     Registration.holder_index_rules < holder_data.HOLDER_INDEX_RULES)
    recomputed = left = 0
    after = ""
    while True:
        with ctx.store.transaction() as session:
            rows = session.scalars(select(Registration).where(old_rules, Registration.id > after)
                                   .order_by(Registration.id).limit(batch).with_for_update()).all()
            for registration in rows:
                items = _signature_items(session, ctx, registration.id)
                if items is None:
                    left += 1
                    continue
                registration.holder_index = holder_data.holder_index(
                    ctx.keys.holder_index, items["name"], items["date_of_birth"], items["address"])
                registration.holder_index_rules = holder_data.HOLDER_INDEX_RULES
                recomputed += 1
        if len(rows) < batch:
            break
        after = rows[-1].id
    if recomputed or left:
        log.info("blind index recomputed under rules %d for %d registrations; %d left under older rules "
                 "(no signature certificate to read the items from yet)", holder_data.HOLDER_INDEX_RULES,
                 recomputed, left)
    return recomputed, left


def apply_card_cascade(ctx: ServiceContext) -> int:
    """Revoke the phone signature certificates derived from cards revoked at the CA."""
    revoked_cards = ctx.ca.revoked_card_serials()
    if not revoked_cards:
        return 0
    with ctx.store.sessions() as session:
        candidates = session.execute(
            select(Registration.id, Registration.card_serial)
            .join(PhoneCertificate, PhoneCertificate.registration_id == Registration.id)
            .where(Registration.state.in_([State.ACTIVE.value, State.SUSPENDED.value]),
                   PhoneCertificate.kind == CertKind.SIGNATURE.value, PhoneCertificate.current.is_(True),
                   PhoneCertificate.status != "revoked")
        ).all()
    affected = [registration_id for registration_id, card_serial in candidates if card_serial in revoked_cards]
    for registration_id in affected:
        with ctx.store.transaction() as session:
            registration = load_registration(session, registration_id, lock=True)
            if registration.state in (State.ACTIVE.value, State.SUSPENDED.value):
                apply_event(session, registration, Event.CARD_REVOKED)
        carry_quietly(ctx, registration_id)
    return len(affected)
