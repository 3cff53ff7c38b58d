"""Anchors of the audit trail: the chain's head timestamped by the CA's RFC 3161 time-stamping authority.

The chain (audit/service.py) shows an edited, moved or deleted entry, but not a trail cut at the
end with its head rewound to match: that is a shorter trail, consistent in itself. An anchor is a
time-stamp token from a signer the service does not control (the CA's TSA) over one small
document, the *stamped data*::

    {"entry_hash":"<hex>","format":"jpki-audit-anchor/1","seq":26}\\n

It shows that entry ``seq`` with that hash existed at the token's genTime. ``audit verify`` then
names a trail that ends before the latest anchor's entry (``tail-missing``), a head below it or
with another hash (``head-rewound``), and an entry at an anchored number that is no longer the one
anchored (``anchor-mismatch``: cut, then written on).

Where anchors are kept: the table ``audit_anchors`` (not the trail's table) and, as files, in the
anchor folder (``JPKI_AUDIT_ANCHOR_DIR``, default ``<data>/audit-anchors``): ``<name>.data`` (the
stamped bytes) and ``<name>.tst`` (the DER TimeStampToken). An anchor found in the folder but not
in the table is named (``anchor-missing``). Someone able to delete both the newest anchors and the
newest entries is not detected: the folder belongs on storage the database's writers cannot change
(docs/security.md).

Nothing here writes ASN.1 by hand: asn1crypto builds the request and parses the answer, and
pyHanko's ``validate_tst_signed_data`` checks the token's signature, the TSA certificate's
time-stamping EKU and its chain to the trusted root, and the message imprint. The trusted root is
``JPKI_AUDIT_TSA_ROOT``, else the CA's root pinned in the anchor folder (``tsa-root.pem``) when
the first anchor is taken, as the phone pins the statement key.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from jpki_service.adapters.ca_client import CAClient, CAUnavailable
from jpki_service.adapters.db import Store
from jpki_service.audit.models import AuditAnchor, AuditEntry, AuditHead
from jpki_service.audit.service import GENESIS_HASH, HEAD_ID, AuditProblem
from jpki_service.common.settings import ServiceSettings

log = logging.getLogger("jpki_service.audit")

ANCHOR_FORMAT = "jpki-audit-anchor/1"
PINNED_ROOT = "tsa-root.pem"
# Kinds of problem that verify_anchors() reports (docs/security.md).
TAIL_MISSING, HEAD_REWOUND, ANCHOR_MISMATCH = "tail-missing", "head-rewound", "anchor-mismatch"
ANCHOR_MISSING, ANCHOR_INVALID = "anchor-missing", "anchor-invalid"


class AnchorFailed(Exception):
    """No anchor was taken: the TSA did not answer, refused, or its token does not verify. Try again later."""


class AnchorNotCopied(AnchorFailed):
    """The anchor was taken and is in the database, but its copy could not be written to the anchor folder."""


class NoTrustedRoot(Exception):
    """Anchors exist but no root to check them against: set JPKI_AUDIT_TSA_ROOT (or JPKI_CA_URL)."""


class _TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp as the RFC has it: asn1crypto 1.5's ``tsp.TimeStampResp`` declares the
    token mandatory, so it cannot parse a rejection (which carries none)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def stamped_data(seq: int, entry_hash: str) -> bytes:
    """The exact bytes an anchor timestamps (their SHA-256 is the token's message imprint)."""
    document = {"entry_hash": entry_hash, "format": ANCHOR_FORMAT, "seq": seq}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _parse_stamped(data: bytes) -> tuple[int, str]:
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != ANCHOR_FORMAT:
        raise ValueError(f"not a {ANCHOR_FORMAT} document")
    seq, entry_hash = document.get("seq"), document.get("entry_hash")
    if not isinstance(seq, int) or not isinstance(entry_hash, str) or stamped_data(seq, entry_hash) != data:
        raise ValueError(f"not a canonical {ANCHOR_FORMAT} document")
    return seq, entry_hash


@dataclass(frozen=True)
class Anchor:
    seq: int
    entry_hash: str
    gen_time: dt.datetime
    stamped: bytes
    token: bytes  # DER TimeStampToken

    @property
    def name(self) -> str:
        """Its file name stem: the entry number and the genTime, so two anchors never share one."""
        return f"seq-{self.seq:010d}-{self.gen_time.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}"

    def tsa_certificates(self) -> list[x509.Certificate]:
        """The certificates the token carries (the TSA's, asked for with certReq)."""
        signed_data = cms.ContentInfo.load(self.token)["content"]
        return [x509.load_der_x509_certificate(choice.chosen.dump()) for choice in signed_data["certificates"]]


# -- where anchors and the trusted root live ------------------------------------------------------
def anchor_dir(settings: ServiceSettings) -> Path:
    return settings.audit_anchor_dir or settings.data_dir / "audit-anchors"


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that did not exist, whole before it appears (owner-only); never replace one."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(draft, path)
    finally:
        draft.unlink()


def _folder(settings: ServiceSettings) -> Path:
    folder = anchor_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def trusted_root(settings: ServiceSettings, ca: CAClient | None) -> x509.Certificate:
    """The root anchors must chain to: ``JPKI_AUDIT_TSA_ROOT``, else the one pinned in the anchor
    folder, else the CA's root (fetched through ``ca``, and pinned when ``ca`` is given to anchor)."""
    if settings.audit_tsa_root is not None:
        return x509.load_pem_x509_certificate(settings.audit_tsa_root.read_bytes())
    pinned = anchor_dir(settings) / PINNED_ROOT
    if pinned.exists():
        return x509.load_pem_x509_certificate(pinned.read_bytes())
    if ca is None:
        raise NoTrustedRoot(f"no {pinned} and no JPKI_AUDIT_TSA_ROOT: nothing to check the anchors against "
                            "(set JPKI_AUDIT_TSA_ROOT to the CA's root certificate, or JPKI_CA_URL)")
    return ca.ca_certificate("root")


def _pin_root(settings: ServiceSettings, root: x509.Certificate) -> None:
    if settings.audit_tsa_root is None:
        try:
            _write_new(_folder(settings) / PINNED_ROOT, root.public_bytes(serialization.Encoding.PEM))
        except FileExistsError:
            pass  # pinned already (by another process): that one is kept


# -- taking an anchor ----------------------------------------------------------------------------
def _request_token(ca: CAClient, data: bytes) -> bytes:
    """Ask the TSA for a token over ``data``; returns the DER TimeStampToken (not yet verified)."""
    nonce = secrets.randbits(63)
    request = tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": tsp.MessageImprint({
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "hashed_message": hashlib.sha256(data).digest(),
        }),
        "nonce": nonce,
        "cert_req": True,
    })
    answer = ca.timestamp(request.dump())
    try:
        response = _TimeStampResp.load(answer, strict=True)
        status = response["status"]
        if status["status"].native not in ("granted", "granted_with_mods"):
            texts = "; ".join(status["status_string"].native or []) or "no reason given"
            failures = ", ".join(sorted(status["fail_info"].native or [])) or "-"
            raise AnchorFailed(f"the TSA refused to timestamp the audit head: {texts} (failInfo {failures})")
        token = response["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        if info["nonce"].native != nonce:
            raise AnchorFailed("the TSA's token does not carry our request's nonce")
        return bytes(token.dump())
    except AnchorFailed:
        raise
    except Exception as exc:  # undecodable bytes from the network
        raise AnchorFailed(f"the TSA's answer is not a time-stamp response: {exc.__class__.__name__}") from None


class _Validator:
    """Checks tokens against one root with pyHanko (signature, imprint, TSA EKU, chain)."""

    def __init__(self, root: x509.Certificate) -> None:
        from pyhanko_certvalidator import ValidationContext

        self._context = ValidationContext(
            trust_roots=[asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))],
            allow_fetching=False, revocation_mode="soft-fail")

    async def check(self, token: bytes, data: bytes) -> dt.datetime:
        """The token's genTime if it is a valid token over ``data`` chaining to the root; else ValueError."""
        from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
        from pyhanko.sign.validation.status import TimestampSignatureStatus

        try:
            info = cms.ContentInfo.load(token, strict=True)
            if info["content_type"].native != "signed_data":
                raise ValueError("not a CMS SignedData")
            kwargs = await validate_tst_signed_data(info["content"], self._context,
                                                    lambda algorithm: hashlib.new(algorithm, data).digest())
        except Exception as exc:  # undecodable or refused outright: the token is not good, whatever the reason
            raise ValueError(f"the token cannot be validated ({exc.__class__.__name__}: {exc})") from None
        status = TimestampSignatureStatus(**kwargs)
        if not status.intact:
            raise ValueError("the token does not timestamp this data (message imprint differs) or is altered")
        if not status.valid:
            raise ValueError("the token's signature does not verify")
        if not status.trusted:
            raise ValueError("the TSA certificate does not chain to the trusted root")
        return status.timestamp.astimezone(dt.UTC)


