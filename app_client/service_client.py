"""The lifecycle service's HTTP API as the phone sees it (docs/service-api.md).

Thin on purpose: one method per endpoint, answers parsed into small frozen records, and every
refusal (``application/problem+json``) raised as :class:`ServiceProblem` carrying the status,
title and detail, so the CLI can print exactly what the service said.
"""
from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from app_client.defaults import DEFAULT_TIMEOUT, SLOW_AFTER
from app_client.errors import AppError
from app_client.messages import N_, _
from jpki_common.owner_proof import NOTHING_AUTHORISED, Action, proof_message

FINAL_STATES = ("revoked", "expired")


# What each refusal of the service means to the owner, and what to do (by the problem type's last part).
PLAIN_REFUSALS = {
    "proof-rejected": N_("the service did not accept the proof from your card and phone: use the My Number card "
                         "that registered this phone, or call the My Number line"),
    "challenge-expired": N_("the request took too long and its one-time code expired: try again"),
    "challenge-used": N_("the request's one-time code was used already: try again"),
    "challenge-unknown": N_("the service does not know the request's one-time code (it expired, or the service "
                            "was changed): try again"),
    "challenge-mismatch": N_("the one-time code was made for another request: try again"),
    "registration-unknown": N_("the service does not know this phone's registration: check the service address "
                               "(--service), or register again"),
    "owner-token-missing": N_("the service asks for this phone's owner token, which the phone does not hold: "
                              "register again"),
    "state-conflict": N_("not possible in the registration's present state"),
    "invalid-request": N_("the service found the request invalid"),
    "too-many-attempts": N_("too many attempts: wait a while, then try again"),
    "ca-unreachable": N_("the certification authority does not answer at the moment: try again later"),
    "status-unverified": N_("the certificate's status could not be checked at the moment: try again later"),
    "store-unusable": N_("the service cannot use its records at the moment: try again later"),
}


class ServiceProblem(AppError):
    """The service refused a request (RFC 9457 problem document): said in plain words, with the
    service's own detail after it."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank",
                 field: str | None = None) -> None:
        self.status, self.title, self.detail, self.type, self.field = status, title, detail, type_, field
        plain = PLAIN_REFUSALS.get(self.slug)
        if plain is not None:
            message = _(plain)
        else:
            message = _("the service refused: {title}").format(title=title)
        if detail:
            message = _("{message} (the service said: {detail})").format(message=message, detail=detail)
        super().__init__(message)

    @property
    def slug(self) -> str:
        """The last part of ``type``, e.g. ``challenge-used``: what tests and callers branch on."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]


class ServiceUnreachable(AppError):
    """No answer from the service: nothing is known to have changed there."""


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    nonce: str
    action: str
    registration_id: str | None
    expires_at: str

    def message(self, authorised: str = NOTHING_AUTHORISED) -> bytes:
        """The exact bytes to sign for this challenge and what the request authorises.

        ``authorised``: ``authorised_digest`` of the CSRs and device key the request carries, "-" for
        none (jpki_common/owner_proof.py).
        """
        return proof_message(self.action, self.registration_id, self.challenge_id, self.nonce, authorised)


@dataclass(frozen=True)
class Proof:
    challenge_id: str
    signature: str
    card_certificate_pem: str | None = None
    device_signature: str | None = None

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class PhoneCertificate:
    kind: str  # signature | authentication
    serial: str | None
    status: str  # pending | good | held | revoked
    current: bool
    certificate_pem: str | None


@dataclass(frozen=True)
class LastChange:
    """The registration's latest lifecycle event: the owner sees who else changed it (DESIGN.md 7)."""

    event: str  # e.g. suspended, supervisor-lifted, owner-lifted
    actor: str  # owner | system | operator | supervisor | carrier
    at: str  # ISO 8601

    @classmethod
    def from_json(cls, document: dict[str, Any] | None) -> LastChange | None:
        if not document:
            return None
        return cls(str(document["event"]), str(document["actor"]), str(document["at"]))


