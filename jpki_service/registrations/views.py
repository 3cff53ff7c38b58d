"""The owner's API: challenges and registrations (docs/service-api.md)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jpki_common.http import problem_responses
from jpki_common.owner_proof import Action
from jpki_common.problems import BodyTooLarge
from jpki_service import holder_data
from jpki_service.challenges.service import issue_challenge
from jpki_service.common.faults import crash_point
from jpki_service.common.problems import (
    CAUnreachable,
    ChallengeExpired,
    ChallengeMismatch,
    ChallengeUnknown,
    ChallengeUsed,
    InvalidInput,
    OwnerTokenMissing,
    ProofRejected,
    RegistrationNotFound,
    StateConflict,
    StatusUnverified,
    StorageUnavailable,
    TooManyAttempts,
)
from jpki_service.lifecycle import Event
from jpki_service.rate_limits.service import count_challenge, count_failed_proof
from jpki_service.registrations import service
from jpki_service.registrations.schemas import (
    CardRegistrationOut,
    CardRegistrationsOut,
    CardSuspendRequest,
    ChallengeOut,
    ChallengeRequest,
    EmailRequest,
    LiftRequest,
    PasswordResetOut,
    ProofRequest,
    RegisterRequest,
    RegistrationOut,
    StatementKeyOut,
)


def _failed_proofs_counted(request: Request) -> Iterator[None]:
    """Every owner request: a refused proof (403) is counted against the client and the registration;
    over either limit the refusal answers 429 instead (rate_limits/service.py). A valid proof is
    neither counted nor refused, so strangers cannot lock the owner out."""
    try:
        yield
    except ProofRejected:
        ctx: service.ServiceContext = request.app.state.context
        count_failed_proof(ctx.store, ctx.settings, request.client.host if request.client else "unknown",
                           request.path_params.get("registration_id"))
        raise


router = APIRouter(prefix="/api/v1", tags=["owner"], dependencies=[Depends(_failed_proofs_counted)])
RegistrationIdPath = Path(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")
# The owner token (answer to registering): declared in the OpenAPI document, checked by the service.
_owner_token = HTTPBearer(auto_error=False, scheme_name="ownerToken",
                          description="The owner token from the answer to registering (or to .../owner-token)")
# An owner proof's problems: the challenge spent (unknown, used, expired, made for another act), the proof
# refused (403; over the failed-proof limits 429 instead), bad input, the database away.
_PROOF = (ChallengeUnknown, ChallengeUsed, ChallengeExpired, ChallengeMismatch, ProofRejected, TooManyAttempts,
          InvalidInput, BodyTooLarge, StorageUnavailable)
# ... on an existing registration; with the card, whose chain and status the CA must confirm; a lifecycle event.
_ON_REGISTRATION = (*_PROOF, RegistrationNotFound)
_CARD = (CAUnreachable, StatusUnverified)


def _ctx(request: Request) -> service.ServiceContext:
    return request.app.state.context


def _synced(document: dict[str, Any], response: Response, done_status: int = 200) -> dict[str, Any]:
    """200/201 once the CA has it; 202 when it is recorded and still on its way to the CA."""
    crash_point("before-reply")
    response.status_code = done_status if document["ca_sync"] == "done" else 202
    return document


@router.post("/challenges", status_code=201, response_model=ChallengeOut, summary="A fresh single-use challenge",
             responses=problem_responses(InvalidInput, RegistrationNotFound, TooManyAttempts, BodyTooLarge,
                                         StorageUnavailable))
def new_challenge(body: ChallengeRequest, request: Request) -> dict[str, Any]:
    if body.action is Action.LOGIN:
        raise InvalidInput("login challenges come from the relying party: POST /rp/v1/login/challenge",
                           field="action")
    # The card's acts on a registration name it by case reference; the card proves first, so the challenge
    # says nothing of whether the reference exists (404 only after the proof, the same as another person's).
    case_reference = None
    if body.action in service.CARD_EVENTS:
        if body.registration_id is not None:
            raise InvalidInput(f"a {body.action.value} challenge names the registration by case_reference, not "
                               "registration_id", field="registration_id")
        if body.case_reference is None:
            raise InvalidInput(f"a {body.action.value} challenge needs case_reference", field="case_reference")
        case_reference = holder_data.normalise_case_reference(body.case_reference)
    elif body.case_reference is not None:
        raise InvalidInput(f"a {body.action.value} challenge takes no case_reference", field="case_reference")
    elif body.action in (Action.REGISTER, Action.CARD_LIST, Action.DEALER_RECEIPT):
        if body.registration_id is not None:
            raise InvalidInput(f"a {body.action.value} challenge takes no registration_id", field="registration_id")
    else:
        if body.registration_id is None:
            raise InvalidInput(f"a {body.action.value} challenge needs registration_id", field="registration_id")
        service.get_registration(_ctx(request), body.registration_id)  # 404 for an unknown one
    ctx = _ctx(request)
    # A write: limited per client (429), never per registration (anyone may ask for one).
    count_challenge(ctx.store, ctx.settings, request.client.host if request.client else "unknown")
    if case_reference is not None:  # the proof's target line is the case reference
        answer = issue_challenge(ctx.store, ctx.settings.challenge_ttl_seconds, body.action, case_reference)
        return {**answer, "registration_id": None, "case_reference": case_reference}
    return issue_challenge(ctx.store, ctx.settings.challenge_ttl_seconds, body.action, body.registration_id)


@router.post("/registrations", status_code=201, response_model=RegistrationOut,
             responses={202: {"model": RegistrationOut, "description": "Recorded; the CA has not issued yet"},
                        **problem_responses(*_PROOF, *_CARD)},
             summary="Register this phone from the My Number card")
def register(body: RegisterRequest, request: Request, response: Response) -> dict[str, Any]:
    return _synced(service.register(_ctx(request), body), response, done_status=201)


@router.get("/registrations/{registration_id}", response_model=RegistrationOut,
            summary="State and certificates (the owner token: Authorization: Bearer)",
            responses=problem_responses(OwnerTokenMissing, RegistrationNotFound, InvalidInput, StorageUnavailable))
def look_up(request: Request, registration_id: str = RegistrationIdPath,
            credentials: HTTPAuthorizationCredentials | None = Depends(_owner_token)) -> dict[str, Any]:
    return service.read_registration(_ctx(request), registration_id, credentials.credentials if credentials else None)


@router.post("/registrations/{registration_id}/owner-token", response_model=RegistrationOut,
             summary="A new owner token for this phone (device key); the previous one stops working",
             responses=problem_responses(*_ON_REGISTRATION))
def owner_token(body: ProofRequest, request: Request, registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    return service.issue_owner_token(_ctx(request), registration_id, body.proof)


@router.post("/registrations/{registration_id}/revoke", response_model=RegistrationOut,
             responses={202: {"model": RegistrationOut, "description": "Revoked here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, StateConflict)},
             summary="Revoke (phone signature key)")
def revoke(body: ProofRequest, request: Request, response: Response,
           registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    return _synced(service.revoke_registration(_ctx(request), registration_id, body.proof), response)


@router.post("/registrations/{registration_id}/reset-password", response_model=PasswordResetOut,
             summary="Authorise a password reset (card proof)",
             responses=problem_responses(*_ON_REGISTRATION, *_CARD, StateConflict))
def reset_password(body: ProofRequest, request: Request, registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    return service.authorise_password_reset(_ctx(request), registration_id, body.proof)


@router.get("/service-keys/statement", response_model=StatementKeyOut,
            summary="The public key that signs reset authorisations (the phone pins it)")
def statement_key(request: Request) -> dict[str, str]:
    return service.statement_key(_ctx(request))


@router.post("/registrations/{registration_id}/uninstall", response_model=RegistrationOut,
             responses={202: {"model": RegistrationOut, "description": "Expired here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, StateConflict)},
             summary="The app is being uninstalled (device key)")
def uninstall(body: ProofRequest, request: Request, response: Response,
              registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    document = service.report_device_event(_ctx(request), registration_id, body.proof, Event.UNINSTALLED)
    return _synced(document, response)


@router.post("/registrations/{registration_id}/stale-certificate", response_model=RegistrationOut,
             responses={202: {"model": RegistrationOut, "description": "Expired here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, StateConflict)},
             summary="A reinstalled app found this registration's certificates (device key)")
def stale_certificate(body: ProofRequest, request: Request, response: Response,
                      registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    document = service.report_device_event(_ctx(request), registration_id, body.proof, Event.STALE_CERTIFICATE)
    return _synced(document, response)


@router.post("/registrations/{registration_id}/lift-suspension", response_model=RegistrationOut,
             responses={202: {"model": RegistrationOut, "description": "Lifted here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, *_CARD, StateConflict)},
             summary="Lift a suspension, or finish a supervisor's lift (card proof + device key + new signature CSR)")
def lift_suspension(body: LiftRequest, request: Request, response: Response,
                    registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    return _synced(service.lift_suspension(_ctx(request), registration_id, body), response)


@router.post("/registrations/{registration_id}/email", response_model=RegistrationOut,
             summary="Set, change or remove the e-mail address owner notices go to (card proof)",
             responses=problem_responses(*_ON_REGISTRATION, *_CARD, StateConflict))
def set_email(body: EmailRequest, request: Request, registration_id: str = RegistrationIdPath) -> dict[str, Any]:
    return service.set_email(_ctx(request), registration_id, body)


# -- the card as the owner's master key: from any phone or PC with a card reader, no phone needed --------
CaseReferencePath = Path(min_length=1, max_length=32, description="The case reference, as the list gives it")


@router.post("/card/registrations", response_model=CardRegistrationsOut,
             summary="The registrations of the person the card names (card proof, card-list challenge)",
             responses=problem_responses(*_PROOF, *_CARD))
def card_list(body: ProofRequest, request: Request) -> dict[str, Any]:
    return {"registrations": service.list_with_card(_ctx(request), body.proof)}


@router.post("/card/registrations/{case_reference}/revoke", response_model=CardRegistrationOut,
             responses={202: {"model": CardRegistrationOut, "description": "Revoked here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, *_CARD, StateConflict)},
             summary="Revoke one of the person's phones with the card alone (card-revoke challenge)")
def card_revoke(body: ProofRequest, request: Request, response: Response,
                case_reference: str = CaseReferencePath) -> dict[str, Any]:
    return _synced(service.act_with_card(_ctx(request), Action.CARD_REVOKE, case_reference, body.proof), response)


@router.post("/card/registrations/{case_reference}/suspend", response_model=CardRegistrationOut,
             responses={202: {"model": CardRegistrationOut, "description": "Suspended here; on its way to the CA"},
                        **problem_responses(*_ON_REGISTRATION, *_CARD, StateConflict)},
             summary="Suspend one of the person's phones with the card alone (card-suspend challenge); lifting "
                     "needs the card and the phone")
def card_suspend(body: CardSuspendRequest, request: Request, response: Response,
                 case_reference: str = CaseReferencePath) -> dict[str, Any]:
    return _synced(service.act_with_card(_ctx(request), Action.CARD_SUSPEND, case_reference, body.proof,
                                         body.reason.value), response)
