"""The refusals the app explains to its owner.

Every message is one line meant for the owner, and never contains a secret: the CLI prints
``str(error)`` as it is.
"""
from __future__ import annotations


class AppError(Exception):
    """Something the owner must be told; the CLI prints it on one line and exits non-zero."""


class WrongSecret(AppError):
    """A password or PIN did not match. The try is spent (and written) already."""

    def __init__(self, what: str, tries_left: int, remedy: str) -> None:
        if tries_left > 0:
            message = f"wrong {what}: {tries_left} {'try' if tries_left == 1 else 'tries'} left"
        else:
            message = f"wrong {what}: it is now locked; {remedy}"
        super().__init__(message)
        self.tries_left = tries_left


class SecretLocked(AppError):
    """The key is locked: even the right secret is refused until it is reset."""

    def __init__(self, what: str, max_tries: int, remedy: str) -> None:
        super().__init__(f"the {what} is locked after {max_tries} wrong entries; {remedy}")


class NotRegistered(AppError):
    """The phone holds no registration this app knows of."""


class StaleCertificates(AppError):
    """The SE holds certificates from an earlier installation of the app (factory reset or reinstall)."""


class NothingToLift(AppError):
    """The registration is not suspended and its signature certificate needs no reissue."""