def _head(store: Store) -> tuple[int, str]:
    with store.sessions() as session:
        head = session.get(AuditHead, HEAD_ID)
        return (head.seq, head.entry_hash) if head is not None else (0, GENESIS_HASH)


def take_anchor(store: Store, ca: CAClient, settings: ServiceSettings, *, only_if_moved: bool = True) -> Anchor | None:
    """Timestamp the chain's head now: None when there is nothing to anchor (no entry yet) or, with
    ``only_if_moved``, when the latest anchor already names this head. Raises :class:`AnchorFailed`
    (or :class:`CAUnavailable`) when no anchor could be taken.

    The head is read without its lock: a request to the TSA must never hold up audited acts, and an
    anchor of a head that has moved on since is still true."""
    seq, entry_hash = _head(store)
    if seq == 0:
        return None
    if only_if_moved:
        with store.sessions() as session:
            latest = session.execute(select(AuditAnchor.seq, AuditAnchor.entry_hash)
                                     .order_by(AuditAnchor.seq.desc(), AuditAnchor.id.desc()).limit(1)).first()
        if latest is not None and tuple(latest) == (seq, entry_hash):
            return None
    root = trusted_root(settings, ca)
    data = stamped_data(seq, entry_hash)
    token = _request_token(ca, data)
    try:
        gen_time = asyncio.run(_Validator(root).check(token, data))
    except ValueError as exc:
        raise AnchorFailed(f"the TSA's token is not accepted: {exc}") from None
    _pin_root(settings, root)
    anchor = Anchor(seq, entry_hash, gen_time, data, token)
    # The table first: an anchor only in the folder means "deleted from the table" to verify_anchors.
    with store.transaction() as session:
        session.add(AuditAnchor(seq=seq, entry_hash=entry_hash, gen_time=gen_time, stamped=data, token=token))
    try:
        folder = _folder(settings)
        _write_new(folder / f"{anchor.name}.data", data)
        _write_new(folder / f"{anchor.name}.tst", token)
    except OSError as exc:
        raise AnchorNotCopied(f"the anchor of entry {seq} is in the database, but no copy went to the anchor folder "
                           f"{anchor_dir(settings)}: {exc}") from None
    return anchor


