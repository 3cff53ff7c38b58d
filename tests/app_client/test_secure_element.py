"""The simulated secure element: keys made and kept inside, secrets checked inside with
persistent retry counters, nothing secret on disk in clear."""
from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from app_client.errors import SecretLocked, WrongSecret
from app_client.secure_element import CertificateMismatch, KeySlot, NoKey, SecureElement
from jpki_common.card_rules import SecretRuleViolation
from jpki_common.owner_proof import proof_message, signature_verifies
from tests.app_client.conftest import PHONE_PASSWORD, PHONE_PIN
from tests.app_client.test_reset_authorisation import authorised_reset

MESSAGE = proof_message("revoke", "reg-1", "challenge-1", "nonce")


def _public_key(se: SecureElement, slot: KeySlot):
    return serialization.load_pem_public_key(se.view(slot).public_key_pem.encode())


def _certificate_for(se: SecureElement, slot: KeySlot) -> str:
    """A certificate for the slot's public key, signed by a throwaway issuer (the SE checks only the key)."""
    return certificate_for_key(se.view(slot).public_key_pem)


def certificate_for_key(public_key_pem: str) -> str:
    """A certificate for ``public_key_pem``, signed by a throwaway issuer."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")])
    now = dt.datetime.now(dt.UTC)
    public_key = serialization.load_pem_public_key(public_key_pem.encode())
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + dt.timedelta(days=1)).sign(issuer_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# -- keys -----------------------------------------------------------------------------------------

def test_enrolment_makes_three_keys_inside_and_hands_out_public_halves_only(tmp_path):
    se = SecureElement(tmp_path / "se")
    enrolment = se.enrol(PHONE_PASSWORD, PHONE_PIN)

    for slot, csr_pem in ((KeySlot.SIGNATURE, enrolment.signature_csr_pem),
                          (KeySlot.AUTHENTICATION, enrolment.authentication_csr_pem)):
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        assert csr.public_key() == _public_key(se, slot)
        assert isinstance(csr.public_key(), rsa.RSAPublicKey) and csr.public_key().key_size == 2048
    assert enrolment.device_public_key_pem == se.view(KeySlot.DEVICE).public_key_pem
    assert len({se.view(slot).public_key_pem for slot in KeySlot}) == 3

    # At rest every private key is encrypted: neither no password nor the owner's secrets open it.
    text = (tmp_path / "se" / "state.json").read_text()
    blobs = re.findall(r"-----BEGIN ENCRYPTED PRIVATE KEY-----[^-]+-----END ENCRYPTED PRIVATE KEY-----", text)
    assert len(blobs) == 3 and "BEGIN PRIVATE KEY" not in text
    for blob in blobs:
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(blob.replace("\\n", "\n").encode(), password=None)
        for guess in (PHONE_PASSWORD, PHONE_PIN):
            with pytest.raises(ValueError):
                serialization.load_pem_private_key(blob.replace("\\n", "\n").encode(), password=guess.encode())
    # Owner-only files, as the chip's memory is nobody else's.
    for path in _files(tmp_path / "se"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_p256_keys_on_request(tmp_path):
    se = SecureElement(tmp_path / "se")
    se.enrol(PHONE_PASSWORD, PHONE_PIN, key_algorithm="p256")
    assert isinstance(_public_key(se, KeySlot.SIGNATURE), ec.EllipticCurvePublicKey)
    signature = se.sign_proof(KeySlot.SIGNATURE, PHONE_PASSWORD, MESSAGE)
    assert signature_verifies(_public_key(se, KeySlot.SIGNATURE), MESSAGE, signature)
    assert se.signature_size(KeySlot.SIGNATURE) == 72


def test_no_public_method_gives_a_private_key(se):
    for name in dir(se):
        if name.startswith("_"):
            continue
        value = getattr(se, name)
        assert not isinstance(value, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)), name


def test_proofs_verify_with_the_slot_key_and_the_device_key_needs_no_secret(se):
    for slot, secret in ((KeySlot.SIGNATURE, PHONE_PASSWORD), (KeySlot.AUTHENTICATION, PHONE_PIN),
                         (KeySlot.DEVICE, None)):
        signature = se.sign_proof(slot, secret, MESSAGE)
        assert signature_verifies(_public_key(se, slot), MESSAGE, signature), slot
        other = KeySlot.DEVICE if slot != KeySlot.DEVICE else KeySlot.SIGNATURE
        assert not signature_verifies(_public_key(se, other), MESSAGE, signature)
    with pytest.raises(ValueError, match="takes no secret"):
        se.sign(KeySlot.DEVICE, "anything", b"data")
    with pytest.raises(ValueError, match="needs its phone signature password"):
        se.sign(KeySlot.SIGNATURE, None, b"data")
    assert se.signature_size(KeySlot.SIGNATURE) == 256


# -- the signature password -----------------------------------------------------------------------

def test_password_rules_are_the_cards_and_lower_case_is_folded(tmp_path):
    se = SecureElement(tmp_path / "se")
    for bad, part in (("ABC12", "6-16"), ("A" * 17, "6-16"), ("ABCDEFG", "at least one of each"),
                      ("1234567", "at least one of each"), ("ABC-123", "6-16")):
        with pytest.raises(SecretRuleViolation, match=part) as refused:
            se.enrol(bad, PHONE_PIN)
        assert bad not in str(refused.value)
    with pytest.raises(SecretRuleViolation, match="4 digits"):
        se.enrol(PHONE_PASSWORD, "12345")
    assert not se.holds_keys()

    se.enrol(PHONE_PASSWORD.lower(), PHONE_PIN)
    assert se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"x")
    assert se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD.lower(), b"x")


def test_a_wrong_password_spends_a_try_that_survives_a_restart(se):
    with pytest.raises(WrongSecret, match="wrong phone signature password: 4 tries left") as refused:
        se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    assert refused.value.tries_left == 4
    assert "WRONG2025PW" not in str(refused.value)
    assert SecureElement(se.folder).view(KeySlot.SIGNATURE).tries_left == 4  # read from disk again


def test_five_wrong_passwords_lock_the_key_even_against_the_right_one(se):
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongSecret) as refused:
            se.sign(KeySlot.SIGNATURE, f"WRONG{left}X", b"data")
        assert refused.value.tries_left == left
    with pytest.raises(WrongSecret, match="now locked; initialise it with your My Number card"):
        se.sign(KeySlot.SIGNATURE, "WRONG0X", b"data")

    with pytest.raises(SecretLocked, match="locked after 5 wrong entries") as locked:
        se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")
    assert PHONE_PASSWORD not in str(locked.value)
    assert se.view(KeySlot.SIGNATURE).tries_left == 0
    # The lock is the signature key's only: the PIN key still works.
    assert se.sign(KeySlot.AUTHENTICATION, PHONE_PIN, b"data")


def test_a_correct_entry_resets_the_counter(se):
    for _ in range(3):
        with pytest.raises(WrongSecret):
            se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    assert se.view(KeySlot.SIGNATURE).tries_left == 2
    se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")
    assert se.view(KeySlot.SIGNATURE).tries_left == 5


def test_a_secret_that_breaks_the_rule_costs_no_try(se):
    with pytest.raises(SecretRuleViolation):
        se.sign(KeySlot.SIGNATURE, "short", b"data")
    with pytest.raises(SecretRuleViolation):
        se.sign(KeySlot.AUTHENTICATION, "12a4", b"data")
    assert se.view(KeySlot.SIGNATURE).tries_left == 5
    assert se.view(KeySlot.AUTHENTICATION).tries_left == 3


def test_reset_sets_a_new_password_and_clears_the_lock(se):
    for _ in range(5):
        with pytest.raises(WrongSecret):
            se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    with pytest.raises(SecretLocked):
        se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")

    authorised_reset(se, "newpass99")

    assert se.view(KeySlot.SIGNATURE).tries_left == 5
    signature = se.sign_proof(KeySlot.SIGNATURE, "NEWPASS99", MESSAGE)
    assert signature_verifies(_public_key(se, KeySlot.SIGNATURE), MESSAGE, signature)  # same key as before
    with pytest.raises(WrongSecret):
        se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")
    with pytest.raises(SecretRuleViolation):
        authorised_reset(se, "nodigits")


# -- the PIN --------------------------------------------------------------------------------------

def test_three_wrong_pins_lock_the_authentication_key(se):
    for left in (2, 1):
        with pytest.raises(WrongSecret) as refused:
            se.sign_proof(KeySlot.AUTHENTICATION, "0000", MESSAGE)
        assert refused.value.tries_left == left
    with pytest.raises(WrongSecret, match="now locked"):
        se.sign_proof(KeySlot.AUTHENTICATION, "0000", MESSAGE)
    with pytest.raises(SecretLocked, match="PIN is locked after 3 wrong entries"):
        se.sign_proof(KeySlot.AUTHENTICATION, PHONE_PIN, MESSAGE)
    assert SecureElement(se.folder).view(KeySlot.AUTHENTICATION).tries_left == 0
    assert se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")  # the other key is not locked


# -- nothing secret at rest -----------------------------------------------------------------------

def test_no_secret_is_stored_in_clear(tmp_path):
    folder = tmp_path / "se"
    se = SecureElement(folder)
    se.enrol(PHONE_PASSWORD, PHONE_PIN)
    se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")
    with pytest.raises(WrongSecret):
        se.sign(KeySlot.SIGNATURE, "OTHER2025PW", b"data")
    se.sign(KeySlot.AUTHENTICATION, PHONE_PIN, b"data")
    authorised_reset(se, "RESET2026PW")

    contents = b"".join(path.read_bytes() for path in _files(folder))
    for secret in (PHONE_PASSWORD, PHONE_PASSWORD.lower(), "OTHER2025PW", "RESET2026PW"):
        assert secret.encode() not in contents, secret
    # Four digits may occur by chance inside base64 (keys, argon2 hashes); never standing alone.
    base64_char = rb"[A-Za-z0-9+/=$]"
    for match in re.finditer(PHONE_PIN.encode(), contents):
        before, after = contents[match.start() - 1:match.start()], contents[match.end():match.end() + 1]
        assert re.fullmatch(base64_char, before) and re.fullmatch(base64_char, after), contents[
            match.start() - 20:match.end() + 20]
    # argon2 verifiers, not hashes of any faster kind.
    assert contents.count(b"$argon2id$") == 2
    # Writes are atomic: no temporary file is left behind.
    assert sorted(p.name for p in _files(folder)) == ["master.key", "state.json"]


# -- certificates and deletion --------------------------------------------------------------------

def test_certificates_are_kept_only_for_their_own_key(se):
    pem = _certificate_for(se, KeySlot.SIGNATURE)
    with pytest.raises(CertificateMismatch, match="does not certify the authentication key"):
        se.store_certificate(KeySlot.AUTHENTICATION, pem)
    assert se.certificate_pem(KeySlot.AUTHENTICATION) is None

    se.store_certificate(KeySlot.SIGNATURE, pem)
    assert SecureElement(se.folder).certificate_pem(KeySlot.SIGNATURE) == pem


def test_one_registration_at_a_time_and_deletion_empties_the_se(se):
    se.bind("reg-1")
    se.store_certificate(KeySlot.SIGNATURE, _certificate_for(se, KeySlot.SIGNATURE))
    with pytest.raises(Exception, match="already holds registration reg-1"):
        se.enrol(PHONE_PASSWORD, PHONE_PIN)

    se.delete_registration()

    assert se.registration_id is None and not se.holds_keys()
    assert "PRIVATE KEY" not in (se.folder / "state.json").read_text()
    for slot, secret in ((KeySlot.SIGNATURE, PHONE_PASSWORD), (KeySlot.AUTHENTICATION, PHONE_PIN),
                         (KeySlot.DEVICE, None)):
        with pytest.raises(NoKey, match="register this phone first"):
            se.sign(slot, secret, b"data")
    with pytest.raises(NoKey):
        se.bind("reg-2")
    se.enrol(PHONE_PASSWORD, PHONE_PIN)  # a new enrolment is possible again
    assert se.holds_keys() and se.registration_id is None


def test_an_unbound_enrolment_is_replaced_by_the_next(se):
    before = se.view(KeySlot.SIGNATURE).public_key_pem
    se.enrol(PHONE_PASSWORD, PHONE_PIN)
    assert se.view(KeySlot.SIGNATURE).public_key_pem != before


# -- a new signature key (lifting a suspension) ---------------------------------------------------

def _registered(se: SecureElement) -> SecureElement:
    """The fixture's SE as after registering: bound, both certificates in."""
    se.bind("reg-1")
    for slot in (KeySlot.SIGNATURE, KeySlot.AUTHENTICATION):
        se.store_certificate(slot, _certificate_for(se, slot))
    return se


