"""Driving the lifecycle service's HTTP API directly, with real keys and a real card.

The phone app (``app_client``) is the normal client; these helpers exist to test the API's
own rules (proofs, replays, bad input) independently of the app.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ca_mock.cards.service import issue_card
from ca_mock.certificates.schemas import PersonIn
from jpki_common.owner_proof import NOTHING_AUTHORISED, authorised_digest, proof_message, sign_message
from tests.helpers import PERSON, csr_pem

CARD_PASSWORD, CARD_PIN = "CARD1234", "1234"


@dataclass
class CardForTests:
    certificate_pem: str
    serial: str
    key: rsa.RSAPrivateKey


def make_card(store, settings, person: dict | None = None) -> CardForTests:
    card = issue_card(store, settings, PersonIn(**(person or PERSON)), CARD_PASSWORD, CARD_PIN)
    key = serialization.load_pem_private_key(card["signature"]["private_key_pem"].encode(), CARD_PASSWORD.encode())
    return CardForTests(card["signature"]["certificate_pem"], card["signature"]["serial"], key)


@dataclass
class PhoneForTests:
    # Fresh keys per phone: a proof by another phone's key must really be another key.
    signature_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    authentication_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    device_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    registration_id: str | None = None
    owner_token: str | None = None  # from the answer to registering: reads the registration
    case_reference: str | None = None  # what staff name the registration by

    def device_public_pem(self) -> str:
        return self.device_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def challenge(client: httpx.Client, action: str, registration_id: str | None = None) -> dict:
    response = client.post("/api/v1/challenges", json={"action": action, "registration_id": registration_id})
    assert response.status_code == 201, response.text
    return response.json()


def signed(challenge_: dict, key, authorised: str = NOTHING_AUTHORISED, version: str | None = None) -> str:
    """A proof signature over the challenge and ``authorised`` (owner_proof.authorised_digest of the request)."""
    message = proof_message(challenge_["action"], challenge_["registration_id"], challenge_["challenge_id"],
                            challenge_["nonce"], authorised, **({"version": version} if version else {}))
    return sign_message(key, message)


def register_authorised(body: dict) -> str:
    """The authorised digest of a registration body: its two CSRs and its device key."""
    return authorised_digest(signature_csr_pem=body["signature_csr_pem"],
                             authentication_csr_pem=body["authentication_csr_pem"],
                             device_public_key_pem=body["device"]["device_public_key_pem"])


def register_body(client: httpx.Client, card: CardForTests, phone: PhoneForTests) -> dict:
    c = challenge(client, "register")
    body = {
        "proof": {"challenge_id": c["challenge_id"], "card_certificate_pem": card.certificate_pem},
        "device": {"model": "Test Phone 1", "device_public_key_pem": phone.device_public_pem()},
        "signature_csr_pem": csr_pem(phone.signature_key),
        "authentication_csr_pem": csr_pem(phone.authentication_key),
    }
    body["proof"]["signature"] = signed(c, card.key, register_authorised(body))
    return body


def register(client: httpx.Client, card: CardForTests, phone: PhoneForTests) -> httpx.Response:
    response = client.post("/api/v1/registrations", json=register_body(client, card, phone))
    if response.status_code in (201, 202):
        answer = response.json()
        phone.registration_id, phone.owner_token = answer["registration_id"], answer["owner_token"]
        phone.case_reference = answer["case_reference"]
    return response


def read(client: httpx.Client, phone: PhoneForTests) -> dict:
    """The phone's registration as the owner reads it (GET with its owner token)."""
    response = client.get(f"/api/v1/registrations/{phone.registration_id}",
                          headers={"Authorization": f"Bearer {phone.owner_token}"})
    assert response.status_code == 200, response.text
    return response.json()


def proof_for(client: httpx.Client, action: str, phone: PhoneForTests, key) -> dict:
    c = challenge(client, action, phone.registration_id)
    return {"proof": {"challenge_id": c["challenge_id"], "signature": signed(c, key)}}


OPERATOR_PASSWORD = "correct horse battery"


def add_operator(service, username: str, role: str) -> None:
    """An operator account on a running service's database (as `jpki-service operator add` makes it)."""
    from jpki_service.adapters.db import Store
    from jpki_service.operators.roles import Role
    from jpki_service.operators.service import add_operator as add

    store = Store(service.database_url)
    try:
        add(store, username, Role(role), OPERATOR_PASSWORD)
    finally:
        store.dispose()


def operator_client(service, username: str, role: str) -> httpx.Client:
    """A client signed in as a new operator of ``role`` (bearer token)."""
    add_operator(service, username, role)
    with service.client() as login:
        answer = login.post("/api/v1/operator/session", json={"username": username, "password": OPERATOR_PASSWORD})
    assert answer.status_code == 201, answer.text
    client = service.client()
    client.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return client


def lift_body(client: httpx.Client, card: CardForTests, phone: PhoneForTests, new_signature_key) -> dict:
    """The owner's lift: card key and device key over one challenge, and a CSR for a new signature key."""
    c = challenge(client, "lift-suspension", phone.registration_id)
    csr = csr_pem(new_signature_key)
    authorised = authorised_digest(signature_csr_pem=csr)
    return {
        "proof": {"challenge_id": c["challenge_id"], "signature": signed(c, card.key, authorised),
                  "card_certificate_pem": card.certificate_pem,
                  "device_signature": signed(c, phone.device_key, authorised)},
        "signature_csr_pem": csr,
    }