def scheduled_anchor(store: Store, ca: CAClient, settings: ServiceSettings) -> float:
    """One scheduled anchoring (the background worker's): seconds until the next try. A failure is
    logged and tried again sooner (after JPKI_MAX_RETRY_BACKOFF_SECONDS); the service goes on."""
    try:
        anchor = take_anchor(store, ca, settings, only_if_moved=True)
    except AnchorNotCopied as exc:
        log.warning("audit anchor taken, but not copied: %s", exc)
        return settings.audit_anchor_interval_seconds
    except (AnchorFailed, CAUnavailable, NoTrustedRoot, OSError) as exc:
        retry = min(settings.audit_anchor_interval_seconds, max(settings.max_retry_backoff_seconds, 1.0))
        log.warning("audit anchor not taken, trying again in %.0f s: %s", retry, exc)
        return retry
    except SQLAlchemyError as exc:  # the database away: said in a line, never with its SQL
        retry = min(settings.audit_anchor_interval_seconds, max(settings.max_retry_backoff_seconds, 1.0))
        log.warning("audit anchor not taken, trying again in %.0f s: the database did not answer (%s)", retry,
                    exc.__class__.__name__)
        return retry
    except Exception:
        retry = min(settings.audit_anchor_interval_seconds, max(settings.max_retry_backoff_seconds, 1.0))
        log.exception("audit anchor not taken, trying again in %.0f s", retry)
        return retry
    if anchor is not None:
        log.info("audit anchor taken: entry %d at %s", anchor.seq, anchor.gen_time.isoformat())
    return settings.audit_anchor_interval_seconds


