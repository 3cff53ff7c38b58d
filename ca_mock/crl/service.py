"""Publishing CRLs (RFC 5280): one full CRL and one delta CRL per scope, sharing a numbering. A scope
is an issuer's whole CRL or one of its partitions' (ca_mock/crl/partitions.py); one publisher does both.

A full CRL is the stored DER entries of every listed certificate, concatenated, wrapped and
signed once: linear in the number of entries, with no Python object per entry (the
cryptography builder's add-one-entry path is quadratic, see LIBRARY_NOTES.md).

A delta CRL lists what changed since its base full CRL, including ``removeFromCRL`` for holds
that were lifted. The base is re-chosen every ``delta_base_hours``.

Freshness: a status change marks its issuer dirty. The next fetch of a CRL of that issuer, or
the background publisher of ``jpki-ca serve`` (every ``crl_publish_interval_seconds``),
whichever comes first, publishes anew.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from asn1crypto import core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from sqlalchemy import ColumnElement, Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from ca_mock import urls
from ca_mock.authorities.models import Authority
from ca_mock.authorities.service import CRL_ISSUERS, ISSUING_CAS, LoadedAuthority, load_hierarchy
from ca_mock.certificates.models import IssuedCertificate, StatusEvent
from ca_mock.crl.entries import encode_entry
from ca_mock.crl.models import CertificatePartition, CRLPartition, PublishedCRL
from ca_mock.problems import UnknownAuthority
from ca_mock.settings import CASettings
from jpki_common import keys
from jpki_common.store import DriverQuery, Store, utcnow

LISTED = ("held", "revoked")
# How long a fetch waits for a publication already under way before publishing one itself.
IN_FLIGHT_WAIT_SECONDS = 30.0
# Changes that committed late (slow transactions) must still reach the next delta: a delta
# looks this far behind its base. Listing an entry twice is harmless; missing one is not.
DELTA_OVERLAP = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Publication:
    authority: str
    number: int
    full_entries: int
    delta_entries: int
    base_number: int | None
    partition: int | None = None  # set for a partition's CRLs (ca_mock/crl/partitions.py)


def _time(value: dt.datetime) -> asn1_crl.Time:
    return asn1_crl.Time({"utc_time": value} if value.year < 2050 else {"general_time": value})


def build_crl(
    issuer: LoadedAuthority,
    entries_der: bytes,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    public_url: str,
    delta_base: int | None = None,
    advertise_delta: bool = True,
    idp_url: str | None = None,
    freshest_url: str | None = None,
) -> bytes:
    """Wrap already-encoded entries into a signed CRL; ``delta_base`` makes it a delta CRL.

    ``idp_url`` limits the CRL's scope to the certificates whose CRL DP is that URL (a critical
    issuingDistributionPoint, onlyContainsUserCerts: RFC 5280 5.2.5); a partition's full and delta
    CRL carry the same one. ``freshest_url`` is the delta named by a full CRL (default: the issuer's).
    """
    issuer_cert = asn1_x509.Certificate.load(issuer.der)
    algorithm_name = keys.signature_algorithm(issuer.key)
    algorithm = {"algorithm": algorithm_name}
    if algorithm_name == "sha256_rsa":
        algorithm["parameters"] = core.Null()
    extensions: list[dict] = [
        {"extn_id": "authority_key_identifier", "critical": False,
         "extn_value": {"key_identifier": issuer_cert.key_identifier}},
        {"extn_id": "crl_number", "critical": False, "extn_value": number},
    ]
    if delta_base is None and advertise_delta:
        extensions.append({"extn_id": "freshest_crl", "critical": False, "extn_value": [
            {"distribution_point": {"full_name": [asn1_x509.GeneralName(
                name="uniform_resource_identifier",
                value=freshest_url or urls.delta_crl_url(public_url, issuer.name))]}}]})
    elif delta_base is not None:
        extensions.append({"extn_id": "delta_crl_indicator", "critical": True, "extn_value": delta_base})
    if idp_url is not None:
        extensions.append({"extn_id": "issuing_distribution_point", "critical": True, "extn_value": {
            "distribution_point": {"full_name": [asn1_x509.GeneralName(
                name="uniform_resource_identifier", value=idp_url)]},
            "only_contains_user_certs": True}})
    tbs_fields = {
        "version": "v2",
        "signature": algorithm,
        "issuer": issuer_cert.subject,
        "this_update": _time(this_update),
        "next_update": _time(next_update),
        "crl_extensions": extensions,
    }
    if entries_der:  # RFC 5280: the list is absent, not empty, when nothing is revoked
        tbs_fields["revoked_certificates"] = asn1_crl.RevokedCertificates(contents=entries_der)
    tbs = asn1_crl.TbsCertList(tbs_fields)
    signature = keys.sign_sha256(issuer.key, tbs.dump())
    return asn1_crl.CertificateList(
        {"tbs_cert_list": tbs, "signature_algorithm": algorithm, "signature": signature}
    ).dump()


def _full_entries(store: Store, authority: str, partition: int | None = None) -> tuple[bytes, int]:
    """Every listed entry of ``authority`` (or of one of its partitions), concatenated (a
    driver-level scan: the hot read)."""
    statement = select(IssuedCertificate.crl_entry_der).where(
        IssuedCertificate.authority == bindparam("authority"),
        or_(*(IssuedCertificate.status == status for status in LISTED)))
    params: dict = {"authority": authority}
    if partition is not None:
        statement = statement.join(CertificatePartition, CertificatePartition.serial == IssuedCertificate.serial).where(
            CertificatePartition.authority == bindparam("authority"),
            CertificatePartition.partition == bindparam("partition"))
        params["partition"] = partition
    query = DriverQuery(store.engine, statement)
    buffer, count = bytearray(), 0
    for (entry,) in query.rows(batch=20_000, **params):
        buffer += entry
        count += 1
    return bytes(buffer), count


def _delta_entries(session: Session, authority: str, base_time: dt.datetime,
                   partition: int | None = None) -> tuple[bytes, int]:
    # The columns a delta needs, not whole rows (each carries its certificate's DER).
    statement = select(IssuedCertificate.serial, IssuedCertificate.status, IssuedCertificate.crl_entry_der,
                       IssuedCertificate.status_changed_at).where(
        IssuedCertificate.authority == authority,
        IssuedCertificate.status_changed_at >= base_time - DELTA_OVERLAP,
    )
    if partition is not None:
        statement = statement.join(CertificatePartition, CertificatePartition.serial == IssuedCertificate.serial).where(
            CertificatePartition.authority == authority, CertificatePartition.partition == partition)
    changed = session.execute(statement).all()
    released = [c.serial for c in changed if c.status == "good"]
    once_held = set(
        session.scalars(
            select(StatusEvent.serial).where(StatusEvent.serial.in_(released), StatusEvent.status == "held")
        )
    ) if released else set()
    buffer, count = bytearray(), 0
    for cert in changed:
        if cert.status in LISTED:
            buffer += cert.crl_entry_der
        elif cert.serial in once_held:
            buffer += encode_entry(int(cert.serial, 16), cert.status_changed_at, "removeFromCRL")
        else:
            continue
        count += 1
    return bytes(buffer), count


def _scope_key(authority: str, partition: int | None, kind: str) -> tuple[ColumnElement[bool], ...]:
    """The published row of a scope and kind (``partition`` None: the whole issuer; ``== None`` is IS NULL)."""
    return (PublishedCRL.authority == authority, PublishedCRL.partition == partition, PublishedCRL.kind == kind)


def _numbering(session: Session, authority: str, partition: int | None, lock: bool) -> Authority | CRLPartition:
    """The row that holds a scope's CRL numbering, dirty flag and delta base: the issuer's for its
    whole CRL, the partition's for a partition's (each has its own numbering: RFC 5280 5.2.3).
    ``lock``: ``FOR UPDATE``; this row serialises the scope's publishers."""
    statement: Select[Authority] | Select[CRLPartition]
    if partition is None:
        statement = select(Authority).where(Authority.name == authority)
    else:
        statement = select(CRLPartition).where(CRLPartition.authority == authority,
                                                CRLPartition.partition == partition)
    row = session.scalars(statement.with_for_update() if lock else statement).one_or_none()
    if row is None:
        raise UnknownAuthority(f"no CRL issuer named {authority!r}" if partition is None
                               else f"{authority} has no CRL partition {partition}")
    return row


def _dirty(row: Authority | CRLPartition) -> bool:
    return row.crl_dirty if isinstance(row, Authority) else row.dirty


def _reserve_number(store: Store, settings: CASettings, authority: str, partition: int | None, force: bool,
                    min_interval: float = 0.0) -> tuple[int, int, dt.datetime, dt.datetime] | None:
    """Short locked step: decide whether to publish, take a CRL number, clear the dirty flag.

    Changes committed after this step set the flag again, so none is missed; changes before
    it are visible to the reads that follow. ``min_interval``: a change alone publishes only
    once the current CRL is that many seconds old (the flag stays set until then).
    """
    now = utcnow()
    half_life = dt.timedelta(hours=settings.crl_validity_hours) / 2

    def due(session: Session, row: Authority | CRLPartition) -> bool:
        # Only the dates: the CRL itself is megabytes at scale, and this runs every round.
        last = session.execute(select(PublishedCRL.this_update, PublishedCRL.next_update).where(
            *_scope_key(authority, partition, "full"))).first()
        if force or last is None or last.next_update - now < half_life:
            return True
        return _dirty(row) and (now - last.this_update).total_seconds() >= min_interval

    # A read first, so the idle rounds of the background publisher take no write lock.
    with store.sessions() as session:
        if not due(session, _numbering(session, authority, partition, lock=False)):
            return None
    with store.transaction() as session:
        row = _numbering(session, authority, partition, lock=True)
        if not due(session, row):
            return None  # another publisher got there first
        row.crl_number += 1
        if isinstance(row, Authority):
            row.crl_dirty = False
        else:
            row.dirty = False
        if (row.delta_base_number is None or row.delta_base_time is None
                or now - row.delta_base_time >= dt.timedelta(hours=settings.delta_base_hours)):
            row.delta_base_number, row.delta_base_time = row.crl_number, now
        return row.crl_number, row.delta_base_number, row.delta_base_time, now


def publish(store: Store, settings: CASettings, name: str, force: bool = False,
            min_interval: float = 0.0, partition: int | None = None) -> Publication | None:
    """Publish a new full and delta CRL of ``name`` (its whole CRL, or ``partition``'s) if it changed,
    is ageing, was never published, or ``force``: reserve a number, build both, store them."""
    if partition is None and name not in CRL_ISSUERS:
        raise UnknownAuthority(f"no CRL issuer named {name!r}; known: {', '.join(CRL_ISSUERS)}")
    if partition is not None and name not in ISSUING_CAS:
        raise UnknownAuthority(f"no partitioned CRL issuer named {name!r}; known: {', '.join(ISSUING_CAS)}")
    hierarchy = load_hierarchy(store)
    reserved = _reserve_number(store, settings, name, partition, force, min_interval)
    if reserved is None:
        return None
    number, base_number, base_time, now = reserved
    next_update = now + dt.timedelta(hours=settings.crl_validity_hours)
    issuer = hierarchy.get(name)
    # Only the issuing CAs have delta CRLs: their certificates name one (Freshest CRL). The
    # root's do not, and a validator must not be sent looking for a root delta.
    with_delta = name in ISSUING_CAS
    # A partition's CRLs carry its scope (IDP) and name its own delta; the issuer's whole CRL neither.
    scope = freshest = None
    if partition is not None:
        scope = urls.partition_crl_url(hierarchy.public_url, name, partition)
        freshest = urls.partition_delta_crl_url(hierarchy.public_url, name, partition)
    full_der, full_count = _full_entries(store, name, partition)
    with store.sessions() as session:
        delta_der, delta_count = _delta_entries(session, name, base_time, partition) if with_delta else (b"", 0)
    full = build_crl(issuer, full_der, number, now, next_update, hierarchy.public_url,
                     advertise_delta=with_delta, idp_url=scope, freshest_url=freshest)
    publications: list[tuple[str, bytes, int, int | None]] = [("full", full, full_count, None)]
    if with_delta:
        publications.append(("delta", build_crl(issuer, delta_der, number, now, next_update, hierarchy.public_url,
                                                delta_base=base_number, idp_url=scope), delta_count, base_number))
    with store.transaction() as session:
        # The scope's numbering row serialises the writers: without it, racing first publications
        # on PostgreSQL would all INSERT (there is no published row yet to lock).
        row = _numbering(session, name, partition, lock=True)
        for kind, der, count, base in publications:
            existing = session.execute(select(PublishedCRL.id, PublishedCRL.number).where(
                *_scope_key(name, partition, kind))).first()
            if existing is not None and existing.number >= number:
                continue  # a concurrent publisher got a later number in first
            values = {"number": number, "base_number": base, "this_update": now, "next_update": next_update,
                      "entries": count, "der": der}
            if existing is None:
                session.add(PublishedCRL(authority=name, partition=partition, kind=kind, **values))
            else:
                session.execute(update(PublishedCRL).where(PublishedCRL.id == existing.id).values(**values))
            if kind == "full" and isinstance(row, CRLPartition):
                row.next_update = next_update  # for the background round's query (publish_due_partitions)
    return Publication(name, number, full_count, delta_count, base_number if with_delta else None, partition)


def current_crl(store: Store, settings: CASettings, name: str, kind: str,
                partition: int | None = None) -> PublishedCRL:
    """The CRL to serve (the issuer's whole CRL, or ``partition``'s): published anew first if anything
    changed since the last one."""
    publish(store, settings, name, partition=partition)
    if kind == "delta" and name not in ISSUING_CAS:  # publish() leaves a full CRL; deltas: issuing CAs only
        raise UnknownAuthority(f"{name} publishes no {kind} CRL; delta CRLs exist for: {', '.join(ISSUING_CAS)}")
    # A publication reserved before ours (another fetch, the background publisher) may still be
    # building: wait for it rather than serve the CRL it replaces. Otherwise a client fetching
    # full and delta at once can get one from each publication (pyHanko does exactly that).
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    while True:
        with store.sessions() as session:
            published = session.scalars(select(PublishedCRL).where(*_scope_key(name, partition, kind))).one_or_none()
            reserved = _numbering(session, name, partition, lock=False).crl_number
        if published is not None and published.number >= reserved:
            return published
        if time.monotonic() > deadline:  # its publisher died after reserving: publish anew
            publish(store, settings, name, force=True, partition=partition)
            deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
        time.sleep(0.01)


def publish_due_partitions(store: Store, settings: CASettings) -> list[Publication]:
    """The background publisher's share of the partitions: one query finds those due (changed, ageing
    or never published), each is published."""
    now = utcnow()
    half_life = dt.timedelta(hours=settings.crl_validity_hours) / 2
    with store.sessions() as session:
        due = session.execute(select(CRLPartition.authority, CRLPartition.partition).where(or_(
            CRLPartition.dirty.is_(True), CRLPartition.next_update.is_(None),
            CRLPartition.next_update < now + half_life,
        )).order_by(CRLPartition.authority, CRLPartition.partition)).all()
    return [p for authority, partition in due
            if (p := publish(store, settings, authority, partition=partition)) is not None]


def publish_all_due(store: Store, settings: CASettings) -> list[Publication]:
    """One round of the background publisher: every issuer's CRLs and every partition's that are due.

    With partitions, a change re-publishes its partition's CRLs at once; the whole-issuer CRL of
    ``sign`` and ``auth`` (a million entries at scale, named only by certificates issued before
    partitions) at most every ``issuer_crl_background_interval_seconds``, and at any fetch of it.
    """
    partitioned = settings.crl_partition_size > 0
    published = [p for name in CRL_ISSUERS if (p := publish(
        store, settings, name,
        min_interval=settings.issuer_crl_background_interval_seconds if partitioned and name in ISSUING_CAS
        else 0.0)) is not None]
    return published + publish_due_partitions(store, settings)
