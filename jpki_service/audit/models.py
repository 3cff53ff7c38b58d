"""The audit trail: append-only, each entry chained to the one before by a keyed hash."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from jpki_service.adapters.db import Base, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # 1, 2, 3... no gaps
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(80))  # operator:<username> | owner | system
    action: Mapped[str] = mapped_column(String(40))
    # The registration's case reference, never its id (entries written before migration 0004 hold the id).
    case_reference: Mapped[str | None] = mapped_column(String(32), index=True)
    # Canonical JSON text (sorted keys), hashed as stored: a JSON column could be re-serialised.
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last entry's number and hash. Appends lock it, so the chain has one order,
    and it is what shows that entries were cut off the end."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # always 1
    seq: Mapped[int] = mapped_column(Integer)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditAnchor(Base):
    """An RFC 3161 timestamp of the chain's head, by the CA's time-stamping authority (audit/anchors.py).

    Kept apart from the trail (and copied to the anchor folder, JPKI_AUDIT_ANCHOR_DIR): an anchor
    shows that entry ``seq`` with hash ``entry_hash`` existed at ``gen_time``, so a trail later
    cut before ``seq``, or a head rewound below it, is named by ``audit verify``."""

    __tablename__ = "audit_anchors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(Integer, index=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    gen_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the token's genTime, as the TSA signed it
    stamped: Mapped[bytes] = mapped_column(LargeBinary)  # the exact bytes whose SHA-256 the token carries
    token: Mapped[bytes] = mapped_column(LargeBinary)  # DER TimeStampToken (CMS ContentInfo)