# -- reading and checking anchors ----------------------------------------------------------------
@dataclass
class _Found:
    stamped: bytes
    token: bytes
    where: set[str] = field(default_factory=set)  # "table", "folder"
    row: tuple[int, str] | None = None  # the table row's own seq and hash


def _collect(store: Store, settings: ServiceSettings) -> dict[tuple[bytes, bytes], _Found]:
    """Every anchor of the table and of the folder, by its token and stamped bytes (a copy whose data
    differs from the table's is checked, and fails, on its own)."""
    found: dict[tuple[bytes, bytes], _Found] = {}
    with store.sessions() as session:
        rows = session.execute(select(AuditAnchor.seq, AuditAnchor.entry_hash, AuditAnchor.stamped,
                                      AuditAnchor.token).order_by(AuditAnchor.id)).all()
    for seq, entry_hash, stamped, token in rows:
        item = found.setdefault((bytes(token), bytes(stamped)), _Found(bytes(stamped), bytes(token)))
        item.where.add("table")
        item.row = (seq, entry_hash)
    folder = anchor_dir(settings)
    if folder.is_dir():
        for token_file in sorted(folder.glob("seq-*.tst")):
            data_file = token_file.with_suffix(".data")
            token = token_file.read_bytes()
            stamped = data_file.read_bytes() if data_file.exists() else b""
            found.setdefault((token, stamped), _Found(stamped, token)).where.add("folder")
    return found


@dataclass
class AnchorReport:
    anchors: list[Anchor] = field(default_factory=list)  # the valid ones, oldest entry first
    problems: list[AuditProblem] = field(default_factory=list)
    last_seq: int = 0  # the trail's last entry when checked

    @property
    def latest(self) -> Anchor | None:
        return self.anchors[-1] if self.anchors else None


async def _validate_all(found: Iterable[_Found], root: x509.Certificate, report: AnchorReport) -> None:
    validator = _Validator(root)
    for item in found:
        label = "an anchor of the anchor folder" if item.where == {"folder"} else "an anchor of audit_anchors"
        try:
            seq, entry_hash = _parse_stamped(item.stamped)
        except ValueError as exc:
            report.problems.append(AuditProblem(item.row[0] if item.row else 0, ANCHOR_INVALID,
                                                f"{label} does not hold a stamped {ANCHOR_FORMAT} document: {exc}"))
            continue
        if item.row is not None and item.row != (seq, entry_hash):
            report.problems.append(AuditProblem(item.row[0], ANCHOR_INVALID, (
                f"the audit_anchors row says entry {item.row[0]}, but its token stamps entry {seq}: the row was "
                "edited")))
            continue
        try:
            gen_time = await validator.check(item.token, item.stamped)
        except ValueError as exc:
            report.problems.append(AuditProblem(seq, ANCHOR_INVALID, f"{label} for entry {seq}: {exc}"))
            continue
        anchor = Anchor(seq, entry_hash, gen_time, item.stamped, item.token)
        report.anchors.append(anchor)
        if "table" not in item.where:
            report.problems.append(AuditProblem(seq, ANCHOR_MISSING, (
                f"the anchor of entry {seq} timestamped {gen_time.isoformat()} is in the anchor folder but not in "
                "the database (audit_anchors): it was deleted there")))


