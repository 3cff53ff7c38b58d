"""The latest published full and delta CRL of each issuer."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ca_mock.db import Base, UTCDateTime


class PublishedCRL(Base):
    __tablename__ = "published_crls"

    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # full | delta
    number: Mapped[int] = mapped_column(Integer)
    base_number: Mapped[int | None] = mapped_column(Integer)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
