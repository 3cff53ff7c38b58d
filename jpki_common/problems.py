"""Refusals as RFC 9457 problem documents: the base every part raises, and the refusals more than
one part makes. ``jpki_common.http`` sends them; each part adds its own kinds.
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


class PolicyViolation(Problem):
    """A key or a request the issuing policy does not allow (the CA refuses it, and the service
    refuses it before asking the CA)."""

    status, title, slug = 422, "Refused by issuing policy", "policy-violation"


def pem_reason(exc: Exception, label: str) -> str:
    """Why ``cryptography`` refused a PEM ``label`` (e.g. CERTIFICATE REQUEST), in the request's terms: its messages
    carry its own URLs and ASN.1 parser internals, which say nothing to the sender."""
    text = str(exc)
    if text.startswith("Unable to load PEM"):
        return f"no PEM block (-----BEGIN {label}----- ... -----END {label}-----)"
    if text.startswith("Valid PEM but"):
        return f"a PEM block, but not a {label} one"
    return f"the {label} block does not hold valid DER"
