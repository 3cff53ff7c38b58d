"""Issuing and spending owner-proof challenges.

Spending happens in its own transaction before the signature is checked, so a challenge
serves one attempt only, successful or not: a replay always meets ``challenge-used``. An expired
challenge leaves the table at the background worker's next round (``purge_expired_challenges``);
spent after that, it meets ``challenge-unknown``.
"""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from jpki_common.owner_proof import Action, ProofChallenge
from jpki_service.adapters.db import Store, utcnow
from jpki_service.challenges.models import Challenge
from jpki_service.common.problems import ChallengeExpired, ChallengeMismatch, ChallengeUnknown, ChallengeUsed


def issue_challenge(store: Store, ttl_seconds: int, action: Action, registration_id: str | None) -> dict[str, Any]:
    challenge = Challenge(
        id=secrets.token_hex(16), nonce=secrets.token_urlsafe(32), action=action.value,
        registration_id=registration_id, expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds),
    )
    with store.transaction() as session:
        session.add(challenge)
    return {"challenge_id": challenge.id, "nonce": challenge.nonce, "action": challenge.action,
            "registration_id": registration_id, "expires_at": challenge.expires_at.isoformat()}


def spend_challenge(store: Store, challenge_id: str, action: Action, registration_id: str | None) -> ProofChallenge:
    """Mark the challenge used and return what the proof must sign (with the request's keys)."""
    with store.transaction() as session:
        challenge = session.scalars(
            select(Challenge).where(Challenge.id == challenge_id).with_for_update()
        ).one_or_none()
        if challenge is None:
            raise ChallengeUnknown(f"challenge {challenge_id!r} was not issued by this service, or expired and "
                                   "removed; ask for a new one", field="challenge_id")
        if challenge.used_at is not None:
            raise ChallengeUsed("this challenge was already used; ask for a new one", field="challenge_id")
        if challenge.expires_at <= dt.datetime.now(dt.UTC):
            raise ChallengeExpired(f"this challenge expired at {challenge.expires_at.isoformat()}; ask for a new one",
                                   field="challenge_id")
        if challenge.action != action.value or challenge.registration_id != registration_id:
            raise ChallengeMismatch(
                f"this challenge was made for {challenge.action} on registration "
                f"{challenge.registration_id or '(new)'}, not for {action.value} on {registration_id or '(new)'}",
                field="challenge_id",
            )
        challenge.used_at = utcnow()
        return ProofChallenge(action, registration_id, challenge.id, challenge.nonce)


def purge_expired_challenges(store: Store) -> int:
    """Delete every expired challenge, spent or not (a spent one can no longer be replayed: it expired)."""
    with store.transaction() as session:
        result = session.execute(delete(Challenge).where(Challenge.expires_at <= utcnow()))
        return cast(CursorResult[Any], result).rowcount  # a DELETE's result is a CursorResult
