"""Owner-proof challenges: single-use and short-lived."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class Challenge(Base):
    __tablename__ = "challenges"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    registration_id: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
