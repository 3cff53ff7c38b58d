"""PAdES signing with the key in the secure element, judged by pyHanko against a real mock CA
over HTTP (OCSP and CRLs fetched from the URLs in the certificates, hard-fail).

The phone signature certificate is issued by the CA straight from the SE's CSR: the lifecycle
service's part (proofs, registration) is not what these tests are about.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore

from app_client import flows
from app_client.errors import AppError
from app_client.secure_element import KeySlot
from ca_mock.certificates.service import change_status
from ca_mock.certificates.status_rules import StatusAction
from tests.helpers import PERSON
from tests.pdf_fixtures import PasswordAsked, document  # noqa: F401 (fixtures)
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique  # noqa: F401 (a fixture)
from tests.test_pdf_ltv import _registered_phone

pytestmark = pytest.mark.e2e

# One CA for the module, on SQLite alone as this folder's tests/app_client/conftest.py has it: each test's phone
# is certified for a person of its own under operation ids of its own (``phone``, as tests/test_pdf_ltv.py's), and
# a test revokes or holds only its own phone's certificate, under operation ids of its own (``_change``).
ca_server = shared_servers("pdf", backends=("sqlite",))[0]


@pytest.fixture
def phone(ca_server, tmp_path: Path) -> flows.Phone:
    """As tests/pdf_fixtures.py's ``phone`` (a registered phone, its SE key certified by the CA, the CA chain
    pinned from the card), for a person of its own (named as tests.helpers.PERSON) on the module's CA."""
    return _registered_phone(ca_server, tmp_path / "phone")


def _serial(phone: flows.Phone) -> str:
    pem = phone.se.certificate_pem(KeySlot.SIGNATURE)
    return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")


def _change(ca_server, phone: flows.Phone, action: StatusAction, reason: str | None = None) -> None:
    change_status(ca_server.store, ca_server.settings, _serial(phone), action, unique(f"test-{action.value}"), reason)


def test_sign_with_the_se_key_and_verify(ca_server, phone, document, tmp_path):
    password = PasswordAsked()
    signed = flows.sign_pdf(phone, document, tmp_path / "signed.pdf", password)

    # pyHanko sized the signature with a dry run, then asked for the password exactly once.
    assert password.calls == 1
    assert signed.serial == _serial(phone) and signed.field_name == "JPKI-Signature-1"
    # By default the CA's own TSA, found from the certificate, timestamps the signature.
    assert signed.level == "PAdES B-LT" and signed.tsa == f"{ca_server.settings.public_url}/tsa"
    dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(signed.target.read_bytes())))
    assert dss.ocsps and dss.crls  # the revocation information fetched while signing is embedded

    verdict = flows.verify_pdf(phone, signed.target)
    assert verdict.valid, verdict
    (only,) = verdict.signatures
    assert only.summary.startswith("VALID") and only.serial == signed.serial
    assert only.timestamp is not None and only.timestamp_trusted and only.judged_at is None
    assert only.signer_name == PERSON["name"]
    assert "pinned from the card" in only.trust

    # A stranger's phone has no pinned root: it follows caIssuers to the CA's root, and says so.
    stranger = flows.open_phone(tmp_path / "stranger", "http://127.0.0.1:9")
    fetched = flows.verify_pdf(stranger, signed.target)
    assert fetched.valid
    assert f"fetched from {ca_server.settings.public_url}/ca/root.cer" in fetched.signatures[0].trust

    # A second signature goes into a field of its own.
    again = flows.sign_pdf(phone, signed.target, tmp_path / "twice.pdf", PasswordAsked())
    assert again.field_name == "JPKI-Signature-2"
    assert [s.valid for s in flows.verify_pdf(phone, again.target).signatures] == [True, True]


def test_refusals_write_nothing_and_a_wrong_password_is_counted(phone, document, tmp_path):
    with pytest.raises(AppError, match="wrong phone signature password: 4 tries left"):
        flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked("WRONG2025PW"))
    assert not (tmp_path / "signed.pdf").exists()
    assert phone.se.view(KeySlot.SIGNATURE).tries_left == 4

    (tmp_path / "notes.txt").write_text("hello")
    password = PasswordAsked()
    with pytest.raises(AppError, match="is not a readable PDF"):
        flows.sign_pdf(phone, tmp_path / "notes.txt", tmp_path / "out.pdf", password)
    assert password.calls == 0 and not (tmp_path / "out.pdf").exists()
    with pytest.raises(AppError, match="cannot read"):
        flows.verify_pdf(phone, tmp_path / "missing.pdf")


def test_a_revoked_certificate_is_refused_before_the_password_is_asked(ca_server, phone, document, tmp_path):
    # Without a signature timestamp nothing proves when it was signed (tests/test_pdf_ltv.py has the timestamped case).
    signed = flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked(), timestamp=False)
    _change(ca_server, phone, StatusAction.REVOKE, "keyCompromise")

    password = PasswordAsked()
    refused = r"signing refused: the phone signature certificate is revoked \(key_compromise\)"
    with pytest.raises(AppError, match=refused):
        flows.sign_pdf(phone, document, tmp_path / "after.pdf", password)
    assert password.calls == 0 and not (tmp_path / "after.pdf").exists()

    # The untimestamped document signed before is judged against the status now (hard-fail): revoked.
    verdict = flows.verify_pdf(phone, signed.target)
    assert not verdict.valid
    assert "REVOKED (key_compromise)" in verdict.signatures[0].summary


def test_a_held_certificate_reads_as_suspended(ca_server, phone, document, tmp_path):
    signed = flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked(), timestamp=False)
    _change(ca_server, phone, StatusAction.HOLD)

    with pytest.raises(AppError, match=r"suspended \(certificateHold\)"):
        flows.sign_pdf(phone, document, tmp_path / "after.pdf", PasswordAsked())
    assert "SUSPENDED (certificateHold)" in flows.verify_pdf(phone, signed.target).signatures[0].summary

    _change(ca_server, phone, StatusAction.RELEASE)
    assert flows.verify_pdf(phone, signed.target).valid


def test_an_altered_document_is_invalid(phone, document, tmp_path):
    signed = flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked())
    data = signed.target.read_bytes()
    assert data.count(b"(contract)") == 1
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(data.replace(b"(contract)", b"(contrakt)"))

    verdict = flows.verify_pdf(phone, tampered)
    assert not verdict.valid and "altered after signing" in verdict.signatures[0].summary


def _dummy_tsa() -> tuple[x509.Certificate, DummyTimeStamper]:
    """A test-only TSA acting as its own root (DummyTimeStamper needs an RSA key: LIBRARY_NOTES)."""
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA (not for production)")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    der_key = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    timestamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(der_key),
    )
    return certificate, timestamper


def test_with_a_timestamper_the_signature_is_b_lt(phone, document, tmp_path):
    tsa_root, timestamper = _dummy_tsa()
    signed = flows.sign_pdf(phone, document, tmp_path / "signed.pdf", PasswordAsked(), timestamper, [tsa_root])
    assert signed.level == "PAdES B-LT"

    verdict = flows.verify_pdf(phone, signed.target, tsa_roots=[tsa_root])
    assert verdict.valid, verdict
    assert verdict.signatures[0].timestamp is not None

    # A verifier who does not trust that TSA does not accept the signature.
    untrusted = flows.verify_pdf(phone, signed.target)
    assert not untrusted.valid and "timestamp is not trusted" in untrusted.signatures[0].summary

