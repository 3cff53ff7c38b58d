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
    example = "serial 'xyz' is not a hexadecimal number"


class InvalidCSR(CAProblem):
    status, title, slug = 422, "Invalid certificate signing request", "invalid-csr"
    example = "csr_pem self-signature does not verify: the request was altered or not signed by its key"


class UnknownCertificate(CAProblem):
    status, title, slug = 404, "Unknown certificate", "unknown-certificate"
    example = "no certificate with serial 1A2B3C was issued by this CA"


class UnknownAuthority(CAProblem):
    status, title, slug = 404, "Unknown authority", "unknown-authority"
    example = "no authority named 'nosuch'; known: root, sign, auth, ..."


class StatusChangeRefused(CAProblem):
    status, title, slug = 409, "Status change refused", "status-change-refused"
    example = "only a good certificate can be put on hold; this one is revoked"


class OperationConflict(CAProblem):
    status, title, slug = 409, "Operation id reused with different content", "operation-conflict"
    example = "operation id 'svc:42:hold' was already used for a different revoke request"


class NotInitialised(CAProblem):
    status, title, slug = 503, "CA not initialised", "not-initialised"
    example = "no CA in this store yet; run `jpki-ca init` first"


class AlreadyInitialised(CAProblem):
    status, title, slug = 409, "CA already initialised", "already-initialised"
    example = "this store already holds a CA"


class KeyAlreadyCertified(CAProblem):
    status, title, slug = 409, "Public key already certified", "key-already-certified"
    example = "csr_pem carries a public key this CA already certified (certificate 1A2B3C)"
