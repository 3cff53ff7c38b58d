"""Refusals of the lifecycle service, each a problem document (see docs/service-api.md)."""
from __future__ import annotations

from typing import Any, ClassVar

from jpki_common.i18n import N_
from jpki_common.problems import Problem


class InvalidInput(Problem):
    status, title, slug = 422, N_("Invalid request"), "invalid-request"
    example = "signature_csr_pem is not a PEM PKCS#10 request: a PEM block, but not a CERTIFICATE REQUEST one"
    example_members: ClassVar[dict[str, Any]] = {"field": "signature_csr_pem"}


class RegistrationNotFound(Problem):
    status, title, slug = 404, N_("Unknown registration"), "registration-unknown"
    example = "no registration 0123456789abcdef0123456789abcdef"


class OwnerTokenMissing(Problem):
    status, title, slug = 401, N_("Owner token needed"), "owner-token-missing"
    example = "reading a registration needs its owner token (Authorization: Bearer <owner token>)"


class StateConflict(Problem):
    status, title, slug = 409, N_("Not possible in this state"), "state-conflict"
    example = "suspended is not possible on a revoked registration (only from: active)"
    example_members: ClassVar[dict[str, Any]] = {"state": "revoked"}


class ChallengeUnknown(Problem):
    status, title, slug = 404, N_("Unknown challenge"), "challenge-unknown"
    example = "challenge '3f1c0b9e' was not issued by this service, or expired and removed; ask for a new one"


class ChallengeUsed(Problem):
    status, title, slug = 409, N_("Challenge already used"), "challenge-used"
    example = "this challenge was already used; ask for a new one"


class ChallengeExpired(Problem):
    status, title, slug = 410, N_("Challenge expired"), "challenge-expired"
    example = "this challenge expired at 2026-04-01T03:05:00+00:00; ask for a new one"


class ChallengeMismatch(Problem):
    status, title, slug = 400, N_("Challenge made for something else"), "challenge-mismatch"
    example = "this challenge was made for register on registration (new), not for revoke on 0123456789abcdef..."


class ProofRejected(Problem):
    status, title, slug = 403, N_("Proof rejected"), "proof-rejected"
    example = "the phone signature key did not sign this challenge"


class StorageUnavailable(Problem):
    """The database did not answer (restarting, failing over): nothing was committed; retrying is right."""

    status, title, slug = 503, N_("Storage unavailable"), "storage-unavailable"
    example = "the database did not answer; nothing was changed, try again"
    example_members: ClassVar[dict[str, Any]] = {"retry_after": 2}


class CAUnreachable(Problem):
    status, title, slug = 503, N_("Certification authority unreachable"), "ca-unreachable"
    example = "the card cannot be checked now: the CA did not answer"


class StatusUnverified(Problem):
    """The OCSP answer was not believed (jpki_service/adapters/ocsp_verification.py): forged, replayed or stale."""

    status, title, slug = 503, N_("Certificate status could not be verified"), "status-unverified"
    example = "the card's status could not be verified: the OCSP answer is not signed by the CA's responder"


class NotSignedIn(Problem):
    status, title, slug = 401, N_("Not signed in"), "not-signed-in"
    example = "the session is unknown or ended; sign in again"


class LoginRefused(Problem):
    status, title, slug = 401, N_("Login refused"), "login-refused"
    example = "username or password wrong"


class PasswordChangeRequired(Problem):
    """A session of an account whose password was reset: it may only change the password."""

    status, title, slug = 403, N_("Password change required"), "password-change-required"
    example = "the password was reset: change it first (POST /api/v1/operator/password)"


class RoleForbidden(Problem):
    status, title, slug = 403, N_("Not allowed for this role"), "role-forbidden"
    example = "an operator may not lift (only: supervisor)"


class CSRFRejected(Problem):
    status, title, slug = 403, N_("Form token missing or wrong"), "csrf-rejected"
    example = "the form token is missing or wrong: reload the page"


class NothingFound(Problem):
    status, title, slug = 404, N_("No registration matches"), "nothing-found"
    example = "no registration matches these card items; check the spelling with the caller"


class OperatorExists(Problem):
    status, title, slug = 409, N_("Operator exists"), "operator-exists"
    example = "an operator named olga exists"


class TooManyAttempts(Problem):
    status, title, slug = 429, N_("Too many attempts"), "too-many-attempts"
    example = "too many refused proofs from this client: at most 30 per 60 s; try again in 42 s"
    example_members: ClassVar[dict[str, Any]] = {"retry_after": 42, "scope": "failed-proof-client"}


class ApprovalNotFound(Problem):
    status, title, slug = 404, N_("Unknown approval"), "approval-unknown"
    example = "no approval '9c0f3a6b2d4e5f60'"


class ApprovalExpired(Problem):
    status, title, slug = 410, N_("Approval expired"), "approval-expired"
    example = "approval 9c0f3a6b2d4e5f60 expired at 2026-04-02T03:05:00+00:00: ask again"


class SecondPersonNeeded(Problem):
    status, title, slug = 403, N_("A second supervisor must approve"), "second-person-needed"
    example = "you asked for this revoke: a second supervisor must approve it"


class CarrierClientRefused(Problem):
    """The token endpoint's client authentication failed (RFC 6749 section 5.2, ``invalid_client``)."""

    status, title, slug = 401, N_("Carrier client authentication failed"), "carrier-client-refused"
    example = "client id or secret wrong, or the carrier is disabled"
    example_members: ClassVar[dict[str, Any]] = {"error": "invalid_client"}


class CarrierTokenRefused(Problem):
    """A carrier call without a live access token (RFC 6750 section 3.1, ``invalid_token``)."""

    status, title, slug = 401, N_("Carrier access token needed"), "carrier-token-refused"
    example = "the access token is unknown, expired, or its carrier is disabled; get a new one"
    example_members: ClassVar[dict[str, Any]] = {"error": "invalid_token"}


class UnsupportedGrant(Problem):
    """A token request for another grant than client credentials (RFC 6749 section 5.2)."""

    status, title, slug = 400, N_("Unsupported grant type"), "unsupported-grant-type"
    example = "grant_type must be client_credentials"
    example_members: ClassVar[dict[str, Any]] = {"error": "unsupported_grant_type", "field": "grant_type"}


class CarrierExists(Problem):
    status, title, slug = 409, N_("Carrier exists"), "carrier-exists"
    example = "a carrier named docomo exists"


class CarrierNotFound(Problem):
    status, title, slug = 404, N_("Unknown carrier"), "carrier-unknown"
    example = "no carrier named docomo"