def _private_keys_at_rest(se: SecureElement) -> list:
    """Every private key in the state file, decrypted with the SE's master secret (the test plays the chip)."""
    text = (se.folder / "state.json").read_text()
    master = (se.folder / "master.key").read_bytes().strip()
    blobs = re.findall(r"-----BEGIN ENCRYPTED PRIVATE KEY-----[^-]+-----END ENCRYPTED PRIVATE KEY-----", text)
    return [serialization.load_pem_private_key(blob.replace("\\n", "\n").encode(), password=master)
            for blob in blobs]


def _pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_new_signature_key_is_staged_beside_the_working_one_which_keeps_working(se):
    _registered(se)
    before = {slot: se.view(slot) for slot in KeySlot}

    csr = x509.load_pem_x509_csr(se.stage_new_signature_key().encode())

    assert csr.is_signature_valid
    new_key = _pem(csr.public_key())
    assert se.staged_signature_public_key_pem == new_key
    assert new_key not in {view.public_key_pem for view in before.values()}
    assert isinstance(csr.public_key(), rsa.RSAPublicKey) and csr.public_key().key_size == 2048
    # Nothing the owner relies on moved: the working key still signs, under its certificate.
    assert {slot: se.view(slot) for slot in KeySlot} == before
    signature = se.sign_proof(KeySlot.SIGNATURE, PHONE_PASSWORD, MESSAGE)
    assert signature_verifies(_public_key(se, KeySlot.SIGNATURE), MESSAGE, signature)
    # A second request (the first refused, or its answer lost) sends the same staged key again.
    again = x509.load_pem_x509_csr(se.stage_new_signature_key().encode())
    assert _pem(again.public_key()) == new_key
    # Made inside, kept encrypted at rest like the others.
    assert len(_private_keys_at_rest(se)) == 4 and "BEGIN PRIVATE KEY" not in (se.folder / "state.json").read_text()


