"""The two-person rule's pending approvals: a supervisor's act waiting for a second supervisor."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # 64-bit random, hex: short enough to type
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id"), index=True)
    case_reference: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # lift | revoke
    # The act's request as the first supervisor sent it (reason, ticket, caller...; no personal data), as JSON.
    request_json: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))  # the first supervisor's username
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(10), index=True)  # pending | approved | rejected (expiry: computed)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
