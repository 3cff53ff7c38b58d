"""The audit trail: record acts in the caller's transaction, and prove later that nobody edited it.

Each entry is chained to the one before: ``entry_hash = HMAC-SHA256(chain key, canonical form of
(seq, at, actor, action, case_reference, details, prev_hash))``. The key lives outside the
database (``ServiceKeys.audit_chain``), so someone who can write the tables but does not hold the
key cannot forge an entry, renumber one or repair the chain after a change.

One row, ``audit_head``, holds the last entry's number and hash. Appends lock it, so entries get
one order with no gaps even when transactions race; and it is what shows that entries were cut
off the end. Its lock is held until the caller commits, so every audited transaction is
serialised on it: call :func:`record` as the last step of a transaction, after the rows the act
changes are locked, so that the lock order is always "domain rows, then the head" and the head
is held briefly.

What the chain cannot show on its own: an attacker with write access who deletes the newest
entries *and* rewinds the head to match. Only a copy of the head kept elsewhere detects that:
the RFC 3161 anchors of audit/anchors.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jpki_service.adapters.db import Store, utcnow
from jpki_service.audit.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64  # the prev_hash of entry 1, and the head's hash before any entry
HEAD_ID = 1
_HASH_FORMAT = "jpki-audit/1"  # part of every hashed message: a new format can never verify as this one
_ACTOR_MAX, _ACTION_MAX, _CASE_REFERENCE_MAX = 80, 40, 32  # the column sizes (audit/models.py)

# Kinds of problem that verify() reports (documented on AuditProblem).
EDITED, DELETED, REORDERED, TRUNCATED = "edited", "deleted", "reordered", "truncated"
HEAD_MISSING, HEAD_EDITED, KEY_MISMATCH = "head-missing", "head-edited", "key-mismatch"

# verify() keeps entries whose hash fails in memory to tell a moved entry from an edited one;
# beyond this many they are reported as edited without that analysis (bounded memory).
REORDER_ANALYSIS_LIMIT = 10_000
# At most this many problems are listed; the rest are only counted (a whole table re-keyed
# would otherwise list every row).
LISTED_PROBLEMS_LIMIT = 10_000
_STREAM_BATCH = 1_000


def canonical_details(details: dict[str, Any]) -> str:
    """The one text form of ``details``: stored as is and hashed as stored, so that a database
    re-serialising JSON can never change what was signed."""
    return json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _entry_hash(chain_key: bytes, seq: int, at_iso: str, actor: str, action: str,
                case_reference: str | None, details: str, prev_hash: str) -> str:
    # A JSON array: unambiguous field boundaries, whatever the fields contain.
    message = json.dumps([_HASH_FORMAT, seq, at_iso, actor, action, case_reference, details, prev_hash],
                         ensure_ascii=False, separators=(",", ":"))
    return hmac.new(chain_key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _locked_head(session: Session) -> AuditHead:
    """The head row under a row lock, created on first use.

    Two first appends may both find no head: both insert, the second waits on the primary key
    until the first commits, fails, and then takes the lock on the committed row. The insert is
    in a savepoint so that failure does not end the caller's transaction. (SQLite serialises
    writers with BEGIN IMMEDIATE; FOR UPDATE is not emitted there.)
    """
    query = (select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
             .execution_options(populate_existing=True))
    head = session.scalars(query).one_or_none()
    if head is not None:
        return head
    try:
        with session.begin_nested():
            session.add(AuditHead(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH))
    except IntegrityError:
        pass  # another transaction made it
    return session.scalars(query).one()


def record(session: Session, chain_key: bytes, actor: str, action: str, case_reference: str | None,
           details: dict) -> AuditEntry:
    """Append one entry in the caller's transaction (the caller commits; a rollback removes it).

    ``actor`` is ``operator:<username>``, ``supervisor:<username>``, ``owner`` or ``system``.
    ``details`` must be JSON-serialisable and must hold no personal data.
    """
    for name, value, limit in (("actor", actor, _ACTOR_MAX), ("action", action, _ACTION_MAX),
                               ("case_reference", case_reference or "", _CASE_REFERENCE_MAX)):
        if len(value) > limit:
            raise ValueError(f"audit {name} longer than {limit} characters: {value[:limit]}...")
    details_text = canonical_details(details)
    head = _locked_head(session)
    seq, at = head.seq + 1, utcnow()
    entry_hash = _entry_hash(chain_key, seq, at.isoformat(), actor, action, case_reference, details_text,
                             head.entry_hash)
    entry = AuditEntry(seq=seq, at=at, actor=actor, action=action, case_reference=case_reference,
                       details=details_text, prev_hash=head.entry_hash, entry_hash=entry_hash)
    session.add(entry)
    head.seq, head.entry_hash = seq, entry_hash
    session.flush()
    return entry


def entries(session: Session, *, after_seq: int | None = None, limit: int = 100,
            case_reference: str | None = None) -> list[dict]:
    """Entries newest first, for the console and the API.

    The listing pages towards older entries: ``after_seq`` is the ``seq`` of the last entry of
    the previous page, and this page holds the entries that come after it in the listing, that
    is with a *smaller* ``seq``. ``limit`` is kept between 1 and 1000.
    """
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(max(1, min(limit, 1000)))
    if after_seq is not None:
        query = query.where(AuditEntry.seq < after_seq)
    if case_reference is not None:
        query = query.where(AuditEntry.case_reference == case_reference)
    return [
        {"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
         "case_reference": e.case_reference, "details": json.loads(e.details)}
        for e in session.scalars(query)
    ]


# -- verification ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One finding of :func:`verify`. ``seq`` is the entry it is about; ``kind`` is one of:

    - ``edited``: the entry's stored hash does not match its content (a field, its prev_hash or
      its hash was changed), and it is not a genuine entry moved from elsewhere.
    - ``deleted``: entries are missing before this one. Either a gap in the numbering (``seq``
      is then the first missing number), or the entry's prev_hash names another entry than the
      one before it although both are genuine (the chain was cut and joined).
    - ``reordered``: the row at this number is a genuine entry, but of another position (rows
      swapped or renumbered): its hash verifies under the number that its prev_hash leads to.
      Swapping only some columns of two rows cannot be told apart from an edit: that is ``edited``.
    - ``truncated``: the head records more entries than the trail holds; ``seq`` is the first
      missing one (entries were cut off the end, or the head was raised).
    - ``head-missing``: entries exist but the head row does not.
    - ``head-edited``: the head does not name the last entry (its number is lower than the last
      entry's, or its hash is not the last entry's).
    - ``key-mismatch``: not a single entry verifies: the key is not the one that wrote this trail
      (another data folder or ``JPKI_DATA_KEY``?), or every entry was altered.
    """

    seq: int
    kind: str
    detail: str


