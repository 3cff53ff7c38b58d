"""The carrier API's bodies: the token answer (RFC 6749 section 5.1) and the lost-phone report."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jpki_service import holder_data
from jpki_service.common.problems import InvalidInput

ReportKind = Literal["lost", "stolen", "remote-wipe"]
CASE_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds the token is good for")


class Subscriber(BaseModel):
    """The subscriber's items as the carrier verified them at contract (the My Number card's front)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="As on the card; spaces and widths do not matter")
    birth: str = Field(min_length=1, max_length=40, description="YYYY-MM-DD or the card's era date (平成2年1月2日)")
    address: str = Field(min_length=1, max_length=400, description="As on the card; 1丁目1番 and 1-1 are the same")

    @field_validator("name", "address")
    @classmethod
    def _something_left(cls, value: str) -> str:
        # The one normaliser (holder_data): what it reduces to nothing cannot name a person.
        if not holder_data.normalise_item(value):
            raise ValueError("must hold more than spaces and invisible characters")
        return value

    @field_validator("birth")
    @classmethod
    def _a_date(cls, value: str) -> str:
        try:
            holder_data.normalise_birth_date(value)
        except InvalidInput as refused:
            raise ValueError(refused.detail.removeprefix("birth ")) from None
        return value


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_number: str = Field(pattern=CASE_NUMBER, description="The carrier's own case number: 1 to 64 of "
                             "A-Z, a-z, 0-9, '.', '_', ':', '/', '-', starting with a letter or digit")
    kind: ReportKind = Field(description="lost, stolen, or remote-wipe (a wipe the carrier is about to perform)")
    subscriber: Subscriber


class ReportOut(BaseModel):
    case_number: str
    kind: ReportKind
    received_at: str = Field(description="When the service first received this case (a repeat answers the same)")
    suspended: int = Field(description="How many of the subscriber's active registrations this report suspended "
                                       "(0: none live, already suspended, or nobody registered under these items)")
