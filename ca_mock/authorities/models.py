"""The CA hierarchy as stored: root, two issuing CAs, and a delegated OCSP signer for each."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ca_mock.db import Base
from jpki_common.store import UTCDateTime


class Authority(Base):
    __tablename__ = "authorities"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # root | issuing | ocsp-signer
    parent: Mapped[str | None] = mapped_column(ForeignKey("authorities.name"))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_pem: Mapped[bytes] = mapped_column(LargeBinary)
    # CRL bookkeeping of this issuer (root and issuing CAs).
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl_dirty: Mapped[bool] = mapped_column(default=True)
    delta_base_number: Mapped[int | None] = mapped_column(Integer)
    delta_base_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CAMeta(Base):
    """Facts fixed at init: the public URL written into certificates, the key algorithm."""

    __tablename__ = "ca_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
