"""The dealer's erasure receipt API (docs/service-api.md, "Dealer's erasure receipt"; docs/dealers.md)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from jpki_common.http import problem_responses
from jpki_common.problems import BodyTooLarge
from jpki_service.common.problems import (
    ChallengeExpired,
    ChallengeMismatch,
    ChallengeUnknown,
    ChallengeUsed,
    InvalidInput,
    ProofRejected,
    StateConflict,
    StorageUnavailable,
)
from jpki_service.receipts import service
from jpki_service.receipts.schemas import ReceiptOut, ReceiptRequest

router = APIRouter(prefix="/api/v1/receipts", tags=["dealer"])
PEM_CHAIN = "application/pem-certificate-chain"  # RFC 8555 section 9.1


@router.post("", response_model=ReceiptOut, status_code=201,
             summary="An erasure receipt for a secure element that holds no JPKI key (attestation, dealer-receipt "
                     "challenge)",
             responses=problem_responses(ChallengeUnknown, ChallengeUsed, ChallengeExpired, ChallengeMismatch,
                                         ProofRejected, StateConflict, InvalidInput, BodyTooLarge,
                                         StorageUnavailable))
def issue(body: ReceiptRequest, request: Request) -> dict[str, Any]:
    return service.issue_receipt(request.app.state.context, body)


@router.get("/certificate", response_class=Response,
            summary="The receipt authority's certificate (PEM): what a verifier trusts",
            responses={200: {"content": {PEM_CHAIN: {}}}})
def certificate(request: Request) -> Response:
    return Response(service.certificate_pem(request.app.state.context), media_type=PEM_CHAIN)
