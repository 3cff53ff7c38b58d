"""Attempt counters, one row per subject and time window, shared by every replica."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class AttemptCounter(Base):
    __tablename__ = "attempt_counters"

    # "<scope>:<subject>:<window number>", e.g. "proof-client:127.0.0.1:29671200"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
