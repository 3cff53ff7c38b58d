"""What the PDF tests share: a one-page document, a phone whose SE signature key the CA certified
(issued straight from the SE's CSR: the lifecycle service's part is not what those tests are about),
a password provider that counts how often pyHanko's signer really asked, and pyHanko's own two
judges of a signed PDF (:func:`pyhanko_now`, :func:`pyhanko_ltv`), independent of the app's verifier."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.ades import AdESPassed, simulate_future_ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from app_client import flows
from app_client.app_data import AppState
from app_client.secure_element import KeySlot
from ca_mock.cards.service import issue_card
from ca_mock.certificates.schemas import IssueRequest, PersonIn
from ca_mock.certificates.service import issue_certificate
from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN
from tests.helpers import PERSON

REGISTRATION = "0123456789abcdef0123456789abcdef"


class PasswordAsked:
    """The password provider, counting how often pyHanko's signer really asked for it."""

    def __init__(self, password: str = PHONE_PASSWORD) -> None:
        self.password, self.calls = password, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.password


def one_page_pdf() -> bytes:
    """A one-page PDF whose page shows the word "contract" (once: tests alter it to tamper)."""
    writer = PdfFileWriter()
    content = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 12 Tf 20 20 Td (contract) Tj ET"))
    writer.insert_page(PageObject(content, (0, 0, 200, 100)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "contract.pdf"
    path.write_bytes(one_page_pdf())
    return path


@pytest.fixture
def phone(ca_server, tmp_path: Path) -> flows.Phone:
    """A registered phone: its SE key certified by the CA, the CA chain pinned from the card."""
    store, settings = ca_server.store, ca_server.settings
    card = issue_card(store, settings, PersonIn(**PERSON), CARD_PASSWORD, CARD_PIN)
    phone = flows.open_phone(tmp_path / "phone", "http://127.0.0.1:9")
    enrolment = phone.se.enrol(PHONE_PASSWORD, PHONE_PIN)
    issued = issue_certificate(store, settings, IssueRequest(
        operation_id="phone-signature", profile="phone-signature", csr_pem=enrolment.signature_csr_pem,
        person=PersonIn(**PERSON), card_serial=card["signature"]["serial"],
    ))
    phone.se.bind(REGISTRATION)
    phone.se.store_certificate(KeySlot.SIGNATURE, issued["certificate_pem"])
    phone.app_data.save(AppState(registration_id=REGISTRATION, ca_chain=card["chain"]))
    return phone


# -- pyHanko's own judges ---------------------------------------------------------------------------
# Both trust the CA's root alone (no intermediates handed over) and judge in hard-fail mode: a
# declared source of revocation information that cannot be used fails the validation.

def _root(root: bytes | str) -> asn1_x509.Certificate:
    """The trust anchor, from DER or PEM (pyHanko wants asn1crypto certificates: LIBRARY_NOTES)."""
    data = root.encode() if isinstance(root, str) else root
    return asn1_x509.Certificate.load(asn1_pem.unarmor(data)[2] if asn1_pem.detect(data) else data)


def _only_signature(pdf: bytes | Path):
    reader = PdfFileReader(io.BytesIO(pdf.read_bytes() if isinstance(pdf, Path) else pdf))
    (embedded,) = reader.embedded_signatures
    return embedded


def validation_context_now(root: bytes | str) -> ValidationContext:
    """The root alone, revocation information fetched now from the URLs in the certificates, hard-fail."""
    return ValidationContext(trust_roots=[_root(root)], allow_fetching=True, revocation_mode="hard-fail")


async def _now(pdf: bytes | Path, root: bytes | str) -> PdfSignatureStatus:
    vc, ts_vc = validation_context_now(root), validation_context_now(root)
    try:
        return await async_validate_pdf_signature(_only_signature(pdf), signer_validation_context=vc,
                                                  ts_validation_context=ts_vc)
    finally:
        await vc.aclose()
        await ts_vc.aclose()


def pyhanko_now(pdf: bytes | Path, root: bytes | str) -> PdfSignatureStatus:
    """pyHanko's verdict at the current time: its certificate status as the CA answers it *now*
    (``bottom_line``; ``revoked`` and ``revocation_details`` for a revoked or held certificate)."""
    return asyncio.run(_now(pdf, root))


@dataclass(frozen=True)
class LtvJudgement:
    """pyHanko's PAdES long-term validation result (ETSI EN 319 102-1 indication and sub-indication)."""

    passed: bool
    indication: str  # e.g. "OK", "HASH_FAILURE", "SIG_CONSTRAINTS_FAILURE", "NO_POE"
    failure: str | None  # pyHanko's failure message, if any
    best_signature_time: dt.datetime | None  # the earliest time the signature is proven to exist
    timestamp_passed: bool  # the signature timestamp validated (its TSA chains to the root)
    problems: str  # what pyHanko logged on the way (its errors' own words), one per line

    def explain(self) -> str:
        return f"{self.indication}: {self.failure}\n{self.problems}"


class _Problems(logging.Handler):
    """pyHanko keeps the reason behind an AdES sub-indication (e.g. which certificate had no
    revocation information) out of the result and logs it as a warning: collect those."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(str(record.exc_info[1]))


async def _ltv(pdf: bytes | Path, root: bytes | str, validation_time: dt.datetime | None) -> LtvJudgement:
    spec = PdfSignatureValidationSpec(SignatureValidationSpec(
        cert_validation_policy=CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build(trust_roots=[_root(root)]),
            revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy.from_legacy("hard-fail")),
        ),
        # allow_fetching=False: only the certificates, OCSP responses and CRLs in the document.
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY,
            certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH,
        ),
    ))
    now = dt.datetime.now(dt.UTC)
    problems, logger = _Problems(), logging.getLogger("pyhanko")
    logger.addHandler(problems)
    try:
        result = await simulate_future_ades_lta_validation(
            _only_signature(pdf), spec, future_validation_time=validation_time or now, current_reference_time=now)
    finally:
        logger.removeHandler(problems)
    ts = result.signature_timestamp_status
    return LtvJudgement(
        passed=result.ades_subindic is AdESPassed.OK, indication=result.ades_subindic.name,
        failure=result.failure_msg, best_signature_time=result.best_signature_time,
        timestamp_passed=ts is not None and ts.ades_subindic is AdESPassed.OK, problems="\n".join(problems.lines),
    )


def pyhanko_ltv(pdf: bytes | Path, root: bytes | str, validation_time: dt.datetime | None = None) -> LtvJudgement:
    """pyHanko's long-term validation of a PAdES B-LT signature, with the revocation information
    embedded in the document alone (nothing fetched: the CA's current answers do not count).

    pyHanko 0.38 has no ``validate_pdf_ltv_signature`` (nor ``RevocationInfoValidationType``) any
    more; its AdES LTA validation (``ades_lta_validation``) replaces it. Run plainly on a B-LT
    document (no document timestamp) it answers NO_POE even for a good signature: nothing in the
    document proves that the certificates and revocation answers existed before validation time.
    ``simulate_future_ades_lta_validation`` (pyHanko's own, marked experimental) grants proof of
    existence *now* for everything the document holds (what the verifier has in hand exists now),
    then runs the same algorithm, fetching nothing, at ``validation_time`` (default: now). The
    AdES indication says why a signature fails; the reason behind it (e.g. which certificate had no
    revocation information) pyHanko only logs, so ``problems`` collects it. The signature's time
    then comes from its signature timestamp (``best_signature_time``) and the signer's status from
    the OCSP responses and CRLs embedded at signing.
    """
    return asyncio.run(_ltv(pdf, root, validation_time))
