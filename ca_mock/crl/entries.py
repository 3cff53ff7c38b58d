"""DER of single CRL entries, made once per status change (asn1crypto does the encoding)."""
from __future__ import annotations

import datetime as dt

from asn1crypto import crl as asn1_crl

# RFC 5280 reason names -> asn1crypto's spelling.
_ASN1_REASONS = {
    "unspecified": "unspecified",
    "keyCompromise": "key_compromise",
    "cACompromise": "ca_compromise",
    "affiliationChanged": "affiliation_changed",
    "superseded": "superseded",
    "cessationOfOperation": "cessation_of_operation",
    "certificateHold": "certificate_hold",
    "removeFromCRL": "remove_from_crl",
    "privilegeWithdrawn": "privilege_withdrawn",
    "aACompromise": "aa_compromise",
}


def encode_entry(
    serial: int, revoked_at: dt.datetime, reason: str, invalidity_date: dt.datetime | None = None
) -> bytes:
    extensions = [{"extn_id": "crl_reason", "critical": False, "extn_value": _ASN1_REASONS[reason]}]
    if invalidity_date is not None:
        extensions.append({"extn_id": "invalidity_date", "critical": False, "extn_value": invalidity_date})
    return asn1_crl.RevokedCertificate(
        {
            "user_certificate": serial,
            "revocation_date": asn1_crl.Time(
                {"utc_time": revoked_at} if revoked_at.year < 2050 else {"general_time": revoked_at}
            ),
            "crl_entry_extensions": extensions,
        }
    ).dump()
