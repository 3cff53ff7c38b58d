"""The outbox towards the CA: every status change the CA must learn, written in the same
transaction as the lifecycle change that needs it, and carried there with an idempotency key."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class CACommand(Base):
    __tablename__ = "ca_commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(ForeignKey("registrations.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("phone_certificates.id"))
    action: Mapped[str] = mapped_column(String(16))  # issue | revoke | hold | release
    reason: Mapped[str | None] = mapped_column(String(32))
    operation_id: Mapped[str] = mapped_column(String(128), unique=True)
    # Issue only: profile, CSR and card serial, erased once the CA answered. Commands queued by older
    # versions also held the holder's four items (the CA now takes them from its record of the card):
    # those are erased at the service's start (service.seal_clear_certificates).
    payload: Mapped[dict | None] = mapped_column(JSON)
    # pending (until the CA has it) | done | failed (the CA refused this very command; an operator may
    # re-queue it) | superseded (a failed command a later change made moot, ended at re-queue)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_ca_commands_due", "state", "next_attempt_at"),
        Index("ix_ca_commands_registration", "registration_id", "state"),
    )
