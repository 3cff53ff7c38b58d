"""The phone's secure element (SE), simulated in a folder ``<home>/se/``.

A real SE is a chip (GlobalPlatform on Android): keys are generated inside it, never leave it,
and it checks the password or PIN itself, with a retry counter that survives power loss.
It is not erased by a factory reset of the phone, nor by uninstalling the app. This module is
the only code that touches the folder, and it keeps the same promises in software:

- keys are generated here and no method returns a private key: callers get CSRs, public keys
  and signatures, and must hand in the secret with the data for every signature;
- the phone signature key is unlocked by the signature password (6-16 of A-Z/0-9, lower case
  folded to upper: the card's rule), the user-authentication key by a 4-digit PIN, and the device
  key (registered with the service at enrolment) needs no secret;
- a password/PIN is stored only as an argon2 hash and checked here, with a persistent retry
  counter: 5 wrong passwords or 3 wrong PINs lock the key, and a locked key refuses even the
  right secret until reset; a correct entry resets the counter;
- the signature password is reset only on a statement signed by the service's statement key,
  pinned at registration, for this registration and this signature key, fresh and used once
  (jpki_common/reset_authorisation.py): an unsigned or forged "reset allowed" changes nothing;
- private keys at rest are PKCS#8-encrypted under a random master secret kept in ``master.key``
  (0600). That file stands in for the chip's internal key: it protects the key files against
  casual copying, not against someone who can read the whole folder, which a real chip would
  prevent in hardware.

Every change is one atomic rewrite of ``state.json`` under a folder lock.

The chip's own *attestation key*, made once and certified by its (simulated) maker (app_client/se_maker.py),
signs what the SE holds for a service challenge (``attest``: a dealer's check, docs/dealers.md); it is never
deleted, and the SE keeps the ids of the registrations whose keys it deleted, which the statement lists.

Lifting a suspension replaces the phone signature key (DESIGN.md 2.8: the signature certificate is
reissued to a new key, never reinstated). The new key is made here and *staged* beside the
working one; it takes the signature slot only when the service has accepted its CSR, so a refused
or unanswered request leaves the phone as it was.
"""
from __future__ import annotations

import datetime as dt
import enum
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app_client import storage
from app_client.errors import AppError
from app_client.messages import N_, _
from app_client.owner_secrets import AUTH_PIN, SIGN_PASSWORD, OwnerSecret
from app_client.retry_counter import spend_try
from jpki_common import keys, reset_authorisation, se_attestation
from jpki_common.card_rules import PIN_TRIES, SIGNATURE_PASSWORD_TRIES
from jpki_common.owner_proof import sign_message

SE_FORMAT = "jpki-app-se/1"
# Where a new signature key waits in state.json until the service accepts it (absent: none waits).
_STAGED_SIGNATURE_KEY = "staged_signature_key"
# The service's statement key, pinned at registration: only what it signs may reset the password.
_SERVICE_STATEMENT_KEY = "service_statement_key_pem"
# The owner token that reads this registration at the service: kept with the registration it reads, so
# it survives a factory reset and goes with the registration (a reinstalled app still reads it).
_OWNER_TOKEN = "owner_token"
# The reset authorisations already acted on (their statement ids), so none serves twice.
_USED_RESET_STATEMENTS = "used_reset_statements"
_USED_RESET_STATEMENTS_KEPT = 32
# The attestation key, made once with its maker's certificate (app_client/se_maker.py); never deleted: it is
# the chip's, not a registration's. And the registrations whose keys this SE deleted (it tells them in its
# attested statement, docs/dealers.md), the newest last.
_ATTESTATION = "attestation"
_ENDED_REGISTRATIONS = "ended_registrations"
_ENDED_REGISTRATIONS_KEPT = 32


class KeySlot(str, enum.Enum):
    """The SE's three keys. The values are the certificate kinds of docs/service-api.md."""

    SIGNATURE = "signature"
    AUTHENTICATION = "authentication"
    DEVICE = "device"


