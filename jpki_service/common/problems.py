"""Refusals of the lifecycle service, each a problem document (see docs/service-api.md)."""
from __future__ import annotations

from jpki_common.problems import Problem


class InvalidInput(Problem):
    status, title, slug = 422, "Invalid request", "invalid-request"


class RegistrationNotFound(Problem):
    status, title, slug = 404, "Unknown registration", "registration-unknown"


class OwnerTokenMissing(Problem):
    status, title, slug = 401, "Owner token needed", "owner-token-missing"


class StateConflict(Problem):
    status, title, slug = 409, "Not possible in this state", "state-conflict"


class ChallengeUnknown(Problem):
    status, title, slug = 404, "Unknown challenge", "challenge-unknown"


class ChallengeUsed(Problem):
    status, title, slug = 409, "Challenge already used", "challenge-used"


class ChallengeExpired(Problem):
    status, title, slug = 410, "Challenge expired", "challenge-expired"


class ChallengeMismatch(Problem):
    status, title, slug = 400, "Challenge made for something else", "challenge-mismatch"


class ProofRejected(Problem):
    status, title, slug = 403, "Proof rejected", "proof-rejected"


class CAUnreachable(Problem):
    status, title, slug = 503, "Certification authority unreachable", "ca-unreachable"


class StatusUnverified(Problem):
    """The OCSP answer was not believed (jpki_service/adapters/ocsp_verification.py): forged, replayed or stale."""

    status, title, slug = 503, "Certificate status could not be verified", "status-unverified"


class NotSignedIn(Problem):
    status, title, slug = 401, "Not signed in", "not-signed-in"


class LoginRefused(Problem):
    status, title, slug = 401, "Login refused", "login-refused"


class PasswordChangeRequired(Problem):
    """A session of an account whose password was reset: it may only change the password."""

    status, title, slug = 403, "Password change required", "password-change-required"


class RoleForbidden(Problem):
    status, title, slug = 403, "Not allowed for this role", "role-forbidden"


class CSRFRejected(Problem):
    status, title, slug = 403, "Form token missing or wrong", "csrf-rejected"


class NothingFound(Problem):
    status, title, slug = 404, "No registration matches", "nothing-found"


class OperatorExists(Problem):
    status, title, slug = 409, "Operator exists", "operator-exists"


class TooManyAttempts(Problem):
    status, title, slug = 429, "Too many attempts", "too-many-attempts"


class ApprovalNotFound(Problem):
    status, title, slug = 404, "Unknown approval", "approval-unknown"


class ApprovalExpired(Problem):
    status, title, slug = 410, "Approval expired", "approval-expired"


class SecondPersonNeeded(Problem):
    status, title, slug = 403, "A second supervisor must approve", "second-person-needed"
