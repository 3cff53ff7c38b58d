"""RFC 5280 section 5.3.1 CRLReason names, in the spelling of the RFC (light: command lines name them in
their ``--help`` without loading the certificate libraries; jpki_common.profiles re-exports them)."""
from __future__ import annotations

REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
)
HOLD_REASON = "certificateHold"
REMOVE_FROM_CRL = "removeFromCRL"
KEY_COMPROMISE = "keyCompromise"
