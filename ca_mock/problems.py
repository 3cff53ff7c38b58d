"""Errors the CA reports to its callers, each an RFC 9457 problem document.

Raised anywhere below the HTTP layer; the app turns them into ``application/problem+json``
and the CLI into a one-line message with a non-zero exit.
"""
from __future__ import annotations

from typing import Any


class Problem(Exception):
    """Base of every refusal reported as a problem document, by the CA and by the service."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": f"https://jpki-mock.invalid/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class CAProblem(Problem):
    """A refusal by the CA."""


class InvalidRequest(CAProblem):
    status, title, slug = 422, "Invalid request", "invalid-request"


class InvalidCSR(CAProblem):
    status, title, slug = 422, "Invalid certificate signing request", "invalid-csr"


class PolicyViolation(CAProblem):
    status, title, slug = 422, "Refused by issuing policy", "policy-violation"


class UnknownCertificate(CAProblem):
    status, title, slug = 404, "Unknown certificate", "unknown-certificate"


class UnknownAuthority(CAProblem):
    status, title, slug = 404, "Unknown authority", "unknown-authority"


class StatusChangeRefused(CAProblem):
    status, title, slug = 409, "Status change refused", "status-change-refused"


class OperationConflict(CAProblem):
    status, title, slug = 409, "Operation id reused with different content", "operation-conflict"


class NotInitialised(CAProblem):
    status, title, slug = 503, "CA not initialised", "not-initialised"


class AlreadyInitialised(CAProblem):
    status, title, slug = 409, "CA already initialised", "already-initialised"


class KeyAlreadyCertified(CAProblem):
    status, title, slug = 409, "Public key already certified", "key-already-certified"