@dataclass
class AuditReport:
    entries_checked: int = 0
    problems: list[AuditProblem] = field(default_factory=list)
    problems_not_listed: int = 0  # found beyond LISTED_PROBLEMS_LIMIT

    @property
    def ok(self) -> bool:
        return not self.problems and not self.problems_not_listed

    def add(self, seq: int, kind: str, detail: str) -> None:
        if len(self.problems) < LISTED_PROBLEMS_LIMIT:
            self.problems.append(AuditProblem(seq, kind, detail))
        else:
            self.problems_not_listed += 1


@dataclass(frozen=True, slots=True)
class _Suspect:
    """An entry whose hash does not verify at its own number: edited, or moved."""

    seq: int
    at_iso: str
    actor: str
    action: str
    case_reference: str | None
    details: str
    prev_hash: str
    entry_hash: str

    def hash_at(self, chain_key: bytes, seq: int) -> str:
        return _entry_hash(chain_key, seq, self.at_iso, self.actor, self.action, self.case_reference,
                           self.details, self.prev_hash)


def _stream(session: Session, statement) -> Iterator:
    return iter(session.execute(statement.execution_options(yield_per=_STREAM_BATCH)))


def verify(store: Store, chain_key: bytes) -> AuditReport:
    """Check every entry, the links between them and the head, in one consistent snapshot.

    Entries are streamed in ``seq`` order in batches, so memory does not grow with the trail
    (apart from entries that fail, see ``REORDER_ANALYSIS_LIMIT``). Problems come sorted by seq.
    """
    report = AuditReport()
    suspects: list[_Suspect] = []
    verified = 0
    with store.sessions() as session:
        if store.is_postgresql:
            # One snapshot for the head and all entries: appends committing meanwhile are not seen.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = session.get(AuditHead, HEAD_ID)
        expected, previous_hash, previous_intact = 1, GENESIS_HASH, True
        last_seq, last_hash, last_intact = 0, GENESIS_HASH, True
        columns = (AuditEntry.seq, AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.case_reference,
                   AuditEntry.details, AuditEntry.prev_hash, AuditEntry.entry_hash)
        for entry in _stream(session, select(*columns).order_by(AuditEntry.seq)):  # rows, not ORM objects
            report.entries_checked += 1
            at_iso = entry.at.isoformat()
            intact = hmac.compare_digest(entry.entry_hash, _entry_hash(
                chain_key, entry.seq, at_iso, entry.actor, entry.action, entry.case_reference, entry.details,
                entry.prev_hash))
            if entry.seq != expected:
                missing = f"entry {expected}" if entry.seq == expected + 1 else f"entries {expected}-{entry.seq - 1}"
                report.add(expected, DELETED, f"{missing} missing from the trail")
            elif intact and previous_intact and entry.prev_hash != previous_hash:
                report.add(entry.seq, DELETED, f"its prev_hash does not name entry {entry.seq - 1}: "
                                               "the chain was cut here and joined to other entries")
            if intact:
                verified += 1
            elif len(suspects) < REORDER_ANALYSIS_LIMIT:
                suspects.append(_Suspect(entry.seq, at_iso, entry.actor, entry.action, entry.case_reference,
                                         entry.details, entry.prev_hash, entry.entry_hash))
            else:
                report.add(entry.seq, EDITED, "its hash does not match its content")
            expected, previous_hash, previous_intact = entry.seq + 1, entry.entry_hash, intact
            last_seq, last_hash, last_intact = entry.seq, entry.entry_hash, intact
        if suspects:
            _classify_suspects(session, chain_key, suspects, report)
    _check_head(head, last_seq, last_hash, last_intact, report)
    if report.entries_checked and not verified:
        report.problems, report.problems_not_listed = [AuditProblem(1, KEY_MISMATCH, (
            f"none of the {report.entries_checked} entries verifies: this is not the key that wrote the trail "
            "(another data folder or JPKI_DATA_KEY?), or every entry was altered"))], 0
    report.problems.sort(key=lambda p: p.seq)
    return report