@dataclass(frozen=True)
class _Guard:
    """How a slot's secret is checked: its name and rule, its tries, and what to tell a locked-out owner."""

    secret: OwnerSecret
    max_tries: int
    remedy_message: str  # marked with N_, translated when shown

    @property
    def what(self) -> str:
        return self.secret.name

    @property
    def remedy(self) -> str:
        return _(self.remedy_message)

    def normalise(self, value: str) -> str:
        return self.secret.check(value)


_GUARDS: dict[KeySlot, _Guard] = {
    KeySlot.SIGNATURE: _Guard(SIGN_PASSWORD, SIGNATURE_PASSWORD_TRIES,
                              N_("initialise it with your My Number card (jpki-app reset-password)")),
    KeySlot.AUTHENTICATION: _Guard(AUTH_PIN, PIN_TRIES, N_("revoke the certificates and register this phone again")),
}


# The owner's words for a slot's certificate (the same words as the CLI's: "signature" reads 署名用電子証明書).
_CERTIFICATE_WORDS = {KeySlot.SIGNATURE: N_("signature"), KeySlot.AUTHENTICATION: N_("authentication")}
# What an empty slot is told with, per slot (one sentence each: the key's name is part of the sentence).
_NO_KEY = {
    KeySlot.SIGNATURE: N_("the secure element holds no phone signature key; register this phone first"),
    KeySlot.AUTHENTICATION: N_("the secure element holds no phone authentication key; register this phone first"),
    KeySlot.DEVICE: N_("the secure element holds no phone device key; register this phone first"),
}


def _certificate_word(slot: KeySlot) -> str:
    word = _CERTIFICATE_WORDS.get(slot)
    return _(word) if word is not None else slot.value


class NoKey(AppError):
    """The slot holds no key (nothing registered, or deleted)."""


class CertificateMismatch(AppError):
    """A certificate offered to the SE does not certify the key in that slot."""


class ResetRefused(AppError):
    """The password-reset authorisation is missing, unsigned, forged, expired or for another
    registration or key: the password is unchanged."""


@dataclass(frozen=True)
class Enrolment:
    """What enrolment hands out: the public halves only, as CSRs and a public key."""

    signature_csr_pem: str
    authentication_csr_pem: str
    device_public_key_pem: str


@dataclass(frozen=True)
class SlotView:
    """The public view of one slot."""

    slot: KeySlot
    algorithm: str
    public_key_pem: str
    certificate_pem: str | None
    tries_left: int | None  # None: the device key has no secret
    max_tries: int | None


