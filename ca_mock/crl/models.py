"""The latest published full and delta CRL of each issuer, and of each CRL partition."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
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


# -- partitioned CRLs (see ca_mock/crl/partitions.py) -----------------------------------------------
# New tables only: the store is made with create_all (no migrations), so existing tables keep
# their columns and a store made before partitions gains these tables on its next start.


class PartitionCounter(Base):
    """Which partition of an issuer takes the next certificate, and how many it has taken."""

    __tablename__ = "crl_partition_counters"

    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"), primary_key=True)
    open_partition: Mapped[int] = mapped_column(Integer)
    assigned: Mapped[int] = mapped_column(Integer)  # certificates given open_partition so far


class CRLPartition(Base):
    """The CRL bookkeeping of one partition: its own numbering, dirty flag and delta base."""

    __tablename__ = "crl_partitions"

    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    dirty: Mapped[bool] = mapped_column(default=True)
    delta_base_number: Mapped[int | None] = mapped_column(Integer)
    delta_base_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # nextUpdate of the last published full CRL (None: never published), so that the publisher's
    # round finds the partitions due with one query on this table.
    next_update: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CertificatePartition(Base):
    """The partition a certificate was given at issuance (the one its CRL DP names)."""

    __tablename__ = "certificate_partitions"

    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), primary_key=True)
    authority: Mapped[str] = mapped_column(String(32))
    partition: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_certificate_partitions_authority_partition", "authority", "partition"),)


class PublishedPartitionCRL(Base):
    """The latest published full and delta CRL of each partition."""

    __tablename__ = "published_partition_crls"

    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # full | delta
    number: Mapped[int] = mapped_column(Integer)
    base_number: Mapped[int | None] = mapped_column(Integer)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
