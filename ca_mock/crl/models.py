"""The latest published full and delta CRL of each scope (an issuer, or one of its CRL partitions), and
the partitions' bookkeeping."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, PrimaryKeyConstraint, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ca_mock.db import Base
from jpki_common.store import UTCDateTime


class PublishedCRL(Base):
    """The latest full and delta CRL of a scope: ``partition`` None is the issuer's whole CRL
    (``/crl/NAME.crl``), a number is that partition's (``/crl/NAME-pN.crl``). Keyed by
    (authority, partition, kind): a unique index, and a partial one for the whole-issuer rows
    (a NULL partition is distinct from every other in a unique index, on both databases)."""

    __tablename__ = "published_crls"

    id: Mapped[int] = mapped_column(Integer)
    authority: Mapped[str] = mapped_column(ForeignKey("authorities.name"))
    partition: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # full | delta
    number: Mapped[int] = mapped_column(Integer)
    base_number: Mapped[int | None] = mapped_column(Integer)
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        PrimaryKeyConstraint("id", name="pk_published_crls"),
        Index("ux_published_crls_scope", "authority", "partition", "kind", unique=True),
        Index("ux_published_crls_issuer", "authority", "kind", unique=True,
              sqlite_where=text("partition IS NULL"), postgresql_where=text("partition IS NULL")),
    )


# -- partitioned CRLs (see ca_mock/crl/partitions.py) -----------------------------------------------


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
