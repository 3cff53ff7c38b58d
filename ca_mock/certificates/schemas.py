"""What the CA's HTTP API takes and returns for certificates."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OperationId = Field(
    min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$",
    description="Caller-chosen id; a retry with the same id and content is answered, not redone.",
)
Serial = Field(min_length=1, max_length=40, pattern=r"^[0-9A-Fa-f]+$", description="Serial number in hex.")


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    date_of_birth: dt.date
    gender: Literal["1", "2", "3"] = Field(description="1 male, 2 female, 3 not stated")
    address: str = Field(min_length=1, max_length=200)


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "operation_id": "svc:issue:41", "profile": "phone-signature", "card_serial": "3C1D9E",
        "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nMIIBHDCBwg...\n-----END CERTIFICATE REQUEST-----\n"}]})

    operation_id: str = OperationId
    profile: Literal["card-signature", "card-authentication", "phone-signature", "phone-authentication"]
    csr_pem: str = Field(min_length=1, max_length=16_384, description="PKCS#10 request, PEM")
    person: PersonIn | None = Field(
        None, description="card-signature: required. phone-signature: optional; the CA writes the four items "
        "of its own record of the card named in card_serial, and refuses a person that disagrees. "
        "Authentication profiles: refused.",
    )
    card_serial: str | None = Field(
        None, min_length=1, max_length=40, pattern=r"^[0-9A-Fa-f]+$",
        description="Phone profiles: the card signature certificate this phone certificate derives from.",
    )
    not_after: dt.datetime | None = Field(None, description="Default: the longest the policy and card allow.")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"operation_id": "svc:revoke:42", "reason": "keyCompromise"}]})

    operation_id: str = OperationId
    reason: str = Field(description="RFC 5280 reason: keyCompromise, affiliationChanged, superseded, ...")
    invalidity_date: dt.datetime | None = None


class StatusChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"operation_id": "svc:hold:43"}]})

    operation_id: str = OperationId


class CertificateOut(BaseModel):
    serial: str
    profile: str
    authority: str
    status: Literal["good", "held", "revoked"]
    reason: str | None
    revoked_at: dt.datetime | None
    invalidity_date: dt.datetime | None
    not_before: dt.datetime
    not_after: dt.datetime
    card_serial: str | None
    certificate_pem: str
