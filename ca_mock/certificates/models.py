"""Issued certificates, their current status and the history of every status change."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ca_mock.db import Base
from jpki_common.store import UTCDateTime


class IssuedCertificate(Base):
    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)  # lower-case hex
    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"))
    profile: Mapped[str] = mapped_column(String(32))
    card_serial: Mapped[str | None] = mapped_column(String(40), index=True)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="good")
    reason: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The DER of this certificate's CRL entry, made once when it is listed, so that a full
    # CRL is a concatenation and one signature instead of a million Python objects.
    crl_entry_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    # keys.public_key_fingerprint of the certified key: one key, one certificate. Unique, so two
    # concurrent issuances of one key cannot both commit. Empty only for a certificate of a store made
    # before this column whose key an earlier certificate already had (certificates/upgrade.py).
    public_key_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_certificates_authority_status", "authority", "status"),
        Index("ix_certificates_authority_changed", "authority", "status_changed_at"),
        Index("ux_certificates_public_key_sha256", "public_key_sha256", unique=True),
    )


class StatusEvent(Base):
    """Append-only history: what each status change was, when, and under which operation."""

    __tablename__ = "certificate_status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(String(32))
    operation_id: Mapped[str | None] = mapped_column(String(128))