class SecureElement:
    """The SE in ``folder``. ``hasher``: argon2 parameters (default: argon2-cffi's RFC 9106 profile)."""

    def __init__(self, folder: Path, hasher: PasswordHasher | None = None) -> None:
        self.folder = folder
        self._hasher = hasher or PasswordHasher()

    # -- what anyone may read ------------------------------------------------------------------

    @property
    def registration_id(self) -> str | None:
        """The registration the keys and certificates in the SE belong to (None before binding)."""
        return self._load()["registration_id"]

    def holds_keys(self) -> bool:
        return bool(self._load()["slots"])

    def view(self, slot: KeySlot) -> SlotView:
        data = self._slot(self._load(), slot)
        return SlotView(slot, data["algorithm"], data["public_key_pem"], data["certificate_pem"],
                        data.get("tries_left"), data.get("max_tries"))

    def certificate_pem(self, slot: KeySlot) -> str | None:
        return self._slot(self._load(), slot)["certificate_pem"]

    def signature_size(self, slot: KeySlot) -> int:
        """The largest signature the slot's key makes, in bytes (to size a PDF signature)."""
        public_key = serialization.load_pem_public_key(self.view(slot).public_key_pem.encode())
        if isinstance(public_key, rsa.RSAPublicKey):
            return (public_key.key_size + 7) // 8
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        return 2 * ((public_key.curve.key_size + 7) // 8) + 8  # DER SEQUENCE of two INTEGERs, at most

    # -- enrolment and certificates --------------------------------------------------------------

    def enrol(self, signature_password: str, pin: str, key_algorithm: str = "rsa2048") -> Enrolment:
        """Make the three key pairs inside the SE, set the two secrets, return the CSRs.

        Refused while the SE is bound to a registration: one phone holds one registration, and
        the old one must be revoked (or found stale) and deleted first. Keys left by an
        enrolment that never got bound (the service refused it) are replaced.
        """
        secrets_by_slot = {
            KeySlot.SIGNATURE: _GUARDS[KeySlot.SIGNATURE].normalise(signature_password),
            KeySlot.AUTHENTICATION: _GUARDS[KeySlot.AUTHENTICATION].normalise(pin),
        }
        with self._changing() as state:
            if state["registration_id"] is not None:
                raise AppError(_("the secure element already holds registration {id}; revoke it before registering "
                                 "again").format(id=state["registration_id"]))
            csrs: dict[KeySlot, str] = {}
            state["slots"] = {}
            state.pop(_STAGED_SIGNATURE_KEY, None)
            for slot in KeySlot:
                key, data = self._new_key(key_algorithm)
                data["certificate_pem"] = None
                if slot in _GUARDS:
                    guard = _GUARDS[slot]
                    data.update(verifier=self._hasher.hash(secrets_by_slot[slot]),
                                tries_left=guard.max_tries, max_tries=guard.max_tries)
                    csrs[slot] = keys.csr_pem(key, "jpki-app secure element")
                state["slots"][slot.value] = data
        return Enrolment(csrs[KeySlot.SIGNATURE], csrs[KeySlot.AUTHENTICATION],
                         state["slots"][KeySlot.DEVICE.value]["public_key_pem"])

    def bind(self, registration_id: str, service_statement_key_pem: str | None = None,
             owner_token: str | None = None) -> None:
        """Record which registration the keys belong to, once the service has accepted them, and
        pin the service's statement key that came with that answer (what signs reset authorisations);
        keep the owner token that reads the registration."""
        with self._changing() as state:
            if not state["slots"]:
                raise NoKey(_("the secure element holds no keys to bind"))
            state["registration_id"] = registration_id
            if service_statement_key_pem is not None:
                state[_SERVICE_STATEMENT_KEY] = _checked_statement_key(service_statement_key_pem)
            if owner_token is not None:
                state[_OWNER_TOKEN] = owner_token

    @property
    def owner_token(self) -> str | None:
        """The token that reads this registration at the service (None: none yet)."""
        return self._load().get(_OWNER_TOKEN)

    def keep_owner_token(self, owner_token: str) -> None:
        """A new owner token for the bound registration (the device key asked for it)."""
        with self._changing() as state:
            if state["registration_id"] is None:
                raise NoKey(_("the secure element holds no registration to keep a token for"))
            state[_OWNER_TOKEN] = owner_token

    @property
    def service_statement_key_pem(self) -> str | None:
        """The pinned service statement key (None: none pinned yet)."""
        return self._load().get(_SERVICE_STATEMENT_KEY)

    def pin_service_statement_key(self, public_key_pem: str) -> None:
        """Pin the service's statement key once, for an SE bound before the service sent it.

        A key already pinned is never replaced: a different one is refused.
        """
        pem = _checked_statement_key(public_key_pem)
        with self._changing() as state:
            pinned = state.get(_SERVICE_STATEMENT_KEY)
            if pinned is not None and pinned != pem:
                raise ResetRefused(_("the secure element already trusts another service statement key; it is "
                                     "never replaced (register again to trust a new one)"))
            state[_SERVICE_STATEMENT_KEY] = pem

    def store_certificate(self, slot: KeySlot, certificate_pem: str) -> None:
        """Write a certificate into its slot, only if it certifies that slot's key."""
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        with self._changing() as state:
            data = self._slot(state, slot)
            if _public_pem(certificate) != data["public_key_pem"]:
                raise CertificateMismatch(_("the {kind} certificate {serial} does not certify the {kind} key in the "
                                            "secure element").format(kind=_certificate_word(slot),
                                                                     serial=format(certificate.serial_number, "x")))
            data["certificate_pem"] = certificate_pem

    def delete_registration(self) -> None:
        """Delete every key and certificate, and the registration id (revoke, uninstall, stale)."""
        with self._changing() as state:
            if state["registration_id"] is not None:
                ended = [e for e in state.get(_ENDED_REGISTRATIONS, []) if e != state["registration_id"]]
                state[_ENDED_REGISTRATIONS] = [*ended, state["registration_id"]][-_ENDED_REGISTRATIONS_KEPT:]
            state["registration_id"] = None
            state["slots"] = {}
            state.pop(_STAGED_SIGNATURE_KEY, None)
            state.pop(_SERVICE_STATEMENT_KEY, None)  # pinned for that registration; the next one brings its own
            state.pop(_OWNER_TOKEN, None)  # the app's record of the ended registration keeps its own copy

    # -- attestation: what the SE holds, signed by the chip's own key -------------------------------

    def attestation_certificate_pem(self) -> str:
        """The maker's certificate for this SE's attestation key (the key is made, and certified, once)."""
        with self._changing() as state:
            return self._attestation(state)["certificate_pem"]

    def attest(self, challenge_id: str, nonce: str) -> tuple[bytes, str]:
        """The statement of what this SE holds, for a service challenge, and the attestation key's signature
        over it (jpki_common/se_attestation.py): the bytes and the base64 signature. Needs no secret."""
        with self._changing() as state:
            attestation = self._attestation(state)
            held = []
            if state["slots"] or state["registration_id"] is not None:
                slots = sorted(state["slots"]) + ([_STAGED_SIGNATURE_KEY] if state.get(_STAGED_SIGNATURE_KEY) else [])
                held.append({"registration_id": state["registration_id"], "slots": slots})
            statement = se_attestation.statement_bytes(challenge_id, nonce, held,
                                                       list(state.get(_ENDED_REGISTRATIONS, [])))
        return statement, sign_message(self._private_key(attestation), statement)

    def _attestation(self, state: dict[str, Any]) -> dict[str, Any]:
        attestation = state.get(_ATTESTATION)
        if attestation is None:
            from app_client.se_maker import certify_attestation_key

            key, attestation = self._new_key("p256")
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            attestation["certificate_pem"] = certify_attestation_key(key.public_key())
            state[_ATTESTATION] = attestation
        return attestation

    # -- a new signature key (lifting a suspension) ----------------------------------------------

    @property
    def staged_signature_public_key_pem(self) -> str | None:
        """The public half of the new signature key waiting to take the slot (None: none waits)."""
        staged = self._load().get(_STAGED_SIGNATURE_KEY)
        return staged["public_key_pem"] if staged else None

    def stage_new_signature_key(self) -> str:
        """Make a new signature key pair inside the SE, beside the working one, and return its CSR.

        Lifting a suspension revokes the phone signature certificate and has a new one issued to
        a new key (DESIGN.md 2.8), so the CSR sent with the lift must be for a key the service
        has never seen. The key is only *staged*: the working key and its certificate stay in
        the slot until :meth:`install_staged_signature_key`, which the app calls once the service
        has accepted the CSR. A refused request therefore changes nothing the owner relies on.

        A key already staged is reused rather than replaced: if an earlier request reached the
        service but its answer was lost, the certificate the service issued certifies that key,
        and a fresh one would leave the certificate without its key. The new key uses the same
        algorithm as the working one. Nothing secret leaves the SE: only the CSR.
        """
        with self._changing() as state:
            working = self._slot(state, KeySlot.SIGNATURE)
            staged = state.get(_STAGED_SIGNATURE_KEY)
            if staged is None:
                key, state[_STAGED_SIGNATURE_KEY] = self._new_key(working["algorithm"])
            else:
                key = self._private_key(staged)
            return keys.csr_pem(key, "jpki-app secure element")

    def discard_staged_signature_key(self) -> None:
        """Destroy the staged key (one no request has carried yet: the owner's proof failed first)."""
        with self._changing() as state:
            state.pop(_STAGED_SIGNATURE_KEY, None)

    def certifies_staged_signature_key(self, certificate_pem: str) -> bool:
        """Whether ``certificate_pem`` is for the staged new signature key (False when none waits)."""
        staged = self.staged_signature_public_key_pem
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        return staged is not None and _public_pem(certificate) == staged

    def install_staged_signature_key(self, certificate_pem: str | None = None) -> None:
        """Put the staged key into the signature slot, destroying the old key and its certificate.

        Called once the service has accepted the staged key's CSR: from then on the service
        proves the owner's revocation with the new key, and the old key's certificate is revoked,
        so the old key has no use left. ``certificate_pem`` is the new certificate when it is
        already issued (else it arrives later through :meth:`store_certificate`); one that does
        not certify the staged key is refused and nothing changes.

        The new key is guarded by the same signature password and the same retry counter: the
        owner's password did not change, and a lift must not become a way to reset a counter or
        clear a lock (that is ``reset_signature_password``'s job, with its own card proof).
        """
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode()) if certificate_pem else None
        with self._changing() as state:
            working = self._slot(state, KeySlot.SIGNATURE)
            staged = state.get(_STAGED_SIGNATURE_KEY)
            if staged is None:
                raise NoKey(_("the secure element holds no new signature key to install"))
            if certificate is not None and _public_pem(certificate) != staged["public_key_pem"]:
                raise CertificateMismatch(_("the signature certificate {serial} does not certify the new signature "
                                            "key in the secure element").format(
                    serial=format(certificate.serial_number, "x")))
            working.update(algorithm=staged["algorithm"], public_key_pem=staged["public_key_pem"],
                           private_key_pem=staged["private_key_pem"], certificate_pem=certificate_pem)
            del state[_STAGED_SIGNATURE_KEY]

    def reset_signature_password(self, new_password: str, authorisation: object,
                                 now: dt.datetime | None = None) -> None:
        """Set a new signature password and clear its lock, on the service's signed say-so.

        ``authorisation``: the ``authorisation`` of the service's answer to POST .../reset-password
        (the card that registered this phone proved itself there), as received. The SE accepts it
        only if it is signed by the service statement key pinned at registration, for a password
        reset of this registration and of the key in the signature slot, fresh, and not used before
        (jpki_common/reset_authorisation.py). Otherwise :class:`ResetRefused` and nothing changes.
        """
        guard = _GUARDS[KeySlot.SIGNATURE]
        verifier = self._hasher.hash(guard.normalise(new_password))
        with self._changing() as state:
            data = self._slot(state, KeySlot.SIGNATURE)
            pinned, registration_id = state.get(_SERVICE_STATEMENT_KEY), state["registration_id"]
            if pinned is None or registration_id is None:
                raise ResetRefused(_("the secure element holds no service statement key to check a reset "
                                     "authorisation with: the password is unchanged"))
            try:
                statement = reset_authorisation.ResetAuthorisation.from_json(authorisation)
                reset_authorisation.verify(statement, pinned, registration_id,
                                           reset_authorisation.key_fingerprint(data["public_key_pem"]), now)
            except reset_authorisation.StatementRefused as exc:
                raise ResetRefused(_("{reason}; the password is unchanged").format(reason=exc)) from None
            used = state.setdefault(_USED_RESET_STATEMENTS, [])
            if statement.statement_id in used:
                raise ResetRefused(_("this reset authorisation was already used; the password is unchanged"))
            used[:] = [*used, statement.statement_id][-_USED_RESET_STATEMENTS_KEPT:]
            data.update(verifier=verifier, tries_left=guard.max_tries)

    # -- using the keys --------------------------------------------------------------------------

    def sign(self, slot: KeySlot, secret: str | None, data: bytes) -> bytes:
        """Raw signature over ``data`` (RSA PKCS#1 v1.5 or ECDSA, SHA-256) with the slot's key."""
        return keys.sign_sha256(self._unlock(slot, secret), data)

    def sign_proof(self, slot: KeySlot, secret: str | None, message: bytes) -> str:
        """A proof for the service: the protocol's signature (base64) over a proof message."""
        return sign_message(self._unlock(slot, secret), message)

    # -- inside the chip -------------------------------------------------------------------------

    def _unlock(self, slot: KeySlot, secret: str | None) -> keys.CAPrivateKey:
        """Check the slot's secret under its retry counter and return the key, for this module only."""
        guard = _GUARDS.get(slot)
        if guard is None:
            if secret is not None:
                raise ValueError(f"the {slot.value} key takes no secret")
            return self._private_key(self._slot(self._load(), slot))
        if secret is None:
            raise ValueError(f"the {slot.value} key needs its {guard.what}")
        # A secret that breaks the rule cannot be right: refused before it reaches the chip, no try spent.
        candidate = guard.normalise(secret)
        with self._changing() as state:
            data = self._slot(state, slot)
            spend_try(data, lambda: self._save(state), lambda: self._verifies(data["verifier"], candidate) or None,
                      guard.what, guard.remedy)
            return self._private_key(data)

    def _new_key(self, key_algorithm: str) -> tuple[keys.CAPrivateKey, dict[str, Any]]:
        """A fresh key pair and its record: the public half, and the private half encrypted at rest."""
        key = keys.generate_private_key(key_algorithm)
        return key, {
            "algorithm": key_algorithm,
            "public_key_pem": _public_pem(key),
            "private_key_pem": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self._master_secret()),
            ).decode(),
        }

    def _verifies(self, verifier: str, candidate: str) -> bool:
        try:
            return self._hasher.verify(verifier, candidate)
        except (VerificationError, InvalidHashError):
            return False

    def _private_key(self, data: dict[str, Any]) -> keys.CAPrivateKey:
        key = serialization.load_pem_private_key(data["private_key_pem"].encode(), password=self._master_secret())
        assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        return key

    def _master_secret(self) -> bytes:
        path = self.folder / "master.key"
        if not path.exists():
            storage.write_bytes(path, secrets.token_hex(32).encode())
        return path.read_bytes().strip()

    @staticmethod
    def _slot(state: dict[str, Any], slot: KeySlot) -> dict[str, Any]:
        try:
            return state["slots"][slot.value]
        except KeyError:
            raise NoKey(_(_NO_KEY[slot])) from None

    @property
    def _state_file(self) -> Path:
        return self.folder / "state.json"

    def _load(self) -> dict[str, Any]:
        if not self._state_file.exists():
            return {"format": SE_FORMAT, "registration_id": None, "slots": {}}
        state = storage.read_json(self._state_file)
        if state.get("format") != SE_FORMAT:
            raise AppError(_("{path} is not a secure element of format {format}").format(path=self._state_file,
                                                                                       format=SE_FORMAT))
        return state

    def _save(self, state: dict[str, Any]) -> None:
        storage.write_json(self._state_file, state)

    @contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """Load the state under the folder lock and save it when the block ends without error."""
        with storage.exclusive(self.folder):
            state = self._load()
            yield state
            self._save(state)


def _checked_statement_key(public_key_pem: str) -> str:
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ResetRefused(_("the service statement key is not an Ed25519 public key"))
    return public_key_pem


def _public_pem(holder: keys.CAPrivateKey | x509.Certificate) -> str:
    return holder.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
