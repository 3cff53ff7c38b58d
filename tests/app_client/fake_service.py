"""The lifecycle service's owner API in memory, for the phone-side tests of lifting a suspension.

Only what registering, ``status`` and lifting need, and in the shape of docs/service-api.md. It
checks every proof with the protocol's own functions (``jpki_service.protocol``), so the app's
proofs are tested too: the card signature with the card certificate, the device signature with
the device key registered, both over the same challenge. Certificates are issued by a throwaway
issuer: the SE only checks that a certificate is for its key.

Reading a registration needs its owner token, as at the real service
(jpki_service/registrations/service.py): one is issued in the answer to registering and kept only
as its SHA-256; ``GET .../{id}`` without ``Authorization: Bearer`` answers 401, with a wrong token
(or for an unknown id) 404; ``POST .../owner-token`` with a device-key proof over an
``owner-token`` challenge gives a new one, and the previous one stops working. Every document
carries the registration's ``case_reference``.

The call centre's side (suspend, a supervisor's lift, the CA catching up after a 202) is driven
by the test through methods, as the operator console and the CA would drive the real service.
"""
from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jpki_common.owner_proof import authorised_digest, proof_message, signature_verifies

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
URL = "http://lifecycle.test"


class LiftOutcome(enum.Enum):
    DONE = "done"  # 200: the CA issued the new signature certificate at once
    PENDING = "pending"  # 202: recorded, the CA has not issued yet
    ANSWER_LOST = "answer-lost"  # recorded and issued, but the phone never hears the answer
    REFUSED = "refused"  # 403 proof-rejected, nothing changes (as for a card that did not register)


@dataclass
class _Certificate:
    kind: str
    public_key_pem: str
    status: str = "pending"
    current: bool = True
    serial: str | None = None
    certificate_pem: str | None = None

    def document(self) -> dict[str, Any]:
        return {"kind": self.kind, "serial": self.serial, "status": self.status, "current": self.current,
                "certificate_pem": self.certificate_pem}


@dataclass
class _Registration:
    registration_id: str
    card_serial: int
    device_public_key_pem: str
    certificates: list[_Certificate]
    state: str = "active"
    reason: str | None = None
    signature_reissue_needed: bool = False
    last_change: dict[str, str] | None = None
    ca_sync: str = "done"
    case_reference: str = field(default_factory=lambda: _crockford_code())
    # SHA-256 of the owner token (None: registered before tokens, until the device key asks for one).
    owner_token_hash: str | None = None


