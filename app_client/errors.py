"""The refusals the app explains to its owner.

Every message is one line meant for the owner, in the language the command line chose, and never
contains a secret: the CLI prints ``str(error)`` as it is. A refusal about a secret names which of
the owner's four secrets it is (app_client/owner_secrets.py).
"""
from __future__ import annotations

from app_client.messages import _
from jpki_common.card_rules import SecretRuleViolation


class AppError(Exception):
    """Something the owner must be told; the CLI prints it on one line and exits non-zero."""


class SecretBreaksRule(AppError, SecretRuleViolation):
    """The secret typed cannot be the right one: it breaks its rule. No try is spent."""

    def __init__(self, what: str, rule: str) -> None:
        super().__init__(_("the {secret} must be {rule}").format(secret=what, rule=rule))


class WrongSecret(AppError):
    """A password or PIN did not match. The try is spent (and written) already."""

    def __init__(self, what: str, tries_left: int, remedy: str) -> None:
        if tries_left > 0:
            message = _.plural("wrong {secret}: {n} try left", "wrong {secret}: {n} tries left",
                               tries_left).format(secret=what, n=tries_left)
        else:
            message = _("wrong {secret}: it is now locked; {remedy}").format(secret=what, remedy=remedy)
        super().__init__(message)
        self.tries_left = tries_left


class SecretLocked(AppError):
    """The key is locked: even the right secret is refused until it is reset."""

    def __init__(self, what: str, max_tries: int, remedy: str) -> None:
        super().__init__(_("the {secret} is locked after {n} wrong entries; {remedy}").format(
            secret=what, n=max_tries, remedy=remedy))


class NotRegistered(AppError):
    """The phone holds no registration this app knows of."""


class StaleCertificates(AppError):
    """The SE holds certificates from an earlier installation of the app (factory reset or reinstall)."""


class NothingToLift(AppError):
    """The registration is not suspended and its signature certificate needs no reissue."""


class NoReceipt(AppError):
    """No erasure receipt: the secure element, or the service's records for it, still show a live JPKI certificate."""
