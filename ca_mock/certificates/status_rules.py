"""The status rules of a real CA, as one pure function over (current status, requested change).

No I/O here: the service layer loads the certificate, asks :func:`next_status`, and writes what
it answers. Every refusal names the rule it broke so a caller can tell the owner why.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ca_mock.problems import InvalidRequest, StatusChangeRefused
from jpki_common.profiles import HOLD_REASON, KEY_COMPROMISE, REMOVE_FROM_CRL, REVOCATION_REASONS


class CertStatus(str, enum.Enum):
    GOOD = "good"
    HELD = "held"
    REVOKED = "revoked"


class StatusAction(str, enum.Enum):
    REVOKE = "revoke"
    HOLD = "hold"
    RELEASE = "release"




@dataclass(frozen=True)
class StatusChange:
    status: CertStatus
    reason: str | None


def next_status(
    current: CertStatus, current_reason: str | None, action: StatusAction, reason: str | None = None
) -> StatusChange:
    """Answer the status after ``action``, or raise :class:`StatusChangeRefused`.

    Revoked is final, except that its reason may still move to keyCompromise (RFC 5280 lets a
    CA strengthen a reason once compromise is known). Only a held certificate can be released,
    and a held certificate can be revoked for good.
    """
    if action is StatusAction.REVOKE:
        if reason not in REVOCATION_REASONS:
            hint = " (use hold / release for that)" if reason in (HOLD_REASON, REMOVE_FROM_CRL) else ""
            raise InvalidRequest(
                f"revocation reason {reason!r} is not one of {', '.join(REVOCATION_REASONS)}{hint}",
                field="reason",
            )
        if current is CertStatus.REVOKED:
            if reason == KEY_COMPROMISE and current_reason != KEY_COMPROMISE:
                return StatusChange(CertStatus.REVOKED, KEY_COMPROMISE)
            raise StatusChangeRefused(
                f"certificate is already revoked ({current_reason}); revocation is final and its "
                "reason can only change towards keyCompromise",
                current_status=current.value,
                current_reason=current_reason,
            )
        return StatusChange(CertStatus.REVOKED, reason)

    if action is StatusAction.HOLD:
        if current is not CertStatus.GOOD:
            raise StatusChangeRefused(
                f"only a good certificate can be put on hold; this one is {current.value}",
                current_status=current.value,
                current_reason=current_reason,
            )
        return StatusChange(CertStatus.HELD, HOLD_REASON)

    if action is StatusAction.RELEASE:
        if current is not CertStatus.HELD:
            raise StatusChangeRefused(
                f"only a held certificate can be released; this one is {current.value}",
                current_status=current.value,
                current_reason=current_reason,
            )
        return StatusChange(CertStatus.GOOD, None)

    raise InvalidRequest(f"unknown status action {action!r}")  # pragma: no cover - enum exhausts