def test_installing_replaces_the_signature_key_and_keeps_the_password_and_its_counter(se):
    _registered(se)
    old_key = se.view(KeySlot.SIGNATURE).public_key_pem
    others = {slot: se.view(slot) for slot in (KeySlot.AUTHENTICATION, KeySlot.DEVICE)}
    with pytest.raises(WrongSecret):
        se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    new_key = _pem(x509.load_pem_x509_csr(se.stage_new_signature_key().encode()).public_key())
    certificate = certificate_for_key(new_key)
    assert se.certifies_staged_signature_key(certificate)
    assert not se.certifies_staged_signature_key(_certificate_for(se, KeySlot.SIGNATURE))

    se.install_staged_signature_key(certificate)

    view = SecureElement(se.folder).view(KeySlot.SIGNATURE)
    assert (view.public_key_pem, view.certificate_pem) == (new_key, certificate)
    assert (view.tries_left, view.max_tries) == (4, 5)  # the same counter: a lift is no free reset
    assert se.staged_signature_public_key_pem is None and not se.certifies_staged_signature_key(certificate)
    assert {slot: se.view(slot) for slot in others} == others  # authentication and device keys untouched
    assert se.registration_id == "reg-1"
    # The same password unlocks the new key; the old key is gone from the SE for good.
    signature = se.sign_proof(KeySlot.SIGNATURE, PHONE_PASSWORD, MESSAGE)
    assert signature_verifies(_public_key(se, KeySlot.SIGNATURE), MESSAGE, signature)
    assert not signature_verifies(serialization.load_pem_public_key(old_key.encode()), MESSAGE, signature)
    assert se.view(KeySlot.SIGNATURE).tries_left == 5
    at_rest = {_pem(key.public_key()) for key in _private_keys_at_rest(se)}
    assert len(at_rest) == 3 and new_key in at_rest and old_key not in at_rest
    contents = b"".join(path.read_bytes() for path in _files(se.folder))
    assert PHONE_PASSWORD.encode() not in contents