@dataclass(frozen=True)
class Registration:
    registration_id: str
    state: str
    reason: str | None  # why not active: superseded, owner-revoked, ...; suspended: lost|stolen|sold|other
    ca_sync: str | None  # done: the CA has every change | pending: on its way there | failed: the CA refused one
    certificates: tuple[PhoneCertificate, ...]
    superseded: tuple[str, ...] = ()
    # Shown once, in the answer to registering: the owner gives it to the call centre to suspend a lost phone.
    suspension_code: str | None = None
    # Also only in the answer to registering: the service's key for reset authorisations, which the SE pins.
    statement_key_pem: str | None = None
    # Only in the answer to registering (or to an owner-token request): what reads the registration.
    owner_token: str | None = None
    # What the call centre and the notices name the registration by (not a secret, unlocks nothing).
    case_reference: str | None = None
    # Active again after a supervisor lifted the suspension, but with no valid signature certificate
    # until the owner proves card + phone (the lift-suspension request, again).
    signature_reissue_needed: bool = False
    last_change: LastChange | None = None
    ca_sync_reason: str | None = None  # why ca_sync is not done, as the service says it
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as received

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Registration:
        try:
            return cls(
                registration_id=document["registration_id"], state=document["state"],
                reason=document.get("reason"), ca_sync=document.get("ca_sync"),
                ca_sync_reason=document.get("ca_sync_reason"),
                certificates=tuple(
                    PhoneCertificate(c["kind"], c.get("serial"), c["status"], bool(c.get("current", True)),
                                     c.get("certificate_pem"))
                    for c in document.get("certificates", [])
                ),
                superseded=tuple(document.get("superseded") or ()),
                suspension_code=document.get("suspension_code"),
                statement_key_pem=document.get("statement_key_pem"),
                owner_token=document.get("owner_token"),
                case_reference=document.get("case_reference"),
                signature_reissue_needed=bool(document.get("signature_reissue_needed", False)),
                last_change=LastChange.from_json(document.get("last_change")),
                document=document,
            )
        except (KeyError, TypeError) as exc:
            raise AppError(_("the service answered a registration document without {field}").format(
                field=exc)) from None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def can_lift(self) -> bool:
        """Whether the owner's card + phone proof has something to do: lift a suspension, or have the
        signature certificate reissued after a supervisor lifted it."""
        return self.state == "suspended" or (self.state == "active" and self.signature_reissue_needed)

    def current(self, kind: str) -> PhoneCertificate | None:
        return next((c for c in self.certificates if c.kind == kind and c.current), None)

    def replaced(self, kind: str) -> tuple[PhoneCertificate, ...]:
        """The earlier certificates of ``kind`` (a signature certificate replaced at a lift), oldest first."""
        return tuple(c for c in self.certificates if c.kind == kind and not c.current)


@dataclass(frozen=True)
class CardRegistration:
    """What the card sees of one registration of its person: nothing more."""

    case_reference: str  # what the card's revoke and suspend name it by
    device_model: str
    registered_at: str  # ISO 8601
    state: str
    ca_sync: str  # done: the CA has every change | pending: on its way there | failed: the CA refused one

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> CardRegistration:
        try:
            return cls(str(document["case_reference"]), str(document["device_model"]),
                       str(document["registered_at"]), str(document["state"]), str(document["ca_sync"]))
        except (KeyError, TypeError) as exc:
            raise AppError(_("the service answered a card listing without {field}").format(field=exc)) from None


