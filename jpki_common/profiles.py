"""The JPKI certificate profiles as every part must read them: the authorities, the four profiles
and their policy OIDs, the otherName type ids of the holder's four items, and the revocation
reasons. The CA builds certificates from these; the service and the phone app read them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

# RFC 5280 CRLReason names: in a light module of their own (the CLIs name them in --help), re-exported here.
from jpki_common.revocation_reasons import HOLD_REASON as HOLD_REASON
from jpki_common.revocation_reasons import KEY_COMPROMISE as KEY_COMPROMISE
from jpki_common.revocation_reasons import REMOVE_FROM_CRL as REMOVE_FROM_CRL
from jpki_common.revocation_reasons import REVOCATION_REASONS as REVOCATION_REASONS

# The authorities of the hierarchy, as named in the CA's URLs (/ca/sign.cer, /crl/auth.crl).
ROOT = "root"
SIGNATURE_CA = "sign"
AUTHENTICATION_CA = "auth"

# subjectAltName otherName type ids used by JPKI signature certificates.
OID_NAME = ObjectIdentifier("1.2.392.200149.8.5.5.1")
OID_GENDER = ObjectIdentifier("1.2.392.200149.8.5.5.3")
OID_DATE_OF_BIRTH = ObjectIdentifier("1.2.392.200149.8.5.5.4")
OID_ADDRESS = ObjectIdentifier("1.2.392.200149.8.5.5.5")

GENDERS = ("1", "2", "3")  # JPKI codes: 1 male, 2 female, 3 not stated


@dataclass(frozen=True)
class PersonalData:
    """The four items of the card's signature certificate. Never the Individual Number."""

    name: str
    date_of_birth: dt.date
    gender: str
    address: str


@dataclass(frozen=True)
class Profile:
    name: str
    authority: str
    policy_oid: str
    carries_personal_data: bool
    is_phone: bool

    @property
    def non_repudiation(self) -> bool:
        return self.carries_personal_data


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("card-signature", SIGNATURE_CA, "1.2.392.200149.8.5.1.1.10", True, False),
        Profile("card-authentication", AUTHENTICATION_CA, "1.2.392.200149.8.5.1.3.10", False, False),
        Profile("phone-signature", SIGNATURE_CA, "1.2.392.200149.8.5.1.1.30", True, True),
        Profile("phone-authentication", AUTHENTICATION_CA, "1.2.392.200149.8.5.1.3.30", False, True),
    )
}


def personal_data_of(certificate: x509.Certificate) -> PersonalData:
    """The four items a signature certificate carries, as the CA writes them: name and address
    UTF8String, gender and date of birth (YYYYMMDD) PrintableString."""
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    values = {name.type_id: name.value for name in san.get_values_for_type(x509.OtherName)}
    return PersonalData(
        name=core.UTF8String.load(values[OID_NAME]).native,
        gender=core.PrintableString.load(values[OID_GENDER]).native,
        date_of_birth=dt.datetime.strptime(core.PrintableString.load(values[OID_DATE_OF_BIRTH]).native,
                                           "%Y%m%d").date(),
        address=core.UTF8String.load(values[OID_ADDRESS]).native,
    )


