"""The adapter to the certification authority: its HTTP API (bearer) and its public OCSP/CRL.

The only place the service talks to the CA. Two kinds of failure, kept apart because the
outbox treats them differently: :class:`CAUnavailable` (try again later: the CA, our credential or
the way to it is the trouble, whatever the request) and :class:`CARefused` (the CA refused this very
request with a problem document: retrying it will not help).
"""
from __future__ import annotations

import datetime as dt
import functools
import ssl
from dataclasses import dataclass
from typing import Any, cast

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from jpki_common.problems import PROBLEM_MEDIA_TYPE
from jpki_service.adapters.ocsp_verification import OCSPFreshness, ocsp_question, verify_ocsp_answer
from jpki_service.common.settings import ServiceSettings


class CAUnavailable(Exception):
    """Try again later: the CA could not be reached, timed out, failed (5xx), asked us to slow down (429)
    or did not accept our credential (401, 403). The answer says nothing about the request itself."""


class CAMisconfigured(CAUnavailable):
    """The CA answered, but not as to a service it knows: our credential was refused (401, 403) or
    JPKI_CA_URL is not the CA's API. Retried like any unavailability (a rotated token is fixed by a
    restart with the new one), but ``jpki-service serve`` refuses to start on it."""


class CARefused(Exception):
    """The CA refused this very request (400, 404, 409, 422... with a problem document): retrying the
    same request will not help."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"CA refused ({status}): {problem.get('detail', problem)}")
        self.status, self.problem = status, problem


# Answers that say nothing about the request itself: the CA, our credential or the path to it is the
# trouble, so the request is tried again later (docs/ca.md, "Rotating the API token").
_TRY_AGAIN_LATER = {
    401: "the CA refused our credential (401): check JPKI_CA_TOKEN",
    403: "the CA does not let our credential do this (403): check that JPKI_CA_TOKEN is the CA's service token",
    408: "the CA timed out waiting for our request (408)",
    429: "the CA asks us to slow down (429)",
}
_NEVER_ISSUED_SERIAL = "0"  # serials are positive (RFC 5280, 4.1.2.2): 0 names no certificate

# uvicorn closes a connection idle for 5 s (its timeout_keep_alive); a client that keeps one as long
# races that close and reads "Connection reset by peer" on its next request. Drop idle ones sooner.
_IDLE_CONNECTION_SECONDS = 2.0


class _OnceMoreOnBrokenConnection(httpx.HTTPTransport):
    """Send a request a second time, on a new connection, when the first one broke under it (reset,
    closed mid-answer). Safe for every request the service makes to the CA: reads, OCSP questions and
    commands that carry an operation id the CA answers the same way twice. A timeout is not retried
    here: the caller's queue decides when to try again."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            return super().handle_request(request)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context (the CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), made once per process:
    each client that makes its own reads the bundle again, ~40 ms of CPU, four times at every start."""
    return httpx.create_ssl_context()


def _http_client(timeout: float, **kwargs: Any) -> httpx.Client:
    limits = httpx.Limits(keepalive_expiry=_IDLE_CONNECTION_SECONDS)
    transport = _OnceMoreOnBrokenConnection(limits=limits, verify=_tls_context())
    return httpx.Client(timeout=timeout, transport=transport, **kwargs)


def _json_or_text(response: httpx.Response) -> dict[str, Any]:
    try:
        problem = response.json()
    except ValueError:
        return {"detail": response.text[:200]}
    return problem if isinstance(problem, dict) else {"detail": str(problem)[:200]}


@dataclass(frozen=True)
class OCSPAnswer:
    status: str  # good | revoked | held | unknown
    reason: str | None


class CAClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 5.0,
                 ocsp_freshness: OCSPFreshness | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # None: the JPKI_OCSP_* settings of the environment (jpki_service/common/settings.py).
        self.ocsp_freshness = ocsp_freshness or OCSPFreshness.from_settings(ServiceSettings())
        self._http = _http_client(timeout, base_url=self.base_url,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
        # The OCSP URL comes from each certificate, so it has its own client: no bearer, no base URL.
        # One client for the process: its connections are kept and used again.
        self._public = _http_client(timeout)
        self._ca_certificates: dict[str, x509.Certificate] = {}

    def close(self) -> None:
        self._http.close()
        self._public.close()

    # -- the API ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise CAUnavailable(f"the CA at {self.base_url} did not answer in time ({exc.__class__.__name__})") \
                from None
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"the CA at {self.base_url} is unreachable: {exc.__class__.__name__}: {exc}") from None
        status = response.status_code
        if status in (401, 403):
            raise CAMisconfigured(_TRY_AGAIN_LATER[status])
        if status in _TRY_AGAIN_LATER:
            raise CAUnavailable(_TRY_AGAIN_LATER[status])
        if status >= 500:
            raise CAUnavailable(f"the CA at {self.base_url} failed ({status})")
        if status >= 400:
            if response.headers.get("content-type", "").split(";")[0].strip() != PROBLEM_MEDIA_TYPE:
                # Not the CA speaking about the request (a proxy's page, a wrong JPKI_CA_URL): not a refusal.
                raise CAMisconfigured(f"the CA at {self.base_url} answered {status} without a problem document: "
                                      "check JPKI_CA_URL")
            raise CARefused(status, _json_or_text(response))
        if status not in (200, 201):
            raise CAMisconfigured(f"the CA at {self.base_url} answered {status}: check JPKI_CA_URL")
        try:
            return response.json()
        except ValueError:
            raise CAMisconfigured(f"the CA at {self.base_url} answered {status} with no JSON: check JPKI_CA_URL") \
                from None

    def check_access(self) -> None:
        """Prove the URL and the credential with a harmless authenticated read (a serial never issued):
        the CA answers 404 "unknown certificate" when both are right. Raises :class:`CAMisconfigured`
        when they are not, :class:`CAUnavailable` when the CA does not answer."""
        try:
            self.certificate(_NEVER_ISSUED_SERIAL)
        except CARefused as refused:
            if refused.status == 404 and str(refused.problem.get("type", "")).endswith("/unknown-certificate"):
                return
            raise CAMisconfigured(f"the CA at {self.base_url} does not answer as the CA's API does: {refused} "
                                  "(check JPKI_CA_URL)") from None

    def issue(self, operation_id: str, profile: str, csr_pem: str, card_serial: str) -> dict[str, Any]:
        """A phone certificate; the CA writes a signature certificate's four items from its record of the card."""
        body = {"operation_id": operation_id, "profile": profile, "csr_pem": csr_pem, "card_serial": card_serial}
        return self._call("POST", "/api/v1/certificates", json=body)

    def change_status(self, serial: str, action: str, operation_id: str, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"operation_id": operation_id}
        if action == "revoke":
            body["reason"] = reason
        return self._call("POST", f"/api/v1/certificates/{serial}/{action}", json=body)

    def certificate(self, serial: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/certificates/{serial}")

    # -- public material --------------------------------------------------------------------
    def ca_certificate(self, name: str) -> x509.Certificate:
        """A CA certificate (root, sign, auth), fetched once: CA keys do not change."""
        if name not in self._ca_certificates:
            try:
                response = self._http.get(f"/ca/{name}.cer")
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise CAUnavailable(f"cannot fetch CA certificate {name}: {exc}") from None
            self._ca_certificates[name] = x509.load_der_x509_certificate(response.content)
        return self._ca_certificates[name]

    def revoked_card_serials(self) -> dict[str, str]:
        """Card signature certificates revoked for good at the CA, from its full CRL: serial -> reason."""
        try:
            response = self._http.get("/crl/sign.crl")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"cannot fetch the signature CA's CRL: {exc}") from None
        crl = x509.load_der_x509_crl(response.content)
        # A CA certificate carries the CA's signing key (RSA or P-256, jpki_common.keys).
        issuer_key = cast(CertificateIssuerPublicKeyTypes, self.ca_certificate("sign").public_key())
        if not crl.is_signature_valid(issuer_key):
            raise CAUnavailable("the signature CA's CRL does not verify")
        # A replayed old CRL would hide the revocations made since: believe only a current one.
        now, skew = dt.datetime.now(dt.UTC), self.ocsp_freshness.clock_skew
        if crl.last_update_utc > now + skew or (crl.next_update_utc is not None and crl.next_update_utc < now - skew):
            raise CAUnavailable(f"the signature CA's CRL is not current (thisUpdate {crl.last_update_utc.isoformat()}, "
                                f"nextUpdate {crl.next_update_utc.isoformat() if crl.next_update_utc else '-'})")
        revoked = {}
        for entry in crl:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = "unspecified"
            if reason != "certificateHold":
                revoked[format(entry.serial_number, "x")] = reason
        return revoked

    def ocsp_status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> OCSPAnswer:
        """Ask the OCSP responder named in the certificate, as a careful relying party would: a request
        with a fresh nonce, and an answer believed only once :func:`verify_ocsp_answer` accepts it.

        ``issuer`` must be the certificate's issuing CA, already chained to the root by the caller.
        Raises :class:`CAUnavailable` when the responder cannot be reached, and
        :class:`~jpki_service.adapters.ocsp_verification.OCSPAnswerRefused` when its answer is not believed.
        """
        urls = [
            d.access_location.value
            for d in certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            if d.access_method == AuthorityInformationAccessOID.OCSP
        ]
        if not urls:
            return OCSPAnswer("unknown", "no OCSP URL in the certificate")
        question = ocsp_question(certificate, issuer)
        try:
            response = self._public.post(urls[0], content=question.der,
                                         headers={"Content-Type": "application/ocsp-request"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"OCSP at {urls[0]} unreachable: {exc}") from None
        answer = verify_ocsp_answer(response.content, question, certificate, issuer, self.ocsp_freshness)
        if answer.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return OCSPAnswer("good", None)
        if answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
            return OCSPAnswer("unknown", None)
        reason = answer.revocation_reason.value if answer.revocation_reason else "unspecified"
        return OCSPAnswer("held" if reason == "certificateHold" else "revoked", reason)

    def timestamp(self, request_der: bytes) -> bytes:
        """Send a DER TimeStampReq to the CA's RFC 3161 time-stamping authority (``POST <CA>/tsa``,
        public: no bearer) and return its DER TimeStampResp, unchecked: the caller verifies it
        (jpki_service/audit/anchors.py). Raises :class:`CAUnavailable` when no answer came."""
        url = f"{self.base_url}/tsa"
        try:
            response = self._public.post(url, content=request_der,
                                         headers={"Content-Type": "application/timestamp-query"})
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"the CA's time-stamping authority at {url} is unreachable: "
                                f"{exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200 or \
                response.headers.get("content-type", "").split(";")[0].strip() != "application/timestamp-reply":
            raise CAUnavailable(f"the CA's time-stamping authority at {url} answered {response.status_code} "
                                f"{response.headers.get('content-type', 'without a content type')}, "
                                "not a time-stamp reply")
        return response.content
