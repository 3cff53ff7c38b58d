"""The dealer's erasure receipt: request and answer (docs/service-api.md, "Dealer's erasure receipt")."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReceiptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenge_id: str = Field(min_length=1, max_length=64,
                              description="A dealer-receipt challenge (POST /api/v1/challenges)")
    statement: str = Field(min_length=1, max_length=8192,
                           description="The secure element's statement, base64 of the exact bytes it signed "
                                       "(jpki_common/se_attestation.py)")
    signature: str = Field(min_length=1, max_length=1024,
                           description="The attestation key's signature over the statement (base64)")
    attestation_certificate_pem: str = Field(min_length=1, max_length=8192,
                                             description="The maker's certificate for the SE's attestation key")
    revoked_now: list[str] = Field(
        default_factory=list, max_length=32,
        description="Registration ids the app ended in this check (the stale-certificate flow); each must be "
                    "among the statement's ended ones")


class ReceiptDocument(BaseModel):
    format: str
    device: str = Field(description="SHA-256 (hex) of the SE's attestation key")
    checked_at: str
    no_live_jpki_certificates: bool
    challenge: str
    registrations_revoked_now: list[str] = Field(description="Case references")


class ReceiptOut(BaseModel):
    receipt: str = Field(description="The receipt: CMS SignedData, DER, base64 (the document inside, signer "
                                     "certificate included)")
    document: ReceiptDocument
    certificate_pem: str = Field(description="The receipt authority's certificate (GET /api/v1/receipts/certificate)")
