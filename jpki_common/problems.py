"""Refusals as RFC 9457 problem documents: the base every part raises, and the refusals more than
one part makes. ``jpki_common.http`` sends them; each part adds its own kinds.
"""
from __future__ import annotations

from typing import Any, ClassVar

from jpki_common.i18n import N_, Sentence

PROBLEM_TYPE_BASE = "https://jpki-mock.invalid/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_type(slug: str) -> str:
    """The ``type`` URI of the problem ``slug``."""
    return PROBLEM_TYPE_BASE + slug


class Problem(Exception):
    """Base of every refusal reported as a problem document, by the CA and by the service.

    Every kind is a subclass: the subclasses are the register of problem types the API documents name
    (``jpki_common.http.problem_responses``); ``example`` is a detail as the kind says it, for those documents.
    """

    status: int = 400
    title: str = N_("Bad request")
    slug: str = "bad-request"
    example: ClassVar[str] = ""
    example_members: ClassVar[dict[str, Any]] = {}

    def __init__(self, detail: str | Sentence, **extra: Any) -> None:
        super().__init__(str(detail))
        self.detail = str(detail)  # English, as the APIs answer it
        self.sentence = detail if isinstance(detail, Sentence) else None  # for a page in another language
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


class PolicyViolation(Problem):
    """A key or a request the issuing policy does not allow (the CA refuses it, and the service
    refuses it before asking the CA)."""

    status, title, slug = 422, N_("Refused by issuing policy"), "policy-violation"
    example = "not_after 2040-01-01T00:00:00+00:00 is beyond the card signature certificate's not_after"


class InvalidRequest(Problem):
    """A request FastAPI's validation refused (each server's own checks raise their own kind of the same type)."""

    status, title, slug = 422, N_("Invalid request"), "invalid-request"
    example = "body.proof.challenge_id: Field required"
    example_members: ClassVar[dict[str, Any]] = {
        "errors": [{"field": "body.proof.challenge_id", "message": "Field required"}]}


class BodyTooLarge(Problem):
    status, title, slug = 413, N_("Request body too large"), "body-too-large"
    example = "request bodies are limited to 65536 bytes"


class InternalError(Problem):
    """An unexpected failure: the answer says nothing of its cause (the log names its type and place)."""

    status, title, slug = 500, N_("Internal error"), "internal"
    example = "the server failed; nothing was changed"


class StoreUnusable(Problem):
    """The health check found the store unusable: its file gone or replaced, or the database not answering."""

    status, title, slug = 503, N_("Store unusable"), "store-unusable"
    example = "the store file var/service.sqlite3 is gone"


def pem_reason(exc: Exception, label: str) -> str:
    """Why ``cryptography`` refused a PEM ``label`` (e.g. CERTIFICATE REQUEST), in the request's terms: its messages
    carry its own URLs and ASN.1 parser internals, which say nothing to the sender."""
    text = str(exc)
    if text.startswith("Unable to load PEM"):
        return f"no PEM block (-----BEGIN {label}----- ... -----END {label}-----)"
    if text.startswith("Valid PEM but"):
        return f"a PEM block, but not a {label} one"
    return f"the {label} block does not hold valid DER"