class ServiceClient:
    """One lifecycle service. ``http`` lets a caller hand in its own client (e.g. a TestClient)."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT, http: httpx.Client | None = None,
                 on_slow: Callable[[str], None] | None = None, slow_after: float = SLOW_AFTER) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)
        # Told once per call that takes longer than ``slow_after`` seconds (the CLI says it still waits).
        self._on_slow, self._slow_after = on_slow, slow_after

    def close(self) -> None:
        self._http.close()

    # -- owner proofs --------------------------------------------------------------------------

    def challenge(self, action: Action, registration_id: str | None = None) -> Challenge:
        answer = self._call("POST", "/api/v1/challenges",
                            {"action": Action(action).value, "registration_id": registration_id})
        return Challenge(answer["challenge_id"], answer["nonce"], answer["action"], answer.get("registration_id"),
                         answer["expires_at"])

    # -- registrations -------------------------------------------------------------------------

    def register(self, proof: Proof, device_model: str, device_public_key_pem: str,
                 signature_csr_pem: str, authentication_csr_pem: str, *, email: str | None = None,
                 login_notices: bool = False) -> Registration:
        """Register; ``email`` (optional) is where the service sends the owner's notices."""
        body: dict[str, Any] = {
            "proof": proof.to_json(),
            "device": {"model": device_model, "device_public_key_pem": device_public_key_pem},
            "signature_csr_pem": signature_csr_pem,
            "authentication_csr_pem": authentication_csr_pem,
        }
        if email is not None:
            body.update(email=email, login_notices=login_notices)
        return Registration.from_json(self._call("POST", "/api/v1/registrations", body))

    def registration(self, registration_id: str, owner_token: str) -> Registration:
        """The registration as the service has it: only with its owner token."""
        return Registration.from_json(self._call("GET", f"/api/v1/registrations/{registration_id}",
                                                 owner_token=owner_token))

    def owner_token(self, registration_id: str, proof: Proof) -> Registration:
        """A new owner token (in the answer's ``owner_token``), proven by the device key."""
        return self._proven(registration_id, "owner-token", proof)

    def revoke(self, registration_id: str, proof: Proof) -> Registration:
        return self._proven(registration_id, "revoke", proof)

    def uninstall(self, registration_id: str, proof: Proof) -> Registration:
        return self._proven(registration_id, "uninstall", proof)

    def stale_certificate(self, registration_id: str, proof: Proof) -> Registration:
        return self._proven(registration_id, "stale-certificate", proof)

    def lift_suspension(self, registration_id: str, proof: Proof, signature_csr_pem: str) -> Registration:
        """Lift a suspension, or have the signature certificate reissued after a supervisor's lift.

        ``proof``: the card signature (with ``card_certificate_pem``) and the device key's
        ``device_signature`` over the same lift-suspension challenge; ``signature_csr_pem``: the
        new signature key made in the SE. 200 when the CA has it all, 202 (``ca_sync: pending``)
        when the new certificate is still on its way.
        """
        path = f"/api/v1/registrations/{registration_id}/lift-suspension"
        return Registration.from_json(self._call("POST", path, {"proof": proof.to_json(),
                                                                "signature_csr_pem": signature_csr_pem}))

    def reset_password(self, registration_id: str, proof: Proof) -> Any:
        """The reset authorisation the service signed, as received (None when the answer has none):
        the secure element, not this client, decides whether to believe it."""
        answer = self._call("POST", f"/api/v1/registrations/{registration_id}/reset-password",
                            {"proof": proof.to_json()})
        return answer.get("authorisation")

    def statement_key(self) -> str:
        """The service's published statement key (PEM), for an SE that has none pinned yet."""
        answer = self._call("GET", "/api/v1/service-keys/statement")
        pem = answer.get("public_key_pem")
        if not isinstance(pem, str):
            raise AppError(_("the service published no statement key"))
        return pem

    # -- the card as the owner's master key: no phone needed --------------------------------------

    def card_challenge(self, action: Action, case_reference: str | None = None) -> Challenge:
        """A challenge for the card's own acts: ``card-list`` (no target), ``card-revoke`` and ``card-suspend``
        (the registration named by its case reference). The answer's case reference, as the service spells
        it, is the proof's target: it stands where other proofs name a registration id."""
        body = {"action": Action(action).value}
        if case_reference is not None:
            body["case_reference"] = case_reference
        answer = self._call("POST", "/api/v1/challenges", body)
        return Challenge(answer["challenge_id"], answer["nonce"], answer["action"], answer.get("case_reference"),
                         answer["expires_at"])

    def card_registrations(self, proof: Proof) -> tuple[CardRegistration, ...]:
        """The registrations of the person the card names, oldest first (``card-list`` proof)."""
        answer = self._call("POST", "/api/v1/card/registrations", {"proof": proof.to_json()})
        return tuple(CardRegistration.from_json(entry) for entry in answer.get("registrations") or ())

    def card_act(self, act: str, case_reference: str, proof: Proof, reason: str | None = None) -> CardRegistration:
        """``act``: revoke or suspend (``reason``: lost, stolen, sold, other) the registration ``case_reference``."""
        body: dict[str, Any] = {"proof": proof.to_json()}
        if reason is not None:
            body["reason"] = reason
        return CardRegistration.from_json(self._call("POST", f"/api/v1/card/registrations/{case_reference}/{act}",
                                                     body))

    # -- a dealer's erasure receipt: no secret, the SE's attestation key --------------------------

    def dealer_receipt(self, challenge_id: str, statement: bytes, signature: str, attestation_certificate_pem: str,
                       revoked_now: list[str]) -> dict[str, Any]:
        """The service's receipt (``receipt``: CMS DER, base64; ``document``; ``certificate_pem``) for the SE's
        attested statement; 409 (ServiceProblem) when the SE or the service's records show a live certificate."""
        return self._call("POST", "/api/v1/receipts", {
            "challenge_id": challenge_id, "statement": base64.b64encode(statement).decode(), "signature": signature,
            "attestation_certificate_pem": attestation_certificate_pem, "revoked_now": revoked_now})

    # -- demo relying party ---------------------------------------------------------------------

    def login_challenge(self) -> Challenge:
        answer = self._call("POST", "/rp/v1/login/challenge", {})
        return Challenge(answer["challenge_id"], answer["nonce"], Action.LOGIN.value, None, answer["expires_at"])

    def login(self, challenge_id: str, certificate_pem: str, signature: str) -> dict[str, Any]:
        return self._call("POST", "/rp/v1/login", {"challenge_id": challenge_id, "certificate_pem": certificate_pem,
                                                   "signature": signature})

    # -- plumbing ------------------------------------------------------------------------------

    def _proven(self, registration_id: str, action: str, proof: Proof) -> Registration:
        return Registration.from_json(self._call("POST", f"/api/v1/registrations/{registration_id}/{action}",
                                                 {"proof": proof.to_json()}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              owner_token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {owner_token}"} if owner_token else None
        slow = None
        if self._on_slow is not None:
            slow = threading.Timer(self._slow_after, self._on_slow, (self.base_url,))
            slow.daemon = True
            slow.start()
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise ServiceUnreachable(
                _("the lifecycle service at {url} did not answer within {seconds:g} s: check that it is running, "
                  "or allow longer with --timeout").format(url=self.base_url, seconds=self.timeout)) from None
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(
                _("cannot reach the lifecycle service at {url}: check the address (--service, JPKI_SERVICE_URL) "
                  "and that the service is running ({reason})").format(
                    url=self.base_url, reason=f"{exc.__class__.__name__}: {exc}")) from None
        finally:
            if slow is not None:
                slow.cancel()
        if response.is_success:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise AppError(_("the service answered {method} {path} with {status} but no JSON object").format(
                    method=method, path=path, status=response.status_code))
            return answer
        raise problem_from(response)


def problem_from(response: httpx.Response) -> ServiceProblem:
    """The refusal in ``response``: its problem document, or the bare status when there is none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = " ".join(response.text.split())[:200]
        return ServiceProblem(response.status_code, response.reason_phrase or "error", text)
    detail = body.get("detail", "")
    if not isinstance(detail, str):  # e.g. a framework's list of validation errors
        detail = str(detail)
    return ServiceProblem(int(body.get("status", response.status_code)), str(body.get("title") or
                          response.reason_phrase or "error"), detail, str(body.get("type", "about:blank")),
                          body.get("field"))
