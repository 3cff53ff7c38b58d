"""Checking a dealer's erasure receipt offline (``jpki-service verify-receipt``, docs/dealers.md): the same
verdict as ``openssl cms -verify -inform DER -in receipt.p7s -CAfile receipt-ca.pem``.

The CMS structure is read by asn1crypto and the signature checked by pyHanko's CMS integrity check (the
message-digest attribute against the content, the signature over the signed attributes); trust is the
signer certificate being one of the trusted receipt-authority certificates, or issued directly by one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature

RECEIPT_FORMAT = "jpki-dealer-receipt/1"  # the document inside every receipt (docs/dealers.md)


class ReceiptRefused(ValueError):
    """Not a receipt this verifier can trust (the reason says why)."""


def verify_receipt(der: bytes, trusted: list[x509.Certificate]) -> dict[str, Any]:
    """The receipt's document, once its signature and signer are good; ReceiptRefused otherwise."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise ReceiptRefused("not a CMS SignedData")
        signed = info["content"]
        encapsulated = signed["encap_content_info"]
        content = encapsulated["content"].native
        signer_infos = list(signed["signer_infos"])
        certificates = [c.chosen for c in signed["certificates"] or () if isinstance(c.chosen, asn1_x509.Certificate)]
    except ReceiptRefused:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ReceiptRefused(f"not a DER CMS structure ({exc})") from None
    if encapsulated["content_type"].native != "data" or not isinstance(content, bytes):
        raise ReceiptRefused("the receipt holds no document")
    if len(signer_infos) != 1:
        raise ReceiptRefused(f"a receipt has one signer, this one has {len(signer_infos)}")
    signer_info = signer_infos[0]
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise ReceiptRefused("the signer is not named by issuer and serial number")
    wanted = sid.chosen
    signer = next((c for c in certificates if c.issuer == wanted["issuer"]
                   and c.serial_number == wanted["serial_number"].native), None)
    if signer is None:
        raise ReceiptRefused("the receipt does not include its signer's certificate")
    # pyHanko is loaded here, not at import: the service imports this module at every start.
    from pyhanko.sign.validation.generic_cms import validate_sig_integrity

    digest = hashlib.new(signer_info["digest_algorithm"]["algorithm"].native, content).digest()
    try:
        intact, valid = validate_sig_integrity(signer_info, signer, "data", digest)
    except Exception as exc:  # pyHanko raises its own errors for unusable algorithms
        raise ReceiptRefused(f"the signature cannot be checked ({exc})") from None
    if not (intact and valid):
        raise ReceiptRefused("the signature does not match the document: altered or forged")
    _check_trusted(x509.load_der_x509_certificate(signer.dump()), trusted)
    try:
        document = json.loads(content)
    except ValueError:
        raise ReceiptRefused("the signed document is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != RECEIPT_FORMAT:
        raise ReceiptRefused(f"the signed document is not a {RECEIPT_FORMAT} receipt")
    return document


def _check_trusted(certificate: x509.Certificate, trusted: list[x509.Certificate]) -> None:
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ReceiptRefused("the receipt's signer certificate is not valid now")
    for anchor in trusted:
        if certificate == anchor:
            return
        if certificate.issuer == anchor.subject:
            try:
                certificate.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return
    raise ReceiptRefused("the receipt is not signed by a trusted receipt authority")
