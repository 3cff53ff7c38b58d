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
"""
from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca_mock import urls
from ca_mock.authorities.service import ISSUING_CAS, load_hierarchy
from ca_mock.crl.models import CertificatePartition, CRLPartition, PartitionCounter, PublishedPartitionCRL
from ca_mock.crl.service import (
    IN_FLIGHT_WAIT_SECONDS,
    Publication,
    _delta_entries,
    _full_entries,
    build_crl,
)
from ca_mock.db import Store, utcnow
from ca_mock.problems import UnknownAuthority
from ca_mock.settings import CASettings


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


# -- publishing ---------------------------------------------------------------------------------------

def _due_clause(now: dt.datetime, half_life: dt.timedelta):
    return or_(CRLPartition.dirty.is_(True), CRLPartition.next_update.is_(None),
               CRLPartition.next_update < now + half_life)


def _reserve(store: Store, settings: CASettings, authority: str, partition: int, force: bool):
    """As crl.service._reserve_number, on the partition's row."""
    now = utcnow()
    half_life = dt.timedelta(hours=settings.crl_validity_hours) / 2
    key = (CRLPartition.authority == authority, CRLPartition.partition == partition)
    def due(row: CRLPartition) -> bool:
        return force or row.dirty or row.next_update is None or row.next_update - now < half_life

    # A read first, so that a fetch of an unchanged partition takes no write lock.
    with store.sessions() as session:
        row = session.scalars(select(CRLPartition).where(*key)).one_or_none()
        if row is None:
            raise UnknownAuthority(f"{authority} has no CRL partition {partition}")
        if not due(row):
            return None
    with store.transaction() as session:
        row = session.scalars(select(CRLPartition).where(*key).with_for_update()).one()
        if not due(row):
            return None  # another publisher got there first
        row.crl_number += 1
        row.dirty = False
        if row.delta_base_time is None or now - row.delta_base_time >= dt.timedelta(hours=settings.delta_base_hours):
            row.delta_base_number, row.delta_base_time = row.crl_number, now
        return row.crl_number, row.delta_base_number, row.delta_base_time, now


def publish_partition(store: Store, settings: CASettings, authority: str, partition: int,
                      force: bool = False) -> Publication | None:
    """Publish a partition's full and delta CRL if it changed, is ageing, never was, or ``force``."""
    if authority not in ISSUING_CAS:
        raise UnknownAuthority(f"no partitioned CRL issuer named {authority!r}; known: {', '.join(ISSUING_CAS)}")
    hierarchy = load_hierarchy(store)
    reserved = _reserve(store, settings, authority, partition, force)
    if reserved is None:
        return None
    number, base_number, base_time, now = reserved
    next_update = now + dt.timedelta(hours=settings.crl_validity_hours)
    issuer = hierarchy.get(authority)
    scope = urls.partition_crl_url(hierarchy.public_url, authority, partition)
    full_der, full_count = _full_entries(store, authority, partition)
    with store.sessions() as session:
        delta_der, delta_count = _delta_entries(session, authority, base_time, partition)
    publications = [
        ("full", build_crl(issuer, full_der, number, now, next_update, hierarchy.public_url, idp_url=scope,
                           freshest_url=urls.partition_delta_crl_url(hierarchy.public_url, authority, partition)),
         full_count, None),
        ("delta", build_crl(issuer, delta_der, number, now, next_update, hierarchy.public_url,
                            delta_base=base_number, idp_url=scope), delta_count, base_number),
    ]
    with store.transaction() as session:
        # The partition's row serialises the writers (as the issuer's row does in crl.service.publish).
        row = session.scalars(select(CRLPartition).where(
            CRLPartition.authority == authority, CRLPartition.partition == partition).with_for_update()).one()
        for kind, der, count, base in publications:
            existing = session.get(PublishedPartitionCRL, (authority, partition, kind))
            if existing is not None and existing.number >= number:
                continue  # a concurrent publisher got a later number in first
            session.merge(PublishedPartitionCRL(
                authority=authority, partition=partition, kind=kind, number=number, base_number=base,
                this_update=now, next_update=next_update, entries=count, der=der))
            if kind == "full":
                row.next_update = next_update
    return Publication(authority, number, full_count, delta_count, base_number, partition)


def publish_due_partitions(store: Store, settings: CASettings) -> list[Publication]:
    """The background publisher's share: one query finds the partitions due, each is published."""
    now = utcnow()
    half_life = dt.timedelta(hours=settings.crl_validity_hours) / 2
    with store.sessions() as session:
        due = session.execute(select(CRLPartition.authority, CRLPartition.partition).where(
            _due_clause(now, half_life)).order_by(CRLPartition.authority, CRLPartition.partition)).all()
    return [p for authority, partition in due
            if (p := publish_partition(store, settings, authority, partition)) is not None]


def current_partition_crl(store: Store, settings: CASettings, authority: str, partition: int,
                          kind: str) -> PublishedPartitionCRL:
    """The partition CRL to serve: published anew first if anything changed (as crl.service.current_crl)."""
    publish_partition(store, settings, authority, partition)
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    while True:
        with store.sessions() as session:
            published = session.get(PublishedPartitionCRL, (authority, partition, kind))
            reserved = session.get_one(CRLPartition, (authority, partition)).crl_number
        if published is not None and published.number >= reserved:
            return published
        if time.monotonic() > deadline:  # its publisher died after reserving: publish anew
            publish_partition(store, settings, authority, partition, force=True)
            deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
        time.sleep(0.01)
