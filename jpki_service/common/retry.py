"""How long an outbox waits before trying again: one rule for the CA queue and the owner notices."""
from __future__ import annotations

import datetime as dt


def retry_delay(attempts: int, max_backoff: dt.timedelta) -> dt.timedelta:
    """2, 4, 8 ... 64 s after the 1st, 2nd, 3rd ... failed attempt, never more than ``max_backoff``."""
    return min(dt.timedelta(seconds=2 ** min(attempts, 6)), max_backoff)
