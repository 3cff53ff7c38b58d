"""PAdES signing with the phone signature key, and verification, through pyHanko.

The key never leaves the secure element: :class:`SecureElementSigner` hands pyHanko the raw
signature the SE makes. pyHanko first calls it with ``dry_run=True`` only to size the
signature; that call answers placeholder bytes and does not ask for the password. It then
checks the certificate (chain to the CA's root, OCSP/CRL in hard-fail mode) and refuses to sign
with a held or revoked certificate before asking for the password at all; only then is the
password asked for, once, and the SE signs.

Signatures are PAdES (``ETSI.CAdES.detached``) with the revocation information fetched at signing
time embedded (DSS). With a timestamper (an RFC 3161 TSA: by default the CA's own, at the CA's
``/tsa``, see :func:`ca_tsa_url`) that makes PAdES B-LT; without one, it is B-B plus validation
information.

Verification judges each signature against the CA's root in hard-fail mode (OCSP first, CRL if
OCSP does not say good), first at the current time: intact, trusted, not revoked or held *now*.
A signature whose signer certificate is revoked (or held) now may still be valid, but only by
the long-term rule of :func:`_judge_at_timestamp`: its signature timestamp, validated against the
trusted root, proves the signature existed at a time before the revocation, and the revocation
information embedded at signing time shows the certificate good at that time. The time comes
from the TSA's token only, never from the signing time the signer claims.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import httpx
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper, TimestampRequestError
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app_client.errors import AppError
from app_client.messages import _
from app_client.secure_element import KeySlot, SecureElement

TSA_TIMEOUT_SECONDS = 30
# Judging "now": pyHanko fixes "now" when the context is made, and refuses revocation information made
# more than its tolerance (1 s by default) later; the OCSP answers and CRLs are fetched during the
# validation, which takes longer than that on a slow network or a busy machine.
FETCH_TOLERANCE = timedelta(seconds=60)

OID_JPKI_NAME = "1.2.392.200149.8.5.5.1"  # the holder's name in a JPKI signature certificate's SAN
_MAX_AIA_HOPS = 4


# -- trust anchors ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trust:
    """The root to judge against, helper CA certificates, and where the root came from."""

    root: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    source: str

    @classmethod
    def from_pems(cls, root_pem: str, intermediate_pems: Sequence[str], source: str) -> Trust:
        return cls(load_certificate(root_pem.encode()),
                   tuple(load_certificate(p.encode()) for p in intermediate_pems), source)

    def describe(self) -> str:
        fingerprint = hashlib.sha256(self.root.public_bytes(serialization.Encoding.DER)).hexdigest()
        return _("{subject} ({source}; SHA-256 {fingerprint})").format(
            subject=self.root.subject.rfc4514_string(), source=self.source, fingerprint=fingerprint)

    def validation_context(self, extra_roots: Sequence[x509.Certificate] = ()) -> ValidationContext:
        """For judging at the current time: revocation information fetched now, hard-fail."""
        return ValidationContext(trust_roots=[_asn1(c) for c in (self.root, *extra_roots)],
                                 other_certs=[_asn1(c) for c in self.intermediates],
                                 allow_fetching=True, revocation_mode="hard-fail",
                                 time_tolerance=FETCH_TOLERANCE)

    def validation_context_at(self, moment: datetime, dss: DocumentSecurityStore) -> ValidationContext:
        """For judging at ``moment`` in the past: only the certificates, OCSP responses and CRLs
        embedded in the document (DSS), nothing fetched, hard-fail. pyHanko accepts a piece of
        revocation information only if ``moment`` lies in its thisUpdate..nextUpdate window."""
        return dss.as_validation_context({
            "trust_roots": [_asn1(self.root)], "other_certs": [_asn1(c) for c in self.intermediates],
            "moment": moment, "allow_fetching": False, "revocation_mode": "hard-fail",
        })


def trust_from_aia(certificate: x509.Certificate) -> Trust:
    """Follow caIssuers URLs from ``certificate`` up to a self-signed root.

    A root found this way is named by the certificate under judgement, so it proves nothing by
    itself: the source and fingerprint are reported so the user can compare them.
    """
    intermediates: list[x509.Certificate] = []
    current = certificate
    for _hop in range(_MAX_AIA_HOPS):
        url = _ca_issuers_url(current)
        issuer = _fetch_certificate(url)
        if issuer.subject == issuer.issuer:
            return Trust(issuer, tuple(intermediates),
                         _("fetched from {url}, named in the certificate itself: not pinned").format(url=url))
        intermediates.append(issuer)
        current = issuer
    raise AppError(_("no self-signed root within {n} caIssuers hops; give the root with --root").format(
        n=_MAX_AIA_HOPS))


def _ca_issuers_url(certificate: x509.Certificate) -> str:
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        aia = x509.AuthorityInformationAccess([])
    for description in aia:
        if description.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS:
            return str(description.access_location.value)
    raise AppError(_("certificate {serial} names no caIssuers URL; give the root with --root").format(
        serial=format(certificate.serial_number, "x")))


def ca_tsa_url(certificate: x509.Certificate) -> str:
    """The time-stamping authority of the CA that issued ``certificate``: ``<CA public URL>/tsa``.

    The mock CA serves everything under one public URL (ca_mock/urls.py): OCSP at ``<base>/ocsp``
    and CA certificates at ``<base>/ca/NAME.cer``, so the base is found from the OCSP URL in the
    certificate's AIA, else from its caIssuers URL.
    """
    try:
        aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        aia = x509.AuthorityInformationAccess([])
    bases = []
    for method, pattern in ((x509.AuthorityInformationAccessOID.OCSP, r"^(https?://.+?)/ocsp/?$"),
                            (x509.AuthorityInformationAccessOID.CA_ISSUERS, r"^(https?://.+?)/ca/[^/]+\.cer$")):
        for description in aia:
            if description.access_method == method:
                match = re.match(pattern, str(description.access_location.value))
                if match:
                    bases.append(match.group(1))
    if not bases:
        raise AppError(_("cannot tell the CA's time-stamping authority from certificate {serial}; give it with "
                         "--tsa-url (or sign without a timestamp: --no-timestamp)").format(
            serial=format(certificate.serial_number, "x")))
    return f"{bases[0]}/tsa"


def _fetch_certificate(url: str) -> x509.Certificate:
    try:
        response = httpx.get(url, timeout=10, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise AppError(_("cannot fetch the CA certificate at {url}: {reason}").format(url=url, reason=exc)) from None
    return load_certificate(response.content)


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise AppError(_("not an X.509 certificate: {reason}").format(reason=exc)) from None


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    # pyHanko wants asn1crypto certificates (LIBRARY_NOTES): cryptography objects fail deep inside.
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


# -- signing ------------------------------------------------------------------------------------

class SecureElementSigner(signers.Signer):
    """A pyHanko signer whose private key stays in the secure element."""

    def __init__(self, se: SecureElement, password: Callable[[], str], signing_cert: x509.Certificate,
                 chain: Sequence[x509.Certificate]) -> None:
        super().__init__(signing_cert=_asn1(signing_cert),
                         cert_registry=SimpleCertificateStore.from_certs([_asn1(c) for c in chain]))
        self._se = se
        self._password = password

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:  # sizing only: no password, no use of the key
            return bytes(self._se.signature_size(KeySlot.SIGNATURE))
        if digest_algorithm != "sha256":
            raise SigningError(_("the secure element signs with SHA-256 only, not {algorithm}").format(
                algorithm=digest_algorithm))
        return self._se.sign(KeySlot.SIGNATURE, self._password(), data)


@dataclass(frozen=True)
class SignedPdf:
    target: Path
    field_name: str
    serial: str
    level: str
    tsa: str | None = None  # where the signature timestamp came from (a URL), if there is one


def sign_pdf(se: SecureElement, password: Callable[[], str], source: Path, target: Path, trust: Trust,
             timestamper: TimeStamper | None = None, tsa_roots: Sequence[x509.Certificate] = ()) -> SignedPdf:
    """Sign ``source`` into ``target`` with the SE's phone signature key and certificate.

    ``password`` is called once, only when the signature is really made (never for a refused
    certificate). With a ``timestamper`` the signature gets an RFC 3161 signature timestamp
    (PAdES B-LT); the CA's own TSA chains to ``trust.root``, another TSA needs its root in
    ``tsa_roots`` so that its validation information can be collected and embedded.
    """
    certificate_pem = se.certificate_pem(KeySlot.SIGNATURE)
    if certificate_pem is None:
        raise AppError(_("the secure element holds no phone signature certificate yet (run status to fetch it)"))
    certificate = load_certificate(certificate_pem.encode())
    source_bytes = _read(source)
    field_name = f"JPKI-Signature-{len(_signature_fields(source_bytes)) + 1}"
    signer = SecureElementSigner(se, password, certificate, (*trust.intermediates, trust.root))
    output = asyncio.run(_sign(source_bytes, signer, field_name, trust, timestamper, tsa_roots))
    target.write_bytes(output)
    level = "PAdES B-LT" if timestamper else _("PAdES B-B with validation information (no signature timestamp)")
    tsa = getattr(timestamper, "url", type(timestamper).__name__) if timestamper else None
    return SignedPdf(target, field_name, format(certificate.serial_number, "x"), level, tsa)


async def _sign(source: bytes, signer: SecureElementSigner, field_name: str, trust: Trust,
                timestamper: TimeStamper | None, tsa_roots: Sequence[x509.Certificate]) -> bytes:
    vc = trust.validation_context(tsa_roots)
    try:
        metadata = signers.PdfSignatureMetadata(
            field_name=field_name, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=True, validation_context=vc,
        )
        writer = IncrementalPdfFileWriter(io.BytesIO(source))
        signed = await signers.async_sign_pdf(writer, metadata, signer=signer, timestamper=timestamper)
        return signed.getvalue()
    except SigningError as exc:
        raise AppError(_refusal(exc)) from None
    except TimestampRequestError as exc:
        url = getattr(timestamper, "url", None) or _("the timestamp authority")
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise AppError(_("no signature timestamp from {url}: {reason}").format(url=url, reason=f"{exc}{cause}")) \
            from None
    finally:
        await vc.aclose()


def _refusal(exc: SigningError) -> str:
    cause = exc.__cause__
    if isinstance(cause, AppError):  # e.g. a wrong password, raised by the SE inside pyHanko
        return str(cause)
    if isinstance(cause, RevokedError):
        reason = cause.reason.native if cause.reason is not None else "unspecified"
        if reason == "certificate_hold":
            return _("signing refused: the phone signature certificate is suspended (certificateHold)")
        return _("signing refused: the phone signature certificate is revoked ({reason})").format(reason=reason)
    return _("signing refused: {reason}").format(reason=cause or exc)


def http_timestamper(url: str) -> TimeStamper:
    """An RFC 3161 TSA over HTTP, for PAdES B-LT (pyHanko's default wait, 5 s, was too short for a CA
    answering its first timestamp request on a busy machine)."""
    return HTTPTimeStamper(url, timeout=TSA_TIMEOUT_SECONDS)


# -- verifying ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignatureVerdict:
    field_name: str
    valid: bool
    summary: str  # one line: why valid, or why not
    serial: str | None
    signer_name: str | None
    signed_at: datetime | None  # as the signer reported it (not proof)
    timestamp: datetime | None  # from the TSA, when there is one (trusted or not: see timestamp_trusted)
    trust: str
    timestamp_trusted: bool = False  # the token is intact and its TSA chains to a trusted root now
    judged_at: datetime | None = None  # None: judged at the current time; else at this validated timestamp


@dataclass(frozen=True)
class Verdict:
    signatures: tuple[SignatureVerdict, ...]

    @property
    def valid(self) -> bool:
        return bool(self.signatures) and all(s.valid for s in self.signatures)


def verify_pdf(source: Path, trust: Trust | None = None, tsa_roots: Sequence[x509.Certificate] = ()) -> Verdict:
    """Judge every signature in ``source``; without ``trust``, the root comes from caIssuers (see trust_from_aia)."""
    return asyncio.run(_verify(_read(source), trust, tsa_roots))


async def _verify(source: bytes, trust: Trust | None, tsa_roots: Sequence[x509.Certificate]) -> Verdict:
    reader = PdfFileReader(io.BytesIO(source))
    verdicts = []
    for embedded in reader.embedded_signatures:
        signer_cert = x509.load_der_x509_certificate(embedded.signer_cert.dump())
        judge = trust or trust_from_aia(signer_cert)
        vc = judge.validation_context()
        ts_vc = judge.validation_context(tsa_roots)
        try:
            status = await async_validate_pdf_signature(embedded, signer_validation_context=vc,
                                                        ts_validation_context=ts_vc)
            valid, summary, judged_at = status.bottom_line, _summary(status), None
            if not valid and status.intact and status.valid and status.revoked:
                valid, summary, judged_at = await _judge_at_timestamp(embedded, reader, judge, ts_vc, status)
        finally:
            await vc.aclose()
            await ts_vc.aclose()
        ts = status.timestamp_validity
        verdicts.append(SignatureVerdict(
            field_name=embedded.field_name, valid=valid, summary=summary,
            serial=format(signer_cert.serial_number, "x"), signer_name=_holder_name(signer_cert),
            signed_at=status.signer_reported_dt, timestamp=ts.timestamp if ts is not None else None,
            trust=judge.describe(), timestamp_trusted=_trusted_timestamp(status) is not None, judged_at=judged_at,
        ))
    return Verdict(tuple(verdicts))


def _trusted_timestamp(status) -> datetime | None:
    """The signature timestamp's time, if pyHanko validated the token: its imprint matches this
    signature's value, its signature verifies, and its TSA certificate chains to a trusted root
    now (hard-fail revocation check). Never the signing time the signer claims."""
    ts = status.timestamp_validity
    if ts is not None and ts.intact and ts.valid and ts.trusted:
        return ts.timestamp
    return None


async def _judge_at_timestamp(embedded, reader: PdfFileReader, judge: Trust, ts_vc: ValidationContext,
                              now) -> tuple[bool, str, datetime | None]:
    """Long-term validation of a signature whose signer certificate is revoked (or held) now.

    Valid only if all of these hold:

    1. the revoked certificate is the signer's own, not a CA's above it;
    2. the signature carries a trusted timestamp (:func:`_trusted_timestamp`) at time T;
    3. the revocation date, from the revocation information fetched *now* (hard-fail, the same
       judgement that found the certificate revoked), is after T: the CA itself says the
       certificate was not revoked at T. This is what defeats a replayed "good" OCSP response
       from before the revocation, which step 4 alone would accept. If the CA's current CRL
       gives the entry an invalidity date (RFC 5280 5.3.2: the key known or suspected
       compromised since), that must be after T too; pyHanko does not read it, so it is read
       here from the CRL, whose signature is checked against the signer certificate's issuer;
    4. pyHanko validates the signature again at moment T (``ValidationContext(moment=T)``) with
       only the certificates, OCSP responses and CRLs embedded in the document (DSS), nothing
       fetched, hard-fail: the chain is valid at T and the revocation information from signing
       time shows the certificate good at T.
    """
    revoked_now = _summary(now)
    details = now.revocation_details
    if details.ca_revoked:
        return False, revoked_now, None
    moment = _trusted_timestamp(now)
    if moment is None:
        return False, _("{verdict}; no trusted signature timestamp shows it was signed before").format(
            verdict=revoked_now), None
    if details.revocation_date <= moment:
        return False, _("{verdict}; its signature timestamp {moment} is not earlier").format(
            verdict=revoked_now, moment=moment.isoformat()), None
    signer_cert = x509.load_der_x509_certificate(embedded.signer_cert.dump())
    try:
        invalid_since = _invalidity_date(signer_cert, _issuer_candidates(judge, embedded))
    except AppError as exc:
        return False, _("{verdict}; {reason}").format(verdict=revoked_now, reason=exc), None
    if invalid_since is not None and invalid_since <= moment:
        return False, _("{verdict}, with the key compromised or invalid since {since} (CRL invalidity date); its "
                        "signature timestamp {moment} is not earlier").format(
            verdict=revoked_now, since=invalid_since.isoformat(), moment=moment.isoformat()), None
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return False, _("{verdict}; its signature timestamp {moment} is earlier, but the document carries no "
                        "revocation information from signing time (DSS) to show the certificate good then").format(
            verdict=revoked_now, moment=moment.isoformat()), None
    vc_then = judge.validation_context_at(moment, dss)
    try:
        then = await async_validate_pdf_signature(embedded, signer_validation_context=vc_then,
                                                  ts_validation_context=ts_vc)
    finally:
        await vc_then.aclose()
    if not then.bottom_line:
        return False, _("{verdict}; at its signature timestamp {moment} it does not validate either: {problem}").format(
            verdict=revoked_now, moment=moment.isoformat(), problem=_problem(then)), None
    later = (_("VALID at its timestamp {moment}: intact, chains to the trusted root, certificate good then (revocation "
               "information embedded at signing, hard-fail); the certificate was suspended later ({date}, {reason})")
             if _reason(details) == "certificate_hold" else
             _("VALID at its timestamp {moment}: intact, chains to the trusted root, certificate good then (revocation "
               "information embedded at signing, hard-fail); the certificate was revoked later ({date}, {reason})"))
    return True, later.format(moment=moment.isoformat(), date=details.revocation_date.isoformat(),
                              reason=_reason_text(details)), moment


def _issuer_candidates(judge: Trust, embedded) -> list[x509.Certificate]:
    candidates = [*judge.intermediates, judge.root]
    candidates += [x509.load_der_x509_certificate(c.dump()) for c in embedded.other_embedded_certs]
    return candidates


def _invalidity_date(certificate: x509.Certificate, candidates: Sequence[x509.Certificate]) -> datetime | None:
    """The invalidity date of ``certificate``'s entry in its issuer's current CRL, if it has one.

    Raises AppError when that cannot be told: no issuer certificate, no CRL, a CRL that is not
    the issuer's or not correctly signed by it, or no entry for a certificate found revoked.
    """
    issuer = next((c for c in candidates if c.subject == certificate.issuer and _issued_by(certificate, c)), None)
    if issuer is None:
        raise AppError(_("the issuer certificate is not at hand, so the CRL's invalidity date cannot be checked"))
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        raise AppError(_("the certificate names no CRL, so an invalidity date cannot be checked")) from None
    urls = [str(name.value) for point in points for name in (point.full_name or ())
            if isinstance(name, x509.UniformResourceIdentifier)]
    # ``_issued_by`` verified the certificate's signature with this key: it is a signing key.
    issuer_key = cast(CertificateIssuerPublicKeyTypes, issuer.public_key())
    for url in urls:
        try:
            response = httpx.get(url, timeout=10, follow_redirects=True)
            response.raise_for_status()
            crl = x509.load_der_x509_crl(response.content)
        except (httpx.HTTPError, ValueError):
            continue
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer_key):
            continue
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is None:
            raise AppError(_("the CRL at {url} does not list the revoked certificate yet; try again shortly").format(
                url=url))
        try:
            return entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
        except x509.ExtensionNotFound:
            return None
    raise AppError(_("no CRL signed by the issuer could be fetched from {urls} to check an invalidity date").format(
        urls=", ".join(urls) or _("the certificate")))


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _reason(details) -> str:
    return details.revocation_reason.native if details.revocation_reason is not None else "unspecified"


def _reason_text(details) -> str:
    reason = _reason(details)
    return "certificateHold" if reason == "certificate_hold" else reason


def _summary(status) -> str:  # a pyhanko PdfSignatureStatus
    """One line: VALID and why, or INVALID and the first problem (:func:`_problem`)."""
    problem = _problem(status)
    if problem is not None:
        return _("INVALID: {problem}").format(problem=problem)
    return _("VALID: intact, chains to the trusted root, certificate good now (hard-fail revocation check)")


def _problem(status) -> str | None:  # a pyhanko PdfSignatureStatus
    """Why the signature is invalid (None: it is valid), the first of its problems."""
    if not status.intact:
        return _("the signed content was altered after signing")
    if not status.valid:
        return _("the signature value does not verify with the signer's certificate")
    if status.revoked:
        details = status.revocation_details
        reason = _reason(details)
        word = (_("SUSPENDED (certificateHold)") if reason == "certificate_hold"
                else _("REVOKED ({reason})").format(reason=reason))
        whose = _("a CA certificate above the signer's") if details.ca_revoked else _("the signer's certificate")
        return _("{whose} is {state} since {date}").format(whose=whose, state=word,
                                                           date=details.revocation_date.isoformat())
    if not status.trusted:
        return _("the signer's certificate could not be validated: {reason}").format(reason=status.trust_problem_indic)
    ts = status.timestamp_validity
    if ts is not None and not (ts.intact and ts.valid and ts.trusted):
        return _("the signature timestamp is not trusted (give its TSA root with --tsa-root)")
    if not status.bottom_line:
        return _("the document was modified after signing in a way not allowed ({level})").format(
            level=status.modification_level)
    return None


def _holder_name(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for other in names.get_values_for_type(x509.OtherName):
        if other.type_id.dotted_string == OID_JPKI_NAME:
            return str(asn1_core.UTF8String.load(other.value).native)
    return None


def _signature_fields(source: bytes) -> list:
    return list(fields.enumerate_sig_fields(PdfFileReader(io.BytesIO(source))))


def _read(source: Path) -> bytes:
    try:
        data = source.read_bytes()
        PdfFileReader(io.BytesIO(data))
    except OSError as exc:
        raise AppError(_("cannot read {path}: {reason}").format(path=source, reason=exc.strerror)) from None
    except (PdfError, ValueError) as exc:
        raise AppError(_("{source} is not a readable PDF: {reason}").format(source=source, reason=exc)) from None
    return data
