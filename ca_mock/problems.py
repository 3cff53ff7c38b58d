"""Errors the CA reports to its callers, each an RFC 9457 problem document (:class:`Problem`).

Raised anywhere below the HTTP layer; the app turns them into ``application/problem+json``
and the CLI into a one-line message with a non-zero exit.
"""
from __future__ import annotations

from jpki_common.problems import Problem


class CAProblem(Problem):
    """A refusal by the CA."""


class InvalidRequest(CAProblem):
    status, title, slug = 422, "Invalid request", "invalid-request"


class InvalidCSR(CAProblem):
    status, title, slug = 422, "Invalid certificate signing request", "invalid-csr"


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
