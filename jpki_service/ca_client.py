"""The adapter to the certification authority: its HTTP API (bearer) and its public OCSP/CRL.

The only place the service talks to the CA. Two kinds of failure, kept apart because the
outbox treats them differently: :class:`CAUnavailable` (network, timeout, 5xx: try again later)
and :class:`CARefused` (a 4xx problem document: retrying will not help).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from jpki_service.protocol import verify_signature


class CAUnavailable(Exception):
    """The CA could not be reached or failed; the request may be retried."""


class CARefused(Exception):
    """The CA answered with a problem document; retrying the same request will not help."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"CA refused ({status}): {problem.get('detail', problem)}")
        self.status, self.problem = status, problem


@dataclass(frozen=True)
class OCSPAnswer:
    status: str  # good | revoked | held | unknown
    reason: str | None


class CAClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
        # The OCSP URL comes from each certificate, so it has its own client: no bearer, no base URL.
        # One client for the process: a new one per call costs ~40 ms of CPU (a fresh TLS context).
        self._public = httpx.Client(timeout=timeout)
        self._ca_certificates: dict[str, x509.Certificate] = {}

    def close(self) -> None:
        self._http.close()
        self._public.close()

    # -- the API ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"CA at {self.base_url} unreachable: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 500:
            raise CAUnavailable(f"CA at {self.base_url} failed with {response.status_code}")
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:200]}
            raise CARefused(response.status_code, problem)
        return response.json()

    def issue(self, operation_id: str, profile: str, csr_pem: str, card_serial: str,
              person: dict[str, str] | None) -> dict[str, Any]:
        body = {"operation_id": operation_id, "profile": profile, "csr_pem": csr_pem,
                "card_serial": card_serial, "person": person}
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
        if not crl.is_signature_valid(self.ca_certificate("sign").public_key()):
            raise CAUnavailable("the signature CA's CRL does not verify")
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
        """Ask the OCSP responder named in the certificate, as any relying party would."""
        urls = [
            d.access_location.value
            for d in certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            if d.access_method == AuthorityInformationAccessOID.OCSP
        ]
        if not urls:
            return OCSPAnswer("unknown", "no OCSP URL in the certificate")
        request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256()).build()
        try:
            response = self._public.post(urls[0], content=request.public_bytes(serialization.Encoding.DER),
                                         headers={"Content-Type": "application/ocsp-request"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CAUnavailable(f"OCSP at {urls[0]} unreachable: {exc}") from None
        answer = ocsp.load_der_ocsp_response(response.content)
        if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise CAUnavailable(f"OCSP answered {answer.response_status.name}")
        responder = answer.certificates[0] if answer.certificates else issuer
        if (responder.issuer != issuer.subject
                or not _signed_by(responder, issuer)
                or not _signed_by_key(answer, responder)
                or answer.serial_number != certificate.serial_number):
            raise CAUnavailable("OCSP answer does not verify")
        if answer.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return OCSPAnswer("good", None)
        if answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
            return OCSPAnswer("unknown", None)
        reason = answer.revocation_reason.value if answer.revocation_reason else "unspecified"
        return OCSPAnswer("held" if reason == "certificateHold" else "revoked", reason)


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except Exception:  # ValueError, TypeError or InvalidSignature: not issued by it
        return False
    return True


def _signed_by_key(answer: ocsp.OCSPResponse, responder: x509.Certificate) -> bool:
    return verify_signature(responder.public_key(), answer.tbs_response_bytes, answer.signature,
                            answer.signature_hash_algorithm)
