"""Believing an OCSP answer only as a careful relying party would (RFC 6960 sections 3.2 and 4.2.2.2).

The service asks the CA's responder about a card or phone certificate before it lets a card prove
anything or a phone log in. :func:`verify_ocsp_answer` is the one judge of such an answer:

- pyhanko-certvalidator (a maintained validator) checks that the answer is about this very
  certificate (CertID: issuer name hash, issuer key hash and serial), that its signature verifies,
  that the signer is authorised (the issuing CA itself, or a responder certificate the issuing CA
  issued with id-kp-OCSPSigning), and that it is within its window: thisUpdate not in the future
  beyond the clock skew, nextUpdate not passed;
- on top of that, policies pyhanko does not have in its live-validation mode: the answer is no older
  than ``max_age`` (a genuine but replayed answer stays within its nextUpdate for hours), and it
  echoes the random nonce of the request that asked it (RFC 8954), so it was made for this question.

Anything else raises :class:`OCSPAnswerRefused`: the status is then unknown, never "good".
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.authority import CertTrustAnchor
from pyhanko_certvalidator.errors import OCSPValidationError, OCSPValidationIndeterminateError, RevokedError
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.revinfo.validate_ocsp import verify_ocsp_response

from jpki_service.common.settings import ServiceSettings

NONCE_BYTES = 32  # RFC 8954: at most 32 octets; the longest is the hardest to guess


class OCSPAnswerRefused(Exception):
    """An OCSP answer the service does not believe: forged, replayed, stale, about another
    certificate, or not answering our request. The certificate's status could not be verified."""


@dataclass(frozen=True)
class OCSPFreshness:
    """How recent an answer must be (``JPKI_OCSP_MAX_AGE_SECONDS``, ``JPKI_OCSP_CLOCK_SKEW_SECONDS``)."""

    max_age: dt.timedelta
    clock_skew: dt.timedelta

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OCSPFreshness:
        return cls(dt.timedelta(seconds=settings.ocsp_max_age_seconds),
                   dt.timedelta(seconds=settings.ocsp_clock_skew_seconds))


@dataclass(frozen=True)
class OCSPQuestion:
    """One request of ours: its DER and the nonce the answer must echo."""

    der: bytes
    nonce: bytes


def ocsp_question(certificate: x509.Certificate, issuer: x509.Certificate) -> OCSPQuestion:
    """A request for ``certificate``'s status, carrying a fresh random nonce."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    request = (ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256())
               .add_extension(x509.OCSPNonce(nonce), critical=False).build())
    return OCSPQuestion(request.public_bytes(serialization.Encoding.DER), nonce)


def verify_ocsp_answer(answer_der: bytes, question: OCSPQuestion, certificate: x509.Certificate,
                       issuer: x509.Certificate, freshness: OCSPFreshness,
                       now: dt.datetime | None = None) -> ocsp.OCSPResponse:
    """The answer, parsed, once it has passed every check (module docstring); its single response is
    about ``certificate``. Raises :class:`OCSPAnswerRefused` with the reason otherwise.

    Synchronous: call it from a worker thread, never from inside a running event loop.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        answer = ocsp.load_der_ocsp_response(answer_der)
    except ValueError:
        raise OCSPAnswerRefused("the OCSP answer is not an OCSP response") from None
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPAnswerRefused(f"the OCSP responder answered {answer.response_status.name}")
    try:
        this_update = answer.this_update_utc  # raises ValueError when the answer holds several responses
    except ValueError:
        raise OCSPAnswerRefused("the OCSP answer holds more than the one response we asked for") from None
    _check_nonce(answer, question.nonce)
    _check_with_certvalidator(answer_der, certificate, issuer, freshness.clock_skew, now)
    if now - this_update > freshness.max_age:
        raise OCSPAnswerRefused(f"the OCSP answer was made at {this_update.isoformat()}, more than "
                                f"{int(freshness.max_age.total_seconds())} s ago")
    return answer


def _check_nonce(answer: ocsp.OCSPResponse, nonce: bytes) -> None:
    try:
        echoed = answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        raise OCSPAnswerRefused("the OCSP answer carries no nonce: it was not made for our request") from None
    if not hmac.compare_digest(echoed, nonce):
        raise OCSPAnswerRefused("the OCSP answer's nonce is not our request's: "
                                "it was made for another request")


def _check_with_certvalidator(answer_der: bytes, certificate: x509.Certificate, issuer: x509.Certificate,
                              clock_skew: dt.timedelta, now: dt.datetime) -> None:
    """CertID, signature, responder authorisation and the thisUpdate/nextUpdate window, by pyhanko."""
    leaf = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    issuing_ca = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    # The callers have already chained the issuing CA to the root: it is the anchor here. A delegated
    # responder without id-pkix-ocsp-nocheck would need its own revocation status; we have none to
    # give (no fetching), so such a responder is refused rather than trusted unchecked.
    policy = CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
    ))
    context = ValidationContext(trust_roots=[issuing_ca], ocsps=[answer_der], allow_fetching=False,
                                moment=now, time_tolerance=clock_skew, revinfo_policy=policy)
    path = ValidationPath(trust_anchor=CertTrustAnchor(issuing_ca), interm=[], leaf=leaf)
    try:
        asyncio.run(verify_ocsp_response(leaf, path, context))
    except RevokedError:
        return  # verified, and it says revoked or held: the caller reads the status from the answer
    except OCSPValidationIndeterminateError as exc:
        if exc.failures:
            # pyhanko_certvalidator annotates ``failures`` as list[str]; it gathers (message, revinfo) pairs.
            pairs: list[tuple[str, object]] = exc.failures  # type: ignore[assignment]  # pairs, not str
            raise OCSPAnswerRefused("the OCSP answer does not verify: "
                                    + "; ".join(message for message, *_ in pairs)) from None
        # Every check passed and the status is neither good nor revoked before ``now``: "unknown", or a
        # revocation time a little ahead of our clock. The caller reads the status from the answer.
    except OCSPValidationError as exc:  # OCSPNoMatchesError: not about this certificate of this issuer
        raise OCSPAnswerRefused(f"the OCSP answer is not about this certificate: {exc}") from None
