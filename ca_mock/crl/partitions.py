"""Partitioned CRLs: each certificate of the signature and user-authentication CAs belongs to a
partition of at most ``crl_partition_size`` certificates, and names that partition's CRL.

Why: a whole-issuer CRL at a million revoked certificates is 50 MiB (LIBRARY_NOTES.md); a phone
cannot fetch that, and every status change would re-sign it. A partition's full CRL lists the
held and revoked certificates of its partition only, so even a fully revoked partition stays
under 1 MiB (the size bound is in settings.crl_partition_size), and one status change
re-publishes one partition.

- Issuance: ``allocate`` gives the certificate the issuer's open partition, in a short locked
  transaction of its own (the counter row is held for microseconds, not for the signing). A
  partition is closed once it has been given ``crl_partition_size`` certificates; the next one
  opens. A number given to an issuance that then fails is simply not used: a partition may hold
  fewer certificates, never more.
- The certificate's CRL DP is ``/crl/ISSUER-pN.crl`` and its Freshest CRL ``/crl/ISSUER-pN-delta.crl``.
  Both CRLs carry a critical issuingDistributionPoint naming ``/crl/ISSUER-pN.crl`` (and
  onlyContainsUserCerts), so a relying party cannot use one partition's CRL for another's
  certificate (RFC 5280 5.2.5 and 6.3.3 (b)); the delta carries the same IDP as its base, as
  6.3.3 (b)(2)(i) asks, plus the delta CRL indicator.
- Each partition has its own CRL numbering, dirty flag and delta base (``crl_partitions``): CRL
  numbers are per scope (RFC 5280 5.2.3), and a partition's IDP makes it a scope of its own.
- A status change marks its certificate's partition dirty; the background publisher re-publishes
  dirty, ageing and never-published partitions every round, and a fetch publishes first if needed.
- Certificates issued before partitions (or with ``crl_partition_size = 0``) have no partition
  and name the whole-issuer CRL, which still lists every certificate of the issuer.
- Publishing is the issuer's: ``crl.service.publish(..., partition=N)`` and ``current_crl(..., partition=N)``
  (one publisher, one table ``published_crls`` keyed by issuer and partition). This module hands out
  and records the partitions.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca_mock.authorities.service import ISSUING_CAS
from ca_mock.crl.models import CertificatePartition, CRLPartition, PartitionCounter
from ca_mock.settings import CASettings
from jpki_common.store import Store


def allocate(store: Store, settings: CASettings, authority: str) -> int | None:
    """The partition for the next certificate of ``authority``; None when partitions are off."""
    size = settings.crl_partition_size
    if size <= 0 or authority not in ISSUING_CAS:
        return None
    for attempt in range(3):
        try:
            with store.transaction() as session:
                counter = session.scalars(select(PartitionCounter).where(
                    PartitionCounter.authority == authority).with_for_update()).one_or_none()
                if counter is None:  # the issuer's first partitioned certificate
                    counter = PartitionCounter(authority=authority, open_partition=0, assigned=0)
                    session.add(counter)
                    session.add(CRLPartition(authority=authority, partition=0, crl_number=0, dirty=True))
                elif counter.assigned >= size:
                    counter.open_partition, counter.assigned = counter.open_partition + 1, 0
                    session.add(CRLPartition(authority=authority, partition=counter.open_partition,
                                             crl_number=0, dirty=True))
                counter.assigned += 1
                return counter.open_partition
        except IntegrityError:  # two first allocations raced (PostgreSQL): the loser re-reads
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def record(session: Session, serial: str, authority: str, partition: int | None) -> None:
    """In the issuance transaction: remember the partition the certificate names."""
    if partition is not None:
        session.add(CertificatePartition(serial=serial, authority=authority, partition=partition))


def mark_dirty(session: Session, serial: str) -> None:
    """In a status change's transaction: its partition's CRLs must be published anew."""
    row = session.get(CertificatePartition, serial)
    if row is not None:
        session.execute(update(CRLPartition).where(
            CRLPartition.authority == row.authority, CRLPartition.partition == row.partition).values(dirty=True))


def partition_of(store: Store, serial: str) -> int | None:
    with store.sessions() as session:
        row = session.get(CertificatePartition, serial)
        return None if row is None else row.partition
