"""The one function that builds the four certificate profiles of DESIGN.md section 4
(:data:`jpki_common.profiles.PROFILES`).

Signature profiles carry the holder's four items in subjectAltName otherName, as the card
does; user-authentication profiles carry no personal data at all. The subject DN holds only
an opaque identifier, so no personal data leaks through the DN either.
"""
from __future__ import annotations

import datetime as dt
import secrets

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ca_mock import urls
from ca_mock.authorities.service import LoadedAuthority
from jpki_common import keys
from jpki_common.profiles import OID_ADDRESS, OID_DATE_OF_BIRTH, OID_GENDER, OID_NAME, PersonalData, Profile


def _other_names(person: PersonalData) -> list[x509.OtherName]:
    # otherName values must arrive DER-encoded (LIBRARY_NOTES); asn1crypto encodes them.
    return [
        x509.OtherName(OID_NAME, core.UTF8String(person.name).dump()),
        x509.OtherName(OID_GENDER, core.PrintableString(person.gender).dump()),
        x509.OtherName(OID_DATE_OF_BIRTH, core.PrintableString(person.date_of_birth.strftime("%Y%m%d")).dump()),
        x509.OtherName(OID_ADDRESS, core.UTF8String(person.address).dump()),
    ]


def build_certificate(
    profile: Profile,
    public_key,
    person: PersonalData | None,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer: LoadedAuthority,
    public_url: str,
    crl_partition: int | None = None,
) -> x509.Certificate:
    """``crl_partition``: the CRL partition the certificate belongs to; its CRL DP and Freshest CRL
    then name that partition's CRLs instead of the whole issuer's."""
    if crl_partition is None:
        crl, delta = urls.crl_url(public_url, issuer.name), urls.delta_crl_url(public_url, issuer.name)
    else:
        crl = urls.partition_crl_url(public_url, issuer.name, crl_partition)
        delta = urls.partition_delta_crl_url(public_url, issuer.name, crl_partition)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI Mock"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, profile.name),
            x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(12)),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            keys.key_usage(digital_signature=True, content_commitment=profile.non_repudiation),
            True,
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier(profile.policy_oid), None)]), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False)
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl)], None, None, None)]
            ),
            False,
        )
        .add_extension(
            x509.FreshestCRL(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(delta)], None, None, None)]
            ),
            False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                           x509.UniformResourceIdentifier(urls.ocsp_url(public_url))),
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.ca_certificate_url(public_url, issuer.name)),
                    ),
                ]
            ),
            False,
        )
    )
    if profile.carries_personal_data:
        assert person is not None
        builder = builder.add_extension(x509.SubjectAlternativeName(_other_names(person)), False)
    if profile.name.endswith("authentication"):
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return builder.sign(issuer.key, hashes.SHA256())
