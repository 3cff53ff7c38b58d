"""A small demo relying party: log in with the phone user-authentication certificate.

It does what a bank or Mynaportal would: a fresh challenge, the certificate's signature over it,
the certificate chained to the JPKI user-authentication CA, and its status at the CA's OCSP.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from jpki_common.http import problem_responses
from jpki_common.owner_proof import NOTHING_AUTHORISED, Action
from jpki_common.problems import BodyTooLarge
from jpki_service.adapters.ca_client import CAUnavailable
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.ocsp_verification import OCSPAnswerRefused
from jpki_service.cards.service import load_certificate
from jpki_service.challenges.service import issue_challenge, spend_challenge
from jpki_service.common.problems import (
    CAUnreachable,
    ChallengeExpired,
    ChallengeMismatch,
    ChallengeUnknown,
    ChallengeUsed,
    InvalidInput,
    ProofRejected,
    StatusUnverified,
    StorageUnavailable,
    TooManyAttempts,
)
from jpki_service.notifications import service as notifications
from jpki_service.rate_limits.service import count_failed_rp_login, count_rp_challenge

router = APIRouter(prefix="/rp/v1", tags=["demo relying party"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "challenge_id": "9b2e4f0a6c8d1e3f5a7b9c0d2e4f6a8b",
        "certificate_pem": "-----BEGIN CERTIFICATE-----\nMIICrTCCAlOgAwIBAgIUX2...\n-----END CERTIFICATE-----\n",
        "signature": "MEUCIQDx3...b64...AiB0"}]})

    challenge_id: str = Field(min_length=1, max_length=64)
    certificate_pem: str = Field(min_length=1, max_length=16_384)
    signature: str = Field(min_length=1, max_length=2048)


@router.post("/login/challenge", status_code=201, summary="A login challenge",
             responses=problem_responses(TooManyAttempts, StorageUnavailable))
def login_challenge(request: Request) -> dict[str, Any]:
    ctx = request.app.state.context
    count_rp_challenge(ctx.store, ctx.settings, _client(request))  # a write: limited per client (429)
    return issue_challenge(ctx.store, ctx.settings.challenge_ttl_seconds, Action.LOGIN, None)


@router.post("/login", summary="Log in with the user-authentication certificate",
             responses={200: {"content": {"application/json": {"example": {
                 "authenticated": True, "serial": "4f2a91c0d4", "ocsp": "good"}}}},
                 **problem_responses(ChallengeUnknown, ChallengeUsed, ChallengeExpired, ChallengeMismatch,
                                     InvalidInput, ProofRejected, TooManyAttempts, CAUnreachable,
                                     StatusUnverified, BodyTooLarge, StorageUnavailable)})
def login(body: LoginRequest, request: Request) -> dict[str, Any]:
    ctx = request.app.state.context
    try:
        return _login(ctx, body)
    except ProofRejected:  # counted per client; over the limit the refusal answers 429 instead
        count_failed_rp_login(ctx.store, ctx.settings, _client(request))
        raise


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login(ctx: ServiceContext, body: LoginRequest) -> dict[str, Any]:
    challenge = spend_challenge(ctx.store, body.challenge_id, Action.LOGIN, None)
    certificate = load_certificate(body.certificate_pem, "certificate_pem")
    try:
        issuer, root = ctx.ca.ca_certificate("auth"), ctx.ca.ca_certificate("root")
        try:
            certificate.verify_directly_issued_by(issuer)
            issuer.verify_directly_issued_by(root)
        except Exception:
            raise ProofRejected("the certificate was not issued by the JPKI user-authentication CA") from None
        now = dt.datetime.now(dt.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ProofRejected("the certificate is outside its validity period")
        # A login authorises no key: either proof version serves (jpki_common/owner_proof.py).
        if challenge.signed_version(certificate.public_key(), NOTHING_AUTHORISED, body.signature) is None:
            raise ProofRejected("the signature over the login challenge does not verify", field="signature")
        answer = ctx.ca.ocsp_status(certificate, issuer)
    except CAUnavailable as exc:
        raise CAUnreachable(f"the certificate's status cannot be checked now: {exc}") from None
    except OCSPAnswerRefused as exc:
        raise StatusUnverified(f"the certificate's status could not be verified: {exc}") from None
    if answer.status != "good":
        raise ProofRejected(f"OCSP says {answer.status}" + (f" ({answer.reason})" if answer.reason else ""))
    serial = format(certificate.serial_number, "x")
    with ctx.store.transaction() as session:  # the owner asked to be told of each log-in: a notice
        notifications.enqueue_login(session, serial)
    return {"authenticated": True, "serial": serial, "ocsp": answer.status}
