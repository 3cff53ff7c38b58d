"""What the CA writes into certificates: the hierarchy and the four profiles of DESIGN.md section 4.

Each certificate is read twice: with ``cryptography``/``asn1crypto``, and independently with the
``openssl`` CLI (``x509 -text``, ``asn1parse``, ``verify -x509_strict``), which shares no code
with the CA.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    SignatureAlgorithmOID,
)
from sqlalchemy import select

from ca_mock.authorities.service import initialise
from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.crl.service import current_crl
from ca_mock.ocsp.models import PreparedOCSPResponse
from ca_mock.problems import InvalidRequest
from jpki_common.problems import PolicyViolation
from jpki_common.store import utcnow
from tests.helpers import csr_pem, p256_csr_pem, rsa_key

PROFILES = ("card-signature", "card-authentication", "phone-signature", "phone-authentication")
SIGNATURE_PROFILES = ("card-signature", "phone-signature")
ISSUER_OF = {"card-signature": "sign", "phone-signature": "sign",
             "card-authentication": "auth", "phone-authentication": "auth"}
ISSUER_CN = {"root": "JPKI Mock Root CA", "sign": "JPKI Mock Signature CA",
             "auth": "JPKI Mock User Authentication CA"}

# A holder whose four items are all unlike the defaults elsewhere in the tests.
PERSON = {"name": "佐藤 花子", "date_of_birth": "1985-07-23", "gender": "2", "address": "大阪府大阪市北区梅田3-1-1"}
PERSONAL_BYTES = [PERSON["name"].encode(), "佐藤".encode(), "花子".encode(), PERSON["address"].encode(),
                  "大阪府".encode(), b"19850723", b"1985-07-23", b"850723"]

OID_NAME, OID_GENDER, OID_BIRTH, OID_ADDRESS = (f"1.2.392.200149.8.5.5.{n}" for n in (1, 3, 4, 5))


def openssl(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


def pem_file(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def issue(store, settings, profile: str, *, csr: str | None = None, person: dict | None = None,
          card_serial: str | None = None,
          not_after: dt.datetime | None = None) -> tuple[x509.Certificate, dict]:
    if person is None and profile in SIGNATURE_PROFILES:
        person = PERSON
    request = IssueRequest(operation_id=f"t-{uuid.uuid4().hex}", profile=profile, csr_pem=csr or csr_pem(),
                           person=person, card_serial=card_serial, not_after=not_after)
    result = issue_certificate(store, settings, request)
    return x509.load_pem_x509_certificate(result["certificate_pem"].encode()), result


def issue_profile(store, settings, profile: str, **kw) -> tuple[x509.Certificate, dict]:
    """Issue ``profile``; a phone profile gets a card signature certificate to derive from first."""
    if profile.startswith("phone") and "card_serial" not in kw:
        _, card = issue(store, settings, "card-signature")
        kw["card_serial"] = card["serial"]
    return issue(store, settings, profile, **kw)


def uris(cert: x509.Certificate, extension_class) -> list[str]:
    points = cert.extensions.get_extension_for_class(extension_class).value
    return [name.value for point in points for name in point.full_name]


def aia(cert: x509.Certificate, method) -> list[str]:
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return [d.access_location.value for d in access if d.access_method == method]


def has_extension(cert: x509.Certificate, extension_class) -> bool:
    try:
        cert.extensions.get_extension_for_class(extension_class)
        return True
    except x509.ExtensionNotFound:
        return False


def is_rsa2048_sha256(cert: x509.Certificate) -> bool:
    key = cert.public_key()
    return (isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
            and cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
            and isinstance(cert.signature_hash_algorithm, hashes.SHA256))


# -- the hierarchy ------------------------------------------------------------------------------

def test_hierarchy_root_two_issuing_cas_and_their_ocsp_signers(hierarchy, tmp_path):
    root = hierarchy.get("root").certificate
    files = {"root": pem_file(tmp_path / "root.pem", root)}

    assert is_rsa2048_sha256(root)
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)  # self-signed: raises if the signature does not verify
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is True and constraints.value.path_length is None

    for name in ("sign", "auth"):
        ca = hierarchy.get(name).certificate
        files[name] = pem_file(tmp_path / f"{name}.pem", ca)
        assert is_rsa2048_sha256(ca)
        assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ISSUER_CN[name]
        assert ca.issuer == root.subject
        ca.verify_directly_issued_by(root)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca is True and constraints.value.path_length == 0
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        assert not usage.value.digital_signature

        signer = hierarchy.ocsp_signer(name).certificate
        signer_file = pem_file(tmp_path / f"{name}-ocsp.pem", signer)
        assert is_rsa2048_sha256(signer)
        assert signer.issuer == ca.subject
        signer.verify_directly_issued_by(ca)
        assert signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert list(signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.OCSP_SIGNING]
        assert has_extension(signer, x509.OCSPNoCheck)
        assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature

        # openssl's own reading and path check (strict RFC 5280 profile checks included).
        text = openssl("x509", "-in", files[name], "-noout", "-text").stdout
        assert "CA:TRUE, pathlen:0" in text and "Certificate Sign, CRL Sign" in text
        assert "Signature Algorithm: sha256WithRSAEncryption" in text and "Public-Key: (2048 bit)" in text
        signer_text = openssl("x509", "-in", signer_file, "-noout", "-text").stdout
        assert "OCSP Signing" in signer_text and "OCSP No Check" in signer_text and "CA:FALSE" in signer_text
        checked = openssl("verify", "-x509_strict", "-CAfile", files["root"], "-untrusted", files[name],
                          "-purpose", "ocsphelper", signer_file)
        assert checked.returncode == 0 and ": OK" in checked.stdout, checked.stdout + checked.stderr

    root_text = openssl("x509", "-in", files["root"], "-noout", "-text").stdout
    assert "CA:TRUE" in root_text and "pathlen" not in root_text
    for name in ("sign", "auth"):
        checked = openssl("verify", "-x509_strict", "-CAfile", files["root"], files[name])
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_crls_are_signed_with_sha256_by_their_issuer(store, ca_settings, hierarchy, tmp_path):
    for name in ("root", "sign", "auth"):
        crl = x509.load_der_x509_crl(current_crl(store, ca_settings, name, "full").der)
        assert crl.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
        assert crl.is_signature_valid(hierarchy.get(name).certificate.public_key())
        crl_file = tmp_path / f"{name}.crl"
        crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        issuer_file = pem_file(tmp_path / f"{name}.pem", hierarchy.get(name).certificate)
        shown = openssl("crl", "-in", crl_file, "-noout", "-text", "-CAfile", issuer_file)
        assert shown.returncode == 0 and "verify OK" in shown.stderr + shown.stdout, shown.stderr
        assert "Signature Algorithm: sha256WithRSAEncryption" in shown.stdout


# -- the four profiles --------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_profile_content(store, ca_settings, hierarchy, profile, tmp_path):
    cert, issued = issue_profile(store, ca_settings, profile)
    issuer = hierarchy.get(ISSUER_OF[profile]).certificate
    signature = profile in SIGNATURE_PROFILES
    raw = der(cert)

    assert cert.version is x509.Version.v3
    assert is_rsa2048_sha256(cert)
    assert cert.issuer == issuer.subject
    cert.verify_directly_issued_by(issuer)
    assert issued["authority"] == ISSUER_OF[profile] and issued["profile"] == profile

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    granted = {u for u in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign") if getattr(usage.value, u)}
    assert granted == ({"digital_signature", "content_commitment"} if signature else {"digital_signature"})

    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert len(policies) == 1
    assert policies[0].policy_identifier.dotted_string.startswith("1.2.392.200149.8.5.1.")

    if signature:
        assert not has_extension(cert, x509.ExtendedKeyUsage)
    else:
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH]

    # Where to check status and find the issuer: the CA's public URL, the issuing CA's objects.
    base, ca = ca_settings.public_url, ISSUER_OF[profile]
    # The first certificate of its issuer in this store: CRL partition 0 (ca_mock/crl/partitions.py).
    assert uris(cert, x509.CRLDistributionPoints) == [f"{base}/crl/{ca}-p0.crl"]
    assert uris(cert, x509.FreshestCRL) == [f"{base}/crl/{ca}-p0-delta.crl"]
    assert aia(cert, AuthorityInformationAccessOID.OCSP) == [f"{base}/ocsp"]
    assert aia(cert, AuthorityInformationAccessOID.CA_ISSUERS) == [f"{base}/ca/{ca}.cer"]

    # The subject DN is opaque: country, organisation, profile, a random identifier. Never personal.
    subject_oids = [attribute.oid for attribute in cert.subject]
    assert subject_oids == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                            NameOID.COMMON_NAME]
    subject_der = cert.subject.public_bytes()
    assert not [b for b in PERSONAL_BYTES if b in subject_der]

    if signature:
        assert has_extension(cert, x509.SubjectAlternativeName)
    else:
        assert not has_extension(cert, x509.SubjectAlternativeName)
        assert not [b for b in PERSONAL_BYTES if b in raw], "personal data in an authentication certificate"

    # openssl's reading.
    cert_file = pem_file(tmp_path / "cert.pem", cert)
    text = openssl("x509", "-in", cert_file, "-noout", "-text").stdout
    usage_line = text.split("X509v3 Key Usage: critical")[1].splitlines()[1].strip()
    assert usage_line == ("Digital Signature, Non Repudiation" if signature else "Digital Signature")
    assert "Signature Algorithm: sha256WithRSAEncryption" in text and "Public-Key: (2048 bit)" in text
    assert "CA:FALSE" in text and f"Policy: {policies[0].policy_identifier.dotted_string}" in text
    assert f"URI:{base}/crl/{ca}-p0.crl" in text and f"URI:{base}/crl/{ca}-p0-delta.crl" in text
    assert f"OCSP - URI:{base}/ocsp" in text and f"CA Issuers - URI:{base}/ca/{ca}.cer" in text
    assert ("X509v3 Subject Alternative Name" in text) is signature
    assert ("TLS Web Client Authentication" in text) is (not signature)

    root_file = pem_file(tmp_path / "root.pem", hierarchy.get("root").certificate)
    issuer_file = pem_file(tmp_path / "issuer.pem", issuer)
    purpose = ["-purpose", "sslclient"] if not signature else []
    checked = openssl("verify", "-x509_strict", *purpose, "-CAfile", root_file, "-untrusted", issuer_file,
                      cert_file)
    assert checked.returncode == 0 and ": OK" in checked.stdout, checked.stdout + checked.stderr


def test_profiles_have_distinct_policies_per_certificate_kind(store, ca_settings, hierarchy):
    oids = {}
    for profile in PROFILES:
        cert, _ = issue_profile(store, ca_settings, profile)
        oids[profile] = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value[0] \
            .policy_identifier.dotted_string
    assert len(set(oids.values())) == 4, oids


@pytest.mark.parametrize("profile", SIGNATURE_PROFILES)
def test_signature_profiles_carry_exactly_the_four_items(store, ca_settings, hierarchy, profile, tmp_path):
    cert, _ = issue_profile(store, ca_settings, profile)

    # asn1crypto decodes the otherName values with their string types.
    parsed = asn1_x509.Certificate.load(der(cert))
    names = list(parsed.subject_alt_name_value)
    assert [n.name for n in names] == ["other_name"] * 4
    items = {n.chosen["type_id"].dotted: n.chosen["value"].parsed for n in names}
    assert set(items) == {OID_NAME, OID_GENDER, OID_BIRTH, OID_ADDRESS}
    assert isinstance(items[OID_NAME], core.UTF8String) and items[OID_NAME].native == PERSON["name"]
    assert isinstance(items[OID_ADDRESS], core.UTF8String) and items[OID_ADDRESS].native == PERSON["address"]
    assert items[OID_GENDER].native == PERSON["gender"]
    assert items[OID_BIRTH].native == "19850723"
    assert isinstance(items[OID_GENDER], (core.PrintableString, core.UTF8String))
    assert isinstance(items[OID_BIRTH], (core.PrintableString, core.UTF8String))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical  # the subject DN is not empty, so RFC 5280 wants it non-critical

    # openssl asn1parse reads the extension value on its own: OIDs and string types in order.
    cert_file = pem_file(tmp_path / "cert.pem", cert)
    lines = openssl("asn1parse", "-in", cert_file).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "X509v3 Subject Alternative Name" in line)
    offset = lines[at + 1].split(":")[0].strip()
    inner = openssl("asn1parse", "-in", cert_file, "-strparse", offset).stdout
    typed = [(line.split("prim:")[1].split(":")[0].strip(), line.rsplit(":", 1)[1].strip())
             for line in inner.splitlines() if "prim:" in line]
    assert typed == [
        ("OBJECT", OID_NAME), ("UTF8STRING", PERSON["name"]),
        ("OBJECT", OID_GENDER), ("PRINTABLESTRING", PERSON["gender"]),
        ("OBJECT", OID_BIRTH), ("PRINTABLESTRING", "19850723"),
        ("OBJECT", OID_ADDRESS), ("UTF8STRING", PERSON["address"]),
    ], inner


@pytest.mark.parametrize("profile", ["card-authentication", "phone-authentication"])
def test_authentication_profiles_refuse_personal_data(store, ca_settings, hierarchy, profile):
    with pytest.raises(InvalidRequest):
        issue_profile(store, ca_settings, profile, person=PERSON)


def test_phone_authentication_of_a_known_holder_still_carries_nothing_of_theirs(
        store, ca_settings, hierarchy):
    """The CA knows the holder through the card certificate; the phone authentication certificate
    derived from it must still carry none of the four items, in any encoding we can think of."""
    card, issued = issue(store, ca_settings, "card-signature")
    assert PERSON["name"].encode() in der(card)  # the search below would find it if it were there
    auth, _ = issue(store, ca_settings, "phone-authentication", card_serial=issued["serial"])
    raw = der(auth)
    encodings = PERSONAL_BYTES + [PERSON["name"].encode("utf-16-be"), PERSON["name"].encode("shift_jis")]
    found = [b for b in encodings if b in raw]
    assert not found


# -- request handling ---------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_csr_subject_and_extensions_are_ignored(store, ca_settings, hierarchy, profile):
    key = rsa_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "Mallory Impostor"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "mallory@example.invalid"),
        ]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example.invalid")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM).decode()
    )
    cert, _ = issue_profile(store, ca_settings, profile, csr=request)
    raw = der(cert)
    for planted in (b"Mallory", b"Evil Corp", b"mallory@example.invalid", b"evil.example.invalid"):
        assert planted not in raw
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # The key of the request is certified, nothing else of it.
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_subject_identifiers_are_opaque_and_unlinkable(store, ca_settings, hierarchy):
    first, _ = issue(store, ca_settings, "card-signature")
    second, _ = issue(store, ca_settings, "card-signature")
    cns = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in (first, second)]
    assert cns[0] != cns[1]  # the same holder twice: nothing in the DN links the two
    assert all(len(cn) >= 16 and all(ch in "0123456789abcdef" for ch in cn) for cn in cns)


@pytest.mark.parametrize("profile", PROFILES)
def test_p256_request_is_accepted(store, ca_settings, hierarchy, profile, tmp_path):
    cert, _ = issue_profile(store, ca_settings, profile, csr=p256_csr_pem())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256  # the CA's key signs
    cert_file = pem_file(tmp_path / "cert.pem", cert)
    text = openssl("x509", "-in", cert_file, "-noout", "-text").stdout
    assert "id-ecPublicKey" in text and "NIST CURVE: P-256" in text
    root_file = pem_file(tmp_path / "root.pem", hierarchy.get("root").certificate)
    issuer_file = pem_file(tmp_path / "issuer.pem", hierarchy.get(ISSUER_OF[profile]).certificate)
    checked = openssl("verify", "-x509_strict", "-CAfile", root_file, "-untrusted", issuer_file, cert_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("make_key", [
    lambda: rsa.generate_private_key(65537, 1024),
    lambda: ec.generate_private_key(ec.SECP384R1()),
], ids=["rsa-1024", "p-384"])
def test_keys_outside_the_policy_are_refused(store, ca_settings, hierarchy, make_key):
    with pytest.raises(PolicyViolation):
        issue(store, ca_settings, "card-authentication", csr=csr_pem(make_key()))


def test_serial_numbers_are_random_positive_and_at_least_120_bits(store, ca_settings, hierarchy):
    serials = []
    for i in range(48):
        cert, issued = issue(store, ca_settings, PROFILES[i % 2])  # card profiles: no card needed
        assert issued["serial"] == format(cert.serial_number, "x")
        serials.append(cert.serial_number)
    assert len(set(serials)) == len(serials)
    assert all(s > 0 for s in serials)
    # At least 120 bits long, and at most 20 octets (RFC 5280), hence at most 159 bits when positive.
    assert all(120 <= s.bit_length() <= 159 for s in serials), [s.bit_length() for s in serials]
    assert serials != sorted(serials)  # not a counter
    # Every one of the low 120 bits takes both values somewhere: at least 120 bits vary.
    varying = [bit for bit in range(120) if len({(s >> bit) & 1 for s in serials}) == 2]
    assert len(varying) == 120


# -- validity -----------------------------------------------------------------------------------

def _lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def test_card_certificate_defaults_to_the_card_policy(store, ca_settings, hierarchy):
    cert, issued = issue(store, ca_settings, "card-signature")
    assert _lifetime(cert) == dt.timedelta(days=ca_settings.card_validity_days)
    assert dt.datetime.fromisoformat(issued["not_after"]) == cert.not_valid_after_utc


def test_phone_certificate_defaults_to_the_card_expiry_when_the_card_expires_first(
        store, ca_settings, hierarchy):
    card_end = (utcnow() + dt.timedelta(days=100)).replace(microsecond=0)
    card, issued = issue(store, ca_settings, "card-signature", not_after=card_end)
    assert card.not_valid_after_utc == card_end
    for profile in ("phone-signature", "phone-authentication"):
        phone, _ = issue(store, ca_settings, profile, card_serial=issued["serial"])
        assert phone.not_valid_after_utc == card_end


def test_phone_certificate_defaults_to_the_phone_policy_when_it_is_shorter(store, ca_settings, hierarchy):
    _, issued = issue(store, ca_settings, "card-signature")
    short = ca_settings.model_copy(update={"phone_validity_days": 30})
    phone, _ = issue(store, short, "phone-signature", card_serial=issued["serial"])
    assert _lifetime(phone) == dt.timedelta(days=30)


def test_requested_not_after_within_limits_is_honoured(store, ca_settings, hierarchy):
    _, issued = issue(store, ca_settings, "card-signature")
    wanted = utcnow() + dt.timedelta(days=10, hours=3, minutes=7)
    phone, _ = issue(store, ca_settings, "phone-authentication", card_serial=issued["serial"],
                     not_after=wanted.astimezone(dt.timezone(dt.timedelta(hours=9))))  # JST in, UTC out
    assert phone.not_valid_after_utc == wanted


def test_requested_not_after_beyond_the_limits_is_refused(store, ca_settings, hierarchy):
    card_end = (utcnow() + dt.timedelta(days=100)).replace(microsecond=0)
    _, card = issue(store, ca_settings, "card-signature", not_after=card_end)
    with pytest.raises(PolicyViolation, match="card"):
        issue(store, ca_settings, "phone-signature", card_serial=card["serial"],
              not_after=card_end + dt.timedelta(days=1))
    with pytest.raises(PolicyViolation, match="policy"):
        issue(store, ca_settings, "card-signature",
              not_after=utcnow() + dt.timedelta(days=ca_settings.card_validity_days + 1))
    with pytest.raises(PolicyViolation):
        issue(store, ca_settings, "card-signature", not_after=utcnow() - dt.timedelta(minutes=1))


# -- the URLs in certificates resolve on the running CA -----------------------------------------

def _ocsp_status(url: str, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    response = httpx.post(url, content=request.public_bytes(serialization.Encoding.DER),
                          headers={"Content-Type": "application/ocsp-request"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


@pytest.mark.e2e
def test_every_url_in_every_certificate_resolves_on_the_running_ca(ca_server):
    base = ca_server.settings.public_url
    assert base == ca_server.url
    with ca_server.client(admin=True) as client:  # card profiles need the administrator credential
        issued = {}
        for profile in PROFILES:
            body = {"operation_id": f"url-{profile}", "profile": profile, "csr_pem": csr_pem()}
            if profile in SIGNATURE_PROFILES:
                body["person"] = PERSON
            if profile.startswith("phone"):
                body["card_serial"] = issued["card-signature"]["serial"]
            response = client.post("/api/v1/certificates", json=body)
            assert response.status_code == 201, response.text
            issued[profile] = response.json()

    for result in issued.values():
        cert = x509.load_pem_x509_certificate(result["certificate_pem"].encode())
        (ca_issuers,) = aia(cert, AuthorityInformationAccessOID.CA_ISSUERS)
        got = httpx.get(ca_issuers, timeout=30)
        assert got.status_code == 200 and got.headers["content-type"] == "application/pkix-cert"
        issuer = x509.load_der_x509_certificate(got.content)
        cert.verify_directly_issued_by(issuer)

        crl_urls = [(u, False) for u in uris(cert, x509.CRLDistributionPoints)]
        crl_urls += [(u, True) for u in uris(cert, x509.FreshestCRL)]
        assert len(crl_urls) == 2, crl_urls
        for url, delta in crl_urls:
            assert url.startswith(base + "/")
            got = httpx.get(url, timeout=30)
            assert got.status_code == 200 and got.headers["content-type"] == "application/pkix-crl", url
            crl = x509.load_der_x509_crl(got.content)
            assert crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())
            assert has_extension(crl, x509.DeltaCRLIndicator) is delta

        (ocsp_url,) = aia(cert, AuthorityInformationAccessOID.OCSP)
        answer = _ocsp_status(ocsp_url, cert, issuer)
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.serial_number == cert.serial_number
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD

        # And the issuing CA's own pointers: the root's CRL and certificate.
        pointers = [(u, "application/pkix-crl") for u in uris(issuer, x509.CRLDistributionPoints)]
        pointers += [(u, "application/pkix-cert")
                     for u in aia(issuer, AuthorityInformationAccessOID.CA_ISSUERS)]
        assert len(pointers) == 2
        for url, media_type in pointers:
            assert url in (f"{base}/crl/root.crl", f"{base}/ca/root.cer")
            got = httpx.get(url, timeout=30)
            assert got.status_code == 200 and got.headers["content-type"] == media_type, url
            if media_type == "application/pkix-cert":
                issuer.verify_directly_issued_by(x509.load_der_x509_certificate(got.content))
            else:
                assert x509.load_der_x509_crl(got.content).issuer == issuer.issuer


# -- a CA on P-256 ------------------------------------------------------------------------------

def test_p256_ca_issues_ecdsa_certificates_crls_and_ocsp_that_openssl_verifies(store, ca_settings, tmp_path):
    settings = ca_settings.model_copy(update={"key_algorithm": "p256"})
    hierarchy = initialise(store, settings)
    files = {}
    for name in ("root", "sign", "auth", "sign-ocsp", "auth-ocsp"):
        cert = hierarchy.get(name).certificate
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1), name
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256, name
        files[name] = pem_file(tmp_path / f"{name}.pem", cert)

    good, good_issued = issue(store, settings, "card-signature", csr=p256_csr_pem())
    revoked, revoked_issued = issue(store, settings, "card-signature")  # an RSA subject key under an EC CA
    for cert in (good, revoked):
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        cert.verify_directly_issued_by(hierarchy.get("sign").certificate)
    change_status(store, settings, revoked_issued["serial"], StatusAction.REVOKE, "p256-revoke",
                  "keyCompromise")

    crls = {}
    for name in ("sign", "root"):
        crl = x509.load_der_x509_crl(current_crl(store, settings, name, "full").der)
        assert crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert crl.is_signature_valid(hierarchy.get(name).certificate.public_key())
        crls[name] = tmp_path / f"{name}.crl.pem"
        crls[name].write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        shown = openssl("crl", "-in", crls[name], "-noout", "-text", "-CAfile", files[name])
        assert shown.returncode == 0 and "verify OK" in shown.stderr + shown.stdout, shown.stderr
        assert "ecdsa-with-SHA256" in shown.stdout
    delta = x509.load_der_x509_crl(current_crl(store, settings, "sign", "delta").der)
    assert delta.is_signature_valid(hierarchy.get("sign").certificate.public_key())

    good_file = pem_file(tmp_path / "good.pem", good)
    revoked_file = pem_file(tmp_path / "revoked.pem", revoked)
    assert "ecdsa-with-SHA256" in openssl("x509", "-in", good_file, "-noout", "-text").stdout
    base = ["verify", "-x509_strict", "-crl_check_all", "-CAfile", files["root"], "-untrusted", files["sign"],
            "-CRLfile", crls["sign"], "-CRLfile", crls["root"]]
    ok = openssl(*base, good_file)
    assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
    refused = openssl(*base, revoked_file)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr

    # The pre-produced OCSP answers are ECDSA-signed by the delegated responder; openssl checks them offline.
    chain = tmp_path / "chain.pem"
    chain.write_bytes(files["root"].read_bytes() + files["sign"].read_bytes())
    with store.sessions() as session:
        answers = {row.serial: row.der for row in session.scalars(
            select(PreparedOCSPResponse).where(PreparedOCSPResponse.hash_algorithm == "sha1"))}
    for issued, expected in ((good_issued, "good"), (revoked_issued, "revoked")):
        response_file = tmp_path / f"{issued['serial']}.ocsp"
        response_file.write_bytes(answers[issued["serial"]])
        cert_file = good_file if expected == "good" else revoked_file
        result = openssl("ocsp", "-respin", response_file, "-issuer", files["sign"], "-cert", cert_file,
                         "-CAfile", chain, "-resp_text")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Response verify OK" in result.stdout + result.stderr
        assert f"{cert_file}: {expected}" in result.stdout
        assert "ecdsa-with-SHA256" in result.stdout
