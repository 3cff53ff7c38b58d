"""A carrier's credential, its short-lived access tokens, and the reports it sent.

Only hashes of secrets are kept: the client secret as argon2id, each access token (random, 256 bits) as
SHA-256. A report keeps the carrier's own case number and its outcome, never the subscriber's items.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class Carrier(Base):
    __tablename__ = "carriers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(Text)  # argon2id, never the secret
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_report_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CarrierToken(Base):
    """An access token a carrier obtained with its client credentials; a copy of this table opens nothing."""

    __tablename__ = "carrier_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class CarrierReport(Base):
    """One report per (carrier, case number): a repeat answers this row's outcome and changes nothing."""

    __tablename__ = "carrier_reports"
    __table_args__ = (UniqueConstraint("carrier_id", "case_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id"))
    case_number: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # lost | stolen | remote-wipe
    suspended: Mapped[int] = mapped_column(Integer)  # how many registrations this report put on hold
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