@dataclass
class FakeService:
    lift_outcome: LiftOutcome = LiftOutcome.DONE
    registrations: dict[str, _Registration] = field(default_factory=dict)
    challenges: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)  # id -> action, reg, nonce
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path), in order
    lift_bodies: list[dict[str, Any]] = field(default_factory=list)
    # (method, path, the Authorization header or None), in order: what each request carried.
    authorizations: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._issuer_key = ec.generate_private_key(ec.SECP256R1())

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), base_url=URL)

    # -- what the call centre and the CA do --------------------------------------------------------

    def suspend(self, registration_id: str, reason: str = "lost", actor: str = "operator") -> None:
        registration = self.registrations[registration_id]
        registration.state, registration.reason = "suspended", reason
        for certificate in self._current(registration):
            certificate.status = "held"
        registration.last_change = self._change("suspended", actor)

    def supervisor_lift(self, registration_id: str) -> None:
        registration = self.registrations[registration_id]
        registration.state, registration.reason, registration.signature_reissue_needed = "active", None, True
        for certificate in self._current(registration):
            certificate.status = "revoked" if certificate.kind == "signature" else "good"
        registration.last_change = self._change("supervisor-lifted", "supervisor")

    def revoke(self, registration_id: str) -> None:
        registration = self.registrations[registration_id]
        registration.state, registration.reason = "revoked", "supervisor-revoked"
        for certificate in self._current(registration):
            certificate.status = "revoked"

    def ca_catches_up(self, registration_id: str) -> None:
        """The CA answers again: pending certificates are issued (the service's dispatcher at work)."""
        registration = self.registrations[registration_id]
        for certificate in self._current(registration):
            if certificate.serial is None:
                self._issue(certificate)
        registration.ca_sync = "done"

    def certificate(self, registration_id: str, kind: str) -> _Certificate:
        return next(c for c in self._current(self.registrations[registration_id]) if c.kind == kind)

    def forget_owner_token(self, registration_id: str) -> None:
        """As for a registration made before owner tokens: no token reads it until the device key asks."""
        self.registrations[registration_id].owner_token_hash = None

    # -- the HTTP API ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        self.authorizations.append((request.method, path, request.headers.get("authorization")))
        body = json.loads(request.content) if request.content else {}
        parts = path.strip("/").split("/")  # api, v1, registrations, <id>, <action>
        if (request.method, path) == ("POST", "/api/v1/challenges"):
            return self._challenge(body)
        if (request.method, path) == ("POST", "/api/v1/registrations"):
            return self._register(body)
        if request.method == "GET" and len(parts) == 4 and parts[2] == "registrations":
            return self._read(parts[3], request.headers.get("authorization"))
        if request.method == "POST" and len(parts) == 5 and parts[4] == "owner-token":
            return self._owner_token(parts[3], body)
        if request.method == "POST" and len(parts) == 5 and parts[4] == "lift-suspension":
            return self._lift(parts[3], body)
        return _problem(404, "not-found", "Not found", f"{request.method} {path} is not faked")

    def _read(self, registration_id: str, authorization: str | None) -> httpx.Response:
        """Only with the owner token: none is 401; a wrong one and an unknown id are the same 404."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _problem(401, "owner-token-missing", "Owner token needed",
                            "reading a registration needs its owner token (Authorization: Bearer <owner token>)")
        registration = self.registrations.get(registration_id)
        if registration is None or registration.owner_token_hash is None or not hmac.compare_digest(
                registration.owner_token_hash, _token_hash(token)):
            return _problem(404, "registration-unknown", "Unknown registration",
                            f"no registration {registration_id} answers to this owner token")
        return httpx.Response(200, json=self._document(registration))

    def _owner_token(self, registration_id: str, body: dict[str, Any]) -> httpx.Response:
        """A new owner token for the phone that proves its device key; the previous one stops working."""
        registration = self.registrations.get(registration_id)
        if registration is None:
            return _problem(404, "registration-unknown", "Unknown registration", f"no registration {registration_id}")
        proof = body["proof"]
        message = self._spend(proof["challenge_id"], "owner-token", registration_id)
        if isinstance(message, httpx.Response):
            return message
        device_key = serialization.load_pem_public_key(registration.device_public_key_pem.encode())
        if not signature_verifies(device_key, message, proof["signature"]):
            return _problem(403, "proof-rejected", "Proof rejected", "the device key did not sign this challenge")
        token = self._new_owner_token(registration)
        return httpx.Response(200, json=self._document(registration) | {"owner_token": token})

    @staticmethod
    def _new_owner_token(registration: _Registration) -> str:
        token = secrets.token_urlsafe(32)
        registration.owner_token_hash = _token_hash(token)
        return token

    def _challenge(self, body: dict[str, Any]) -> httpx.Response:
        challenge_id, nonce = secrets.token_hex(16), secrets.token_urlsafe(24)
        self.challenges[challenge_id] = (body["action"], body.get("registration_id"), nonce)
        return httpx.Response(201, json={"challenge_id": challenge_id, "nonce": nonce, "action": body["action"],
                                         "registration_id": body.get("registration_id"),
                                         "expires_at": "2099-01-01T00:00:00+00:00"})

    def _spend(self, challenge_id: str, action: str, registration_id: str | None,
               authorised: str = "-") -> bytes | httpx.Response:
        spent = self.challenges.pop(challenge_id, None)
        if spent is None:
            return _problem(404, "challenge-unknown", "Challenge unknown", f"no challenge {challenge_id}")
        if spent[:2] != (action, registration_id):
            return _problem(400, "challenge-mismatch", "Challenge mismatch", "made for another action")
        return proof_message(action, registration_id, challenge_id, spent[2], authorised)

    def _card(self, proof: dict[str, Any], message: bytes) -> x509.Certificate | httpx.Response:
        card = x509.load_pem_x509_certificate(proof["card_certificate_pem"].encode())
        if not signature_verifies(card.public_key(), message, proof["signature"]):
            return _problem(403, "proof-rejected", "Proof rejected", "the card did not sign this challenge")
        return card

    def _register(self, body: dict[str, Any]) -> httpx.Response:
        authorised = authorised_digest(signature_csr_pem=body["signature_csr_pem"],
                                       authentication_csr_pem=body["authentication_csr_pem"],
                                       device_public_key_pem=body["device"]["device_public_key_pem"])
        message = self._spend(body["proof"]["challenge_id"], "register", None, authorised)
        if isinstance(message, httpx.Response):
            return message
        card = self._card(body["proof"], message)
        if isinstance(card, httpx.Response):
            return card
        certificates = [_Certificate(kind, _csr_key(body[f"{kind}_csr_pem"]))
                        for kind in ("signature", "authentication")]
        for certificate in certificates:
            self._issue(certificate)
        registration = _Registration(secrets.token_hex(16), card.serial_number,
                                     body["device"]["device_public_key_pem"], certificates)
        registration.last_change = self._change("certificates-issued", "system")
        self.registrations[registration.registration_id] = registration
        document = self._document(registration) | {"suspension_code": _crockford_code(), "superseded": [],
                                                    "owner_token": self._new_owner_token(registration)}
        return httpx.Response(201, json=document)

    def _lift(self, registration_id: str, body: dict[str, Any]) -> httpx.Response:
        self.lift_bodies.append(body)
        registration = self.registrations.get(registration_id)
        if registration is None:
            return _problem(404, "registration-unknown", "Unknown registration", f"no registration {registration_id}")
        proof = body["proof"]
        message = self._spend(proof["challenge_id"], "lift-suspension", registration_id,
                              authorised_digest(signature_csr_pem=body["signature_csr_pem"]))
        if isinstance(message, httpx.Response):
            return message
        card = self._card(proof, message)
        if isinstance(card, httpx.Response):
            return card
        if card.serial_number != registration.card_serial:
            return _problem(403, "proof-rejected", "Proof rejected", "this card is not the one that registered")
        device_key = serialization.load_pem_public_key(registration.device_public_key_pem.encode())
        if not signature_verifies(device_key, message, proof.get("device_signature") or ""):
            return _problem(403, "proof-rejected", "Proof rejected", "the device key did not sign this challenge")
        if self.lift_outcome is LiftOutcome.REFUSED:
            return _problem(403, "proof-rejected", "Proof rejected", "this card is not the one that registered")
        if not (registration.state == "suspended" or registration.signature_reissue_needed):
            return _problem(409, "state-conflict", "State conflict", "not suspended and no reissue needed")
        event = "owner-lifted" if registration.state == "suspended" else "signature-reissued"
        old = self.certificate(registration_id, "signature")
        old.current, old.status = False, "revoked"
        self.certificate(registration_id, "authentication").status = "good"
        new = _Certificate("signature", _csr_key(body["signature_csr_pem"]))
        registration.certificates.append(new)
        registration.state, registration.reason, registration.signature_reissue_needed = "active", None, False
        registration.last_change = self._change(event, "owner")
        if self.lift_outcome is LiftOutcome.PENDING:
            registration.ca_sync = "pending"
            return httpx.Response(202, json=self._document(registration))
        self._issue(new)
        if self.lift_outcome is LiftOutcome.ANSWER_LOST:
            raise httpx.ReadTimeout("the answer was lost")
        return httpx.Response(200, json=self._document(registration))

    # -- plumbing ----------------------------------------------------------------------------------

    @staticmethod
    def _current(registration: _Registration) -> list[_Certificate]:
        return [c for c in registration.certificates if c.current]

    @staticmethod
    def _change(event: str, actor: str) -> dict[str, str]:
        return {"event": event, "actor": actor, "at": dt.datetime.now(dt.UTC).isoformat()}

    def _issue(self, certificate: _Certificate) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake phone CA")])
        now = dt.datetime.now(dt.UTC)
        issued = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                  .public_key(serialization.load_pem_public_key(certificate.public_key_pem.encode()))
                  .serial_number(x509.random_serial_number()).not_valid_before(now)
                  .not_valid_after(now + dt.timedelta(days=1)).sign(self._issuer_key, hashes.SHA256()))
        certificate.serial = format(issued.serial_number, "x")
        certificate.certificate_pem = issued.public_bytes(serialization.Encoding.PEM).decode()
        certificate.status = "good"

    @staticmethod
    def _document(registration: _Registration) -> dict[str, Any]:
        return {
            "registration_id": registration.registration_id, "case_reference": registration.case_reference,
            "state": registration.state,
            "reason": registration.reason, "device_model": "Pixel 9",
            "created_at": "2026-11-22T21:00:00+00:00", "updated_at": "2026-11-22T21:30:00+00:00",
            "certificates": [c.document() for c in registration.certificates],
            "ca_sync": registration.ca_sync, "pending_ca_operations": 0 if registration.ca_sync == "done" else 1,
            "signature_reissue_needed": registration.signature_reissue_needed,
            "last_change": registration.last_change,
        }


def _crockford_code() -> str:
    """ABCD-EFGH-JKMN: the suspension code's and the case reference's spoken form."""
    code = "".join(secrets.choice(CROCKFORD) for _ in range(12))
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _csr_key(csr_pem: str) -> str:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    return csr.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _problem(status: int, slug: str, title: str, detail: str) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json"},
                          json={"type": f"https://jpki.invalid/problems/{slug}", "title": title, "status": status,
                                "detail": detail})
