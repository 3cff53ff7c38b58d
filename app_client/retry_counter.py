"""The retry counter of a secret, as smart cards and secure elements keep it.

The card (in the card file) and the secure element (in its state file) keep the same two
fields per secret: ``tries_left`` and ``max_tries``. One function spends a try on both.
"""
from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from app_client.errors import SecretLocked, WrongSecret

T = TypeVar("T")


def spend_try(
    counter: MutableMapping[str, Any],
    save: Callable[[], None],
    check: Callable[[], T | None],
    what: str,
    remedy: str,
) -> T:
    """Run ``check`` (which returns ``None`` for a wrong secret) under the retry counter.

    The counter goes down and is saved *before* the secret is checked, and is restored only
    after a correct entry, as a chip does: killing the process in the middle of a check then
    costs a try instead of giving a free one. At zero the secret is locked: ``check`` is not
    even run, so the right secret is refused too until the counter is reset.
    """
    if counter["tries_left"] <= 0:
        raise SecretLocked(what, counter["max_tries"], remedy)
    counter["tries_left"] -= 1
    save()
    result = check()
    if result is None:
        raise WrongSecret(what, counter["tries_left"], remedy)
    counter["tries_left"] = counter["max_tries"]
    save()
    return result
