"""The My Number card as the owner's master key: what the card alone does, from any phone or PC
with a card reader (docs/phone-app.md, "The card alone").

The card proves the owner as it does at registration: the card password unlocks its signature key
(in the card, here the simulated reader), which signs a fresh challenge; the service checks the card
certificate good at OCSP. It finds the registrations of the person the card names (a renewed card of
the same person finds them too) and names each by its case reference. No phone is needed, so the
home these run from may hold no registration at all; a suspension is lifted on the phone itself,
with the card and the phone (``flows.lift_suspension``).

Like :mod:`app_client.flows`, nothing here prompts, prints, logs or stores a secret.
"""
from __future__ import annotations

from app_client.card_reader import CardReader
from app_client.owner_secrets import CARD_PASSWORD
from app_client.service_client import CardRegistration, Challenge, Proof, ServiceClient
from jpki_common.owner_proof import Action

ACTS = {"revoke": Action.CARD_REVOKE, "suspend": Action.CARD_SUSPEND}


def _card_proof(card: CardReader, card_password: str, challenge: Challenge) -> Proof:
    return Proof(challenge.challenge_id, card.sign_proof(card_password, challenge.message()),
                 card_certificate_pem=card.signature_certificate_pem)


def list_registrations(service: ServiceClient, card: CardReader, card_password: str) -> tuple[CardRegistration, ...]:
    """The person's registrations at the service: phone model, when registered, state, whether the CA has it."""
    CARD_PASSWORD.check(card_password)  # the rule first: neither a challenge nor a card try is spent on it
    challenge = service.card_challenge(Action.CARD_LIST)
    return service.card_registrations(_card_proof(card, card_password, challenge))


def act(service: ServiceClient, card: CardReader, card_password: str, act: str, case_reference: str,
        reason: str | None = None) -> CardRegistration:
    """Revoke (``act`` ``revoke``) or suspend (``suspend``, with ``reason``) the person's registration
    ``case_reference`` with the card alone. The card signs the act and the case reference with the challenge:
    the proof serves no other act and no other registration."""
    CARD_PASSWORD.check(card_password)
    challenge = service.card_challenge(ACTS[act], case_reference)
    target = challenge.registration_id or case_reference  # the case reference as the service spells it
    return service.card_act(act, target, _card_proof(card, card_password, challenge), reason)
