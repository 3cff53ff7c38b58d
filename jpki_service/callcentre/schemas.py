"""What the call-centre API takes and gives (docs/operator-api.md)."""
from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jpki_common.profiles import REVOCATION_REASONS

RevocationReason = Literal[REVOCATION_REASONS]  # type: ignore[valid-type]


class SuspensionReason(str, enum.Enum):
    LOST = "lost"
    STOLEN = "stolen"
    SOLD = "sold"  # sold or given away without revoking
    OTHER = "other"


class CallerKind(str, enum.Enum):
    SELF = "self"  # the owner
    PROXY = "proxy"  # someone on the owner's behalf, e.g. family while the owner is abroad


class Channel(str, enum.Enum):
    PHONE = "phone"
    COUNTER = "counter"
    MAIL = "mail"


class FindRequest(BaseModel):
    """Either the caller's three card items, or the suspension code; never both."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    birth: str | None = Field(None, min_length=1, max_length=20, description="YYYY-MM-DD")
    address: str | None = Field(None, min_length=1, max_length=400)
    code: str | None = Field(None, min_length=1, max_length=40, description="The suspension code the app shows")

    @model_validator(mode="after")
    def _one_way(self) -> FindRequest:
        holder = (self.name, self.birth, self.address)
        if self.code is not None and any(v is not None for v in holder):
            raise ValueError("give either code, or name + birth + address, not both")
        if self.code is None and not all(v is not None for v in holder):
            raise ValueError("give name, birth and address (all three), or code")
        return self


class SuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: SuspensionReason
    caller: CallerKind
    relationship: str | None = Field(None, min_length=1, max_length=60, description="Needed when caller is proxy")
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")
    channel: Channel = Channel.PHONE

    @model_validator(mode="after")
    def _proxy_relationship(self) -> SuspendRequest:
        if self.caller is CallerKind.PROXY and not self.relationship:
            raise ValueError("a proxy caller needs relationship (e.g. spouse, parent, child)")
        return self


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=200)
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: RevocationReason = "keyCompromise"
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")
    note: str | None = Field(None, max_length=200)


class CertificateSummary(BaseModel):
    kind: str
    serial: str | None
    status: str
    current: bool


class RegistrationSummary(BaseModel):
    """Only what an operator needs to confirm the caller and act: the case reference, never the
    registration id (which, with the owner token, belongs to the owner's phone)."""

    case_reference: str
    masked_name: str
    registered_at: str
    device_model: str
    state: str
    reason: str | None
    certificates: list[CertificateSummary]
    ca_sync: str
    ca_sync_reason: str | None
    signature_reissue_needed: bool


class FindOut(BaseModel):
    results: list[RegistrationSummary]


class HistoryEntry(BaseModel):
    at: str
    event: str
    actor: str
    operator: str | None
    from_state: str
    to_state: str
    note: str | None


class HistoryOut(BaseModel):
    registration: RegistrationSummary
    events: list[HistoryEntry]


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    case_reference: str | None = Field(description="The registration's case reference (entries written before "
                                                   "case references existed hold the registration id)")
    details: dict


class AuditOut(BaseModel):
    entries: list[AuditEntryOut]
