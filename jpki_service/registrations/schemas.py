"""What the owner's phone sends and gets back (docs/service-api.md)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from jpki_common.owner_proof import Action
from jpki_service.callcentre.schemas import SuspensionReason

RegistrationId = Field(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")
Pem = Field(min_length=1, max_length=16_384)
# Where owner notices go (checked by email-validator, no DNS look-up): sealed at rest (holder_data.seal_email).
NoticeAddress = Annotated[EmailStr, Field(max_length=254, description="The owner's e-mail address for notices")]
LoginNotices = Field(False, description="Also tell the owner, by e-mail, of each log-in with the phone's "
                                        "user-authentication certificate at the relying party (needs email)")

# Examples for the API documents (/docs, /redoc): shortened PEM blocks and signatures, real shapes.
_ID = "5f0c9d1e2a3b4c5d6e7f8091a2b3c4d5"
_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBHDCBwgIBADAAMFkw...\n-----END CERTIFICATE REQUEST-----\n"
_CERT = "-----BEGIN CERTIFICATE-----\nMIICrTCCAlOgAwIBAgIUX2...\n-----END CERTIFICATE-----\n"
_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...\n-----END PUBLIC KEY-----\n"
_SIGNATURE = "MEUCIQDx3...b64...AiB0"
_CHALLENGE = "9b2e4f0a6c8d1e3f5a7b9c0d2e4f6a8b"


class ChallengeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "register"}, {"action": "revoke", "registration_id": _ID},
        {"action": "card-revoke", "case_reference": "ABCD-EFGH-JKMN"}]})

    action: Action
    registration_id: str | None = Field(None, min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")
    case_reference: str | None = Field(
        None, min_length=1, max_length=32,
        description="Only for card-revoke and card-suspend: the registration the card acts on, by its case reference "
                    "(as `POST /api/v1/card/registrations` lists it; any case, width or hyphens)")


class ChallengeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"challenge_id": _CHALLENGE, "nonce": "q9T3yX0b8kVw1mZ4r7Lc2pN6sD5fG8hJ0aB3cE6dF9g", "action": "revoke",
         "registration_id": _ID, "expires_at": "2026-04-01T03:05:00+00:00"}]})

    challenge_id: str
    nonce: str
    action: str
    registration_id: str | None
    case_reference: str | None = Field(
        None, description="card-revoke and card-suspend: the case reference the proof names (the message's third "
                          "line), as the service spells it")
    expires_at: str


class OwnerProof(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenge_id: str = Field(min_length=1, max_length=64)
    signature: str = Field(min_length=1, max_length=2048, description="base64 signature over the proof message")
    card_certificate_pem: str | None = Field(None, min_length=1, max_length=16_384)
    device_signature: str | None = Field(None, min_length=1, max_length=2048)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=64)
    device_public_key_pem: str = Pem


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE, "card_certificate_pem": _CERT},
        "device": {"model": "Pixel 9", "device_public_key_pem": _KEY},
        "signature_csr_pem": _CSR, "authentication_csr_pem": _CSR}]})

    proof: OwnerProof
    device: DeviceIn
    signature_csr_pem: str = Pem
    authentication_csr_pem: str = Pem
    email: NoticeAddress | None = None
    login_notices: bool = LoginNotices


class EmailRequest(BaseModel):
    """Set, change or remove (``email: null``) the notice address, with the card that registered the phone."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE, "card_certificate_pem": _CERT},
        "email": "hanako@example.jp", "login_notices": True}]})

    proof: OwnerProof
    email: NoticeAddress | None
    login_notices: bool = LoginNotices


class ProofRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE}},
        {"proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE, "card_certificate_pem": _CERT}}]})

    proof: OwnerProof


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE, "card_certificate_pem": _CERT,
                  "device_signature": _SIGNATURE},
        "signature_csr_pem": _CSR}]})

    proof: OwnerProof
    signature_csr_pem: str = Field(min_length=1, max_length=16_384,
                                   description="PKCS#10 request for the new signature key pair made in the SE")


class LastChange(BaseModel):
    event: str
    actor: Literal["owner", "system", "operator", "supervisor", "carrier"]
    at: str


class CertificateOut(BaseModel):
    kind: Literal["signature", "authentication"]
    serial: str | None
    status: Literal["pending", "good", "held", "revoked"]
    current: bool
    certificate_pem: str | None


class RegistrationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "registration_id": _ID, "case_reference": "ABCD-EFGH-JKMN", "state": "active", "reason": None,
        "device_model": "Pixel 9", "created_at": "2026-04-01T03:00:12+00:00", "updated_at": "2026-04-01T03:00:13+00:00",
        "certificates": [
            {"kind": "signature", "serial": "4F2A91C0D3", "status": "good", "current": True, "certificate_pem": _CERT},
            {"kind": "authentication", "serial": "4F2A91C0D4", "status": "good", "current": True,
             "certificate_pem": _CERT}],
        "ca_sync": "done", "ca_sync_reason": None, "pending_ca_operations": 0, "failed_ca_operations": 0,
        "signature_reissue_needed": False,
        "last_change": {"event": "certificates-issued", "actor": "system", "at": "2026-04-01T03:00:13+00:00"},
        "superseded": [], "suspension_code": "7KQM-3XHD-PW9R",
        "statement_key_pem": _KEY, "owner_token": "Rk3v0f9QH2m8yLz1cXwT6nB4pJ7sA5dE0gU2iO9aKqM"}]})

    registration_id: str
    case_reference: str = Field(description="What the call centre and the notices name this registration by "
                                            "(ABCD-EFGH-JKMN): give it when you call; it unlocks nothing")
    state: Literal["pending", "active", "suspended", "revoked", "expired"]
    reason: str | None
    device_model: str
    created_at: str
    updated_at: str
    certificates: list[CertificateOut]
    ca_sync: Literal["done", "pending", "failed"] = Field(
        description="done: the CA has every change; pending: recorded here, the service keeps carrying it to "
                    "the CA until the CA has it; failed: the CA refused a change (see ca_sync_reason)")
    ca_sync_reason: str | None = Field(description="Why ca_sync is not done; null when it is")
    pending_ca_operations: int
    failed_ca_operations: int
    signature_reissue_needed: bool = Field(
        description="A supervisor lifted the suspension: prove card + phone (lift-suspension) for a new signature "
                    "certificate")
    last_change: LastChange | None
    email: str | None = Field(None, description="The notice address; only in the answers to registering and to "
                                                "changing it (it is kept sealed, never shown elsewhere)")
    login_notices: bool = Field(False, description="Whether each log-in at the relying party is told by e-mail")
    superseded: list[str] = []
    suspension_code: str | None = Field(
        None, description="Only in the answer to a registration: give it to the call centre if the phone is lost")
    statement_key_pem: str | None = Field(
        None, description="Only in the answer to a registration: the service's Ed25519 statement key, which the "
                          "secure element pins to check reset authorisations")
    owner_token: str | None = Field(
        None, description="Only in the answer to a registration (or to POST .../owner-token): the token that "
                          "reads this registration (GET with Authorization: Bearer). Keep it on the phone; it is "
                          "shown nowhere else and the service keeps only its hash")


class ResetAuthorisationOut(BaseModel):
    """The signed statement the SE checks (jpki_common/reset_authorisation.py; docs/service-api.md)."""

    version: str
    purpose: Literal["password-reset"]
    registration_id: str
    key_fingerprint: str = Field(description="hex SHA-256 of the phone signature key's SubjectPublicKeyInfo DER")
    statement_id: str = Field(description="the id of the reset-password challenge the card signed")
    issued_at: str
    expires_at: str
    signature: str = Field(description="base64 Ed25519 signature by the service's statement key")


class PasswordResetOut(BaseModel):
    registration_id: str
    reset_allowed: bool
    authorisation: ResetAuthorisationOut


class StatementKeyOut(BaseModel):
    algorithm: Literal["Ed25519"]
    public_key_pem: str
    fingerprint: str
    purpose: str


# -- the card as the owner's master key (docs/service-api.md) ---------------------------------------
class CardSuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "proof": {"challenge_id": _CHALLENGE, "signature": _SIGNATURE, "card_certificate_pem": _CERT},
        "reason": "lost"}]})

    proof: OwnerProof
    reason: SuspensionReason = Field(SuspensionReason.LOST, description="Why the owner suspends the phone")


class CardRegistrationOut(BaseModel):
    """What the card sees of one registration of its person: nothing else (no id, no certificate)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "case_reference": "ABCD-EFGH-JKMN", "device_model": "Pixel 9", "registered_at": "2026-04-01T03:00:12+00:00",
        "state": "active", "ca_sync": "done"}]})

    case_reference: str = Field(description="What the card's revoke and suspend requests name it by")
    device_model: str
    registered_at: str
    state: Literal["pending", "active", "suspended", "revoked", "expired"]
    ca_sync: Literal["done", "pending", "failed"] = Field(
        description="done: the CA has every change; pending: on its way to the CA; failed: the CA refused one")


class CardRegistrationsOut(BaseModel):
    registrations: list[CardRegistrationOut] = Field(description="Oldest first")
