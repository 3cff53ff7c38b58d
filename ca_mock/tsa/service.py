"""The time-stamping authority (RFC 3161): a TimeStampReq in, a TimeStampResp out, both DER.

Nothing here writes ASN.1 or CMS by hand. asn1crypto parses the request; pyHanko's
``DummyTimeStamper`` (a complete RFC 3161 responder that "acts as its own TSA": it signs every
request it is given with the certificate and key it holds) builds and signs the token, with the
TSA certificate made at ``jpki-ca init``. What this module adds is what a real TSA must do and
that class does not: refuse what it should not sign, with a ``rejection`` status and the RFC's
failure bit, instead of signing anything or failing with an exception.

Tokens carry: our policy OID, the request's nonce, a random 64-bit serial, genTime from the
server clock (UTC, with fractional seconds), and the TSA certificate when the request asks for it
(certReq). The signature is RSA PKCS#1 v1.5 with SHA-256, whatever hash the imprint uses.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from asn1crypto import cms, core, tsp
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from ca_mock.authorities.service import TSA, Hierarchy, LoadedAuthority
from ca_mock.problems import CAProblem
from jpki_common.http_server import short_reason

log = logging.getLogger("ca_mock.tsa")

REQUEST_MEDIA_TYPE = "application/timestamp-query"
RESPONSE_MEDIA_TYPE = "application/timestamp-reply"
MAX_REQUEST_BYTES = 8 * 1024
# The TSA policy named in every token. An OID under 2.25 (a UUID as an integer, ITU-T X.667)
# needs no registration: this one stands for "JPKI mock TSA policy: testing only".
POLICY_OID = "2.25.205617411470183035813706549785734573412"
# Hash algorithms accepted for the message imprint, with their digest sizes.
ACCEPTED_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64}


class TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp as the RFC has it: asn1crypto 1.5's ``tsp.TimeStampResp`` declares
    timeStampToken mandatory, so it can neither encode nor parse a rejection, which carries no
    token. (pyHanko's HTTP client parses with that class: a rejection reaches it as a ValueError.)"""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TimestampingUnavailable(CAProblem):
    status, title, slug = 404, "No time-stamping authority", "no-tsa"
    example = "this CA has no time-stamping authority: its store was initialised before the TSA existed. ..."


@dataclass(frozen=True)
class Answer:
    der: bytes
    granted: bool
    detail: str  # why it was rejected, for the log; "granted" otherwise


def tsa_authority(hierarchy: Hierarchy) -> LoadedAuthority:
    authority = hierarchy.authorities.get(TSA)
    if authority is None:
        raise TimestampingUnavailable(
            "this CA has no time-stamping authority: its store was initialised before the TSA existed. "
            "Make a new CA (jpki-ca init in a new data folder or database) to get one."
        )
    return authority


@functools.cache
def _responder_class() -> type:
    """The responder class, made on the first time-stamp request: importing pyHanko's signing stack
    takes over a second, which every start of the CA (and of each test's CA) paid, TSA used or not."""
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    class _Responder(DummyTimeStamper):
        """pyHanko's RFC 3161 responder, with our policy OID and certReq honoured.

        Overrides two construction steps of ``DummyTimeStamper`` (pyHanko 0.38, pinned): the TSTInfo
        gets our policy instead of the class's placeholder, and the certificates are left out of the
        token when the request did not ask for them (RFC 3161 section 2.4.1, certReq).
        """

        def __init__(self, authority: LoadedAuthority, cert_req: bool) -> None:
            key_der = authority.key.private_bytes(serialization.Encoding.DER,
                                                  serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            super().__init__(tsa_cert=asn1_x509.Certificate.load(authority.der),
                             tsa_key=asn1_keys.PrivateKeyInfo.load(key_der), override_md="sha256")
            self._cert_req = cert_req

        def _build_tst_info(self, message_imprint, dt, req):
            info = super()._build_tst_info(message_imprint, dt, req)
            info["policy"] = POLICY_OID
            return info

        def _build_signed_data(self, tst_info_data, md_algorithm, signature, signed_attrs):
            signed_data = super()._build_signed_data(tst_info_data, md_algorithm, signature, signed_attrs)
            if not self._cert_req:
                del signed_data["certificates"]
            return signed_data

    return _Responder


def _rejection(failure: str, text: str) -> Answer:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text], "fail_info": {failure}})
    return Answer(TimeStampResp({"status": status}).dump(), False, f"{failure}: {text}")


def _parse(body: bytes) -> tsp.TimeStampReq | Answer:
    if len(body) > MAX_REQUEST_BYTES:
        return _rejection("bad_request", f"requests are limited to {MAX_REQUEST_BYTES} bytes")
    try:
        request = tsp.TimeStampReq.load(body, strict=True)
        _ = request.native  # asn1crypto parses lazily: force the whole structure now, so bad bytes raise here
    except Exception:  # any decoding failure of untrusted bytes is the client's
        return _rejection("bad_data_format", "not a DER TimeStampReq")
    if request["version"].native != "v1":
        return _rejection("bad_request", "only version 1 requests are accepted")
    imprint = request["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm not in ACCEPTED_HASHES:
        return _rejection("bad_alg", f"message imprint hash {algorithm} not accepted; "
                                     f"use one of {', '.join(ACCEPTED_HASHES)}")
    if len(imprint["hashed_message"].native) != ACCEPTED_HASHES[algorithm]:
        return _rejection("bad_data_format", f"the hashed message is not a {algorithm} digest")
    policy = request["req_policy"].native
    if policy is not None and policy != POLICY_OID:
        return _rejection("unaccepted_policy", f"policy {policy} is not offered; this TSA issues under {POLICY_OID}")
    if request["extensions"].native:
        return _rejection("unaccepted_extension", "no request extension is supported")
    return request


def respond(hierarchy: Hierarchy, body: bytes) -> Answer:
    """Answer one DER TimeStampReq. Raises only :class:`TimestampingUnavailable` (no TSA in this store)."""
    authority = tsa_authority(hierarchy)
    parsed = _parse(body)
    if isinstance(parsed, Answer):
        return parsed
    try:
        responder = _responder_class()(authority, cert_req=bool(parsed["cert_req"].native))
        response = responder.request_tsa_response(parsed)
        return Answer(response.dump(), True, "granted")
    except Exception as exc:
        log.error("time-stamping failed: %s", short_reason(exc))  # no traceback: it may carry SQL
        return _rejection("system_failure", "the TSA failed to make the token")