def test_a_locked_password_stays_locked_on_the_new_key(se):
    _registered(se)
    for _ in range(5):
        with pytest.raises(WrongSecret):
            se.sign(KeySlot.SIGNATURE, "WRONG2025PW", b"data")
    se.stage_new_signature_key()

    se.install_staged_signature_key()  # the certificate is not issued yet (202)

    assert se.certificate_pem(KeySlot.SIGNATURE) is None
    with pytest.raises(SecretLocked):
        se.sign(KeySlot.SIGNATURE, PHONE_PASSWORD, b"data")
    authorised_reset(se, "RESET2026PW")
    assert se.sign(KeySlot.SIGNATURE, "RESET2026PW", b"data")


def test_the_certificate_may_follow_the_installed_key(se):
    _registered(se)
    se.stage_new_signature_key()
    new_key = se.staged_signature_public_key_pem
    se.install_staged_signature_key()

    assert se.view(KeySlot.SIGNATURE).public_key_pem == new_key and se.certificate_pem(KeySlot.SIGNATURE) is None
    certificate = certificate_for_key(new_key)
    se.store_certificate(KeySlot.SIGNATURE, certificate)
    assert se.certificate_pem(KeySlot.SIGNATURE) == certificate


def test_a_certificate_for_another_key_installs_nothing(se):
    _registered(se)
    with pytest.raises(NoKey, match="no new signature key to install"):
        se.install_staged_signature_key()
    se.stage_new_signature_key()
    before = (se.folder / "state.json").read_bytes()

    with pytest.raises(CertificateMismatch, match="does not certify the new signature key"):
        se.install_staged_signature_key(_certificate_for(se, KeySlot.SIGNATURE))

    assert (se.folder / "state.json").read_bytes() == before


def test_a_staged_key_goes_with_the_registration_and_needs_one(se, tmp_path):
    with pytest.raises(NoKey, match="register this phone first"):
        SecureElement(tmp_path / "empty").stage_new_signature_key()
    _registered(se)
    se.stage_new_signature_key()

    se.delete_registration()

    assert se.staged_signature_public_key_pem is None
    se.enrol(PHONE_PASSWORD, PHONE_PIN)
    assert se.staged_signature_public_key_pem is None
    with pytest.raises(NoKey):
        se.install_staged_signature_key()


def test_the_new_key_has_the_algorithm_of_the_old_one(tmp_path):
    se = SecureElement(tmp_path / "se")
    se.enrol(PHONE_PASSWORD, PHONE_PIN, key_algorithm="p256")
    csr = x509.load_pem_x509_csr(se.stage_new_signature_key().encode())
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    se.install_staged_signature_key()
    assert se.view(KeySlot.SIGNATURE).algorithm == "p256" and se.signature_size(KeySlot.SIGNATURE) == 72