def verify_anchors(store: Store, settings: ServiceSettings, ca: CAClient | None = None) -> AnchorReport:
    """Check every anchor, then the trail against them: the trail must reach the latest anchor's
    entry, the head must not be below it, and every anchored entry must still be the one anchored.

    Anchors are read before the trail, so an anchor taken meanwhile cannot look newer than the head.
    Raises :class:`NoTrustedRoot` when anchors exist but there is no root to check them against."""
    report = AnchorReport()
    found = _collect(store, settings)
    if not found:
        return report
    root = trusted_root(settings, ca)
    asyncio.run(_validate_all(found.values(), root, report))
    report.anchors.sort(key=lambda a: (a.seq, a.gen_time))
    with store.sessions() as session:
        head = session.get(AuditHead, HEAD_ID)
        report.last_seq = session.scalar(select(func.max(AuditEntry.seq))) or 0
        anchored_seqs = sorted({a.seq for a in report.anchors})
        hashes: dict[int, str] = {}
        for start in range(0, len(anchored_seqs), 500):
            chunk = anchored_seqs[start:start + 500]
            hashes.update(session.execute(select(AuditEntry.seq, AuditEntry.entry_hash)
                                          .where(AuditEntry.seq.in_(chunk))).tuples().all())
    for anchor in report.anchors:
        stamped_at = anchor.gen_time.isoformat()
        if anchor.seq in hashes and hashes[anchor.seq] != anchor.entry_hash:
            report.problems.append(AuditProblem(anchor.seq, ANCHOR_MISMATCH, (
                f"entry {anchor.seq} is not the entry anchored at {stamped_at} (its hash differs): the trail was "
                f"cut and written on, or rewritten, at or before entry {anchor.seq}")))
    latest = report.latest
    if latest is not None:
        stamped_at = latest.gen_time.isoformat()
        if report.last_seq < latest.seq:
            gone = (f"entry {latest.seq}" if report.last_seq + 1 == latest.seq
                    else f"entries {report.last_seq + 1}-{latest.seq}")
            report.problems.append(AuditProblem(report.last_seq + 1, TAIL_MISSING, (
                f"{gone} gone: the trail ends at entry {report.last_seq}, but the anchor timestamped {stamped_at} "
                f"shows it held entry {latest.seq}")))
        head_seq, head_hash = (head.seq, head.entry_hash) if head is not None else (0, GENESIS_HASH)
        if head_seq < latest.seq or (head_seq == latest.seq and head_hash != latest.entry_hash):
            what = f"names entry {head_seq}" + (" with another hash" if head_seq == latest.seq else "")
            report.problems.append(AuditProblem(latest.seq, HEAD_REWOUND, (
                f"the head {what}, but the anchor timestamped {stamped_at} recorded entry {latest.seq} as the head: "
                "the head was rewound")))
    report.problems.sort(key=lambda p: p.seq)
    return report


# -- export for an external auditor --------------------------------------------------------------
def openssl_command(anchor_file: str, root_file: str = "tsa-root.pem") -> str:
    return (f"openssl ts -verify -data {anchor_file}.data -in {anchor_file}.tst -token_in "
            f"-CAfile {root_file} -untrusted {anchor_file}.tsa.pem")


def export(store: Store, settings: ServiceSettings, out: Path, ca: CAClient | None = None) -> tuple[int, int]:
    """Write the trail and its valid anchors into ``out`` (docs/security.md): ``audit-trail.jsonl``
    (every entry as stored, in order), ``tsa-root.pem``, ``anchors/<name>.data|.tst|.tsa.pem`` and
    ``anchors.jsonl`` (one line per anchor, with the openssl command that checks it). Returns
    (entries, anchors) written. Anchors that do not verify are left out (``audit verify`` names them)."""
    out.mkdir(parents=True, exist_ok=True)
    report = verify_anchors(store, settings, ca) if _collect(store, settings) else AnchorReport()
    entries = 0
    with (out / "audit-trail.jsonl").open("w", encoding="utf-8") as trail, store.sessions() as session:
        statement = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
        for entry in session.scalars(statement):
            trail.write(json.dumps({
                "seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor, "action": entry.action,
                "case_reference": entry.case_reference, "details": entry.details, "prev_hash": entry.prev_hash,
                "entry_hash": entry.entry_hash}, ensure_ascii=False, separators=(",", ":")) + "\n")
            entries += 1
    if report.anchors:
        root = trusted_root(settings, ca)
        (out / "tsa-root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
        folder = out / "anchors"
        folder.mkdir(exist_ok=True)
        with (out / "anchors.jsonl").open("w", encoding="utf-8") as index:
            for anchor in report.anchors:
                (folder / f"{anchor.name}.data").write_bytes(anchor.stamped)
                (folder / f"{anchor.name}.tst").write_bytes(anchor.token)
                (folder / f"{anchor.name}.tsa.pem").write_bytes(b"".join(
                    c.public_bytes(serialization.Encoding.PEM) for c in anchor.tsa_certificates()))
                index.write(json.dumps({
                    "seq": anchor.seq, "entry_hash": anchor.entry_hash, "gen_time": anchor.gen_time.isoformat(),
                    "data": f"anchors/{anchor.name}.data", "token": f"anchors/{anchor.name}.tst",
                    "tsa_certificate": f"anchors/{anchor.name}.tsa.pem",
                    "verify": openssl_command(f"anchors/{anchor.name}")}) + "\n")
    return entries, len(report.anchors)
