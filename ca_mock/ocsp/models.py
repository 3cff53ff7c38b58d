"""Pre-produced OCSP responses: one per certificate and CertID hash algorithm.

They are signed when the status changes, so answering a nonce-less query costs a read,
not a signature.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ca_mock.db import Base
from jpki_common.store import UTCDateTime


class PreparedOCSPResponse(Base):
    __tablename__ = "ocsp_responses"

    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), primary_key=True)
    hash_algorithm: Mapped[str] = mapped_column(String(8), primary_key=True)  # sha1 | sha256
    authority: Mapped[str] = mapped_column(String(32))  # the issuer named in the CertID
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
