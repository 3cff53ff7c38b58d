"""What the call-centre API takes and gives (docs/operator-api.md)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jpki_common.i18n import N_, Sentence
from jpki_common.profiles import REVOCATION_REASONS

# The choices, in a light module of their own (jpki-operator offers them in --help); re-exported here.
from jpki_service.callcentre.choices import CallerKind as CallerKind
from jpki_service.callcentre.choices import Channel as Channel
from jpki_service.callcentre.choices import SuspensionReason as SuspensionReason

RevocationReason = Literal[REVOCATION_REASONS]  # type: ignore[valid-type]


class CalledIn(BaseModel):
    """Who asked for an act: on every act, recorded in its audit entry and its history note.

    The one rule about callers: a proxy needs a relationship to the owner, and may ask for a
    suspension only, never a lift or a revocation (those change what the owner can do for good, so
    only the owner, or the call centre's own decision, may ask for them: docs/call-centre-runbook.md).
    """

    model_config = ConfigDict(extra="forbid")
    act: ClassVar[str] = N_("an act")  # as the refusal names it
    proxy_may_ask: ClassVar[bool] = True

    caller: CallerKind
    relationship: str | None = Field(None, min_length=1, max_length=60, description="Needed when caller is proxy")

    @model_validator(mode="after")
    def _caller_rules(self) -> CalledIn:
        problem = self.caller_problem(self.caller, self.relationship)
        if problem:
            raise ValueError(problem)
        return self

    @classmethod
    def caller_problem(cls, caller: CallerKind, relationship: str | None) -> Sentence | None:
        """What is wrong with this caller for this act (None: nothing); the CLI asks it before sending."""
        if caller is CallerKind.PROXY and not cls.proxy_may_ask:
            return Sentence("a proxy may ask for a suspension only, never {act}: the owner must call (suspend "
                            "now if the phone is lost, and have the owner call)", act=cls.act)
        if caller is CallerKind.PROXY and not relationship:
            return Sentence("a proxy caller needs relationship (e.g. spouse, parent, child)")
        return None

    def caller_text(self) -> str:
        """``self``, ``internal`` or ``proxy (spouse)``: for the history note."""
        return self.caller.value + (f" ({self.relationship})" if self.relationship else "")


class FindRequest(BaseModel):
    """Either the caller's three card items, or the suspension code; never both."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    birth: str | None = Field(None, min_length=1, max_length=40,
                              description="YYYY-MM-DD or an era date as the card prints it, such as 平成2年1月2日, "
                                          "昭和六十年五月五日, 令和元年5月1日 or H2.1.2")
    address: str | None = Field(None, min_length=1, max_length=400,
                                description="As on the card or as said: 千代田一丁目1番, 千代田1丁目1番地 and "
                                            "千代田1-1 are one address")
    code: str | None = Field(None, min_length=1, max_length=40, description="The suspension code the app shows")

    @model_validator(mode="after")
    def _one_way(self) -> FindRequest:
        holder = (self.name, self.birth, self.address)
        if self.code is not None and any(v is not None for v in holder):
            raise ValueError(Sentence("give either code, or name + birth + address, not both"))
        if self.code is None and not all(v is not None for v in holder):
            raise ValueError(Sentence("give name, birth and address (all three), or code"))
        return self


class SuspendRequest(CalledIn):
    act: ClassVar[str] = N_("a suspension")

    reason: SuspensionReason
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")
    channel: Channel = Channel.PHONE


class LiftRequest(CalledIn):
    act: ClassVar[str] = N_("a lift")
    proxy_may_ask: ClassVar[bool] = False

    reason: str = Field(min_length=3, max_length=200)
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")


class RevokeRequest(CalledIn):
    act: ClassVar[str] = N_("a revocation")
    proxy_may_ask: ClassVar[bool] = False

    reason: RevocationReason = "keyCompromise"
    ticket: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._/-]+$")
    note: str | None = Field(None, max_length=200)


class CertificateSummary(BaseModel):
    kind: str
    serial: str | None
    status: str
    current: bool


class ApprovalOut(BaseModel):
    """A supervisor's act waiting for (or decided by) a second supervisor: the two-person rule."""

    approval_id: str
    case_reference: str
    action: Literal["lift", "revoke"]
    request: dict = Field(description="The act as the first supervisor asked for it (reason, ticket, caller...)")
    requested_by: str
    requested_at: str
    expires_at: str
    state: Literal["pending", "approved", "rejected", "expired"]
    decided_by: str | None
    decided_at: str | None


class ApprovalsOut(BaseModel):
    approvals: list[ApprovalOut]


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
    pending_approvals: list[ApprovalOut] = Field(
        description="Acts on this registration waiting for a second supervisor (not expired)")
    ca_sync: str
    ca_sync_reason: str | None
    signature_reissue_needed: bool
    awaiting_approval: ApprovalOut | None = Field(
        None, description="Only in the answer to a lift or revoke that the two-person rule holds back (202): it is "
                          "not done until a second supervisor approves it")
    decided_approval: ApprovalOut | None = Field(
        None, description="Only in the answer to an approval or a rejection: the approval as decided")


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