def _classify_suspects(session: Session, chain_key: bytes, suspects: list[_Suspect], report: AuditReport) -> None:
    """Tell moved entries from edited ones.

    A genuine entry's number is one more than its predecessor's, and its predecessor is the
    entry whose hash its prev_hash holds: an intact entry (at its own number), another moved
    entry (resolved the same way), or nothing (prev_hash is the genesis value: number 1).
    A second pass over (seq, entry_hash) finds the intact predecessors.
    """
    by_seq = {s.seq: s for s in suspects}
    by_hash = {s.entry_hash: s for s in suspects}
    wanted = {s.prev_hash for s in suspects} - {GENESIS_HASH}
    intact_at: dict[str, int] = {}
    statement = select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq)
    for seq, entry_hash in _stream(session, statement):
        if entry_hash in wanted and seq not in by_seq:
            intact_at.setdefault(entry_hash, seq)

    original: dict[int, int | None] = {}  # suspect's seq -> the number it verifies at, or None
    for start in suspects:
        path: list[_Suspect] = []
        on_path: set[int] = set()
        suspect: _Suspect | None = start
        base: int | None = None
        while suspect is not None and suspect.seq not in original:
            if suspect.seq in on_path:  # a loop of prev_hashes: nothing genuine to start from
                base, suspect = None, None
                break
            path.append(suspect)
            on_path.add(suspect.seq)
            if suspect.prev_hash == GENESIS_HASH:
                base, suspect = 0, None
            elif suspect.prev_hash in intact_at:
                base, suspect = intact_at[suspect.prev_hash], None
            else:
                suspect = by_hash.get(suspect.prev_hash)  # None: its predecessor is gone
        if suspect is not None:
            base = original[suspect.seq]
        for moved in reversed(path):
            candidate = None if base is None else base + 1
            genuine = candidate is not None and hmac.compare_digest(moved.entry_hash,
                                                                    moved.hash_at(chain_key, candidate))
            base = candidate if genuine else None
            original[moved.seq] = base
    for suspect in suspects:
        found = original[suspect.seq]
        if found is None:
            report.add(suspect.seq, EDITED, "its hash does not match its content")
        else:
            report.add(suspect.seq, REORDERED, f"holds the genuine entry {found}, moved from its place")


def _check_head(head: AuditHead | None, last_seq: int, last_hash: str, last_intact: bool,
                report: AuditReport) -> None:
    if head is None:
        if last_seq:
            report.add(last_seq, HEAD_MISSING, "the audit head row is missing")
        return
    if head.seq > last_seq:
        missing = f"entry {head.seq}" if head.seq == last_seq + 1 else f"entries {last_seq + 1}-{head.seq}"
        report.add(last_seq + 1, TRUNCATED, f"the head records {head.seq} entries but the trail ends at "
                                            f"{last_seq}: {missing} cut off the end (or the head was raised)")
    elif head.seq < last_seq:
        report.add(head.seq, HEAD_EDITED, f"the head records {head.seq} entries but the trail goes on to "
                                          f"entry {last_seq}")
    elif head.entry_hash != last_hash and last_intact:
        report.add(head.seq, HEAD_EDITED, f"the head's hash is not the hash of entry {last_seq}")
