"""The owner's use cases (DESIGN.md sections 2 and 5), wiring the secure element, the card reader,
the app's data and the lifecycle service together.

Each function takes the secrets it needs as arguments: the caller (the CLI) asks the owner for
them; nothing here prompts, prints, logs or stores a secret. The service never sees one: every
owner request carries a signature over a fresh challenge, made in the SE or on the card.

What lives where, and so what each event erases:

- the secure element (``<home>/se``): keys, certificates, registration id. Survives factory
  reset and uninstall; emptied after revoke, an online uninstall, or a stale-certificate notice.
- the app data (``<home>/app``): registration id, service URL, model, pinned CA chain, suspension
  code, and the record of the last registration that ended here (revoke, found revoked/expired by
  status, stale-certificate notice): ``status`` keeps reporting it, CA sync included, until the
  owner forgets it or registers again. Erased by factory reset and by uninstall (online or offline).
"""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography import x509

from app_client.app_data import AppData, EndedRegistration
from app_client.card_reader import CardReader
from app_client.defaults import DEFAULT_DEVICE_MODEL, DEFAULT_SERVICE_URL, DEFAULT_TIMEOUT
from app_client.errors import AppError, NoReceipt, NothingToLift, NotRegistered, StaleCertificates
from app_client.messages import _
from app_client.owner_secrets import AUTH_PIN, CARD_PASSWORD, NEW_SIGN_PASSWORD, SIGN_PASSWORD
from app_client.secure_element import KeySlot, NoKey, SecureElement
from app_client.service_client import Proof, Registration, ServiceClient, ServiceProblem, ServiceUnreachable
from jpki_common.owner_proof import Action, authorised_digest

if TYPE_CHECKING:  # pyhanko costs every command a third of a second; only sign and verify load it
    from pyhanko.sign.timestamps import TimeStamper

    from app_client import pdf

CERTIFICATE_SLOTS = (KeySlot.SIGNATURE, KeySlot.AUTHENTICATION)


@dataclass
class Phone:
    """One simulated phone: its secure element, the app's data, and the service the app talks to."""

    se: SecureElement
    app_data: AppData
    service: ServiceClient


def open_phone(home: Path, service_url: str | None = None, http: httpx.Client | None = None,
               timeout: float = DEFAULT_TIMEOUT, on_slow: Callable[[str], None] | None = None) -> Phone:
    """The phone whose SE and app data live under ``home``.

    The service URL is the one given, else the one the app saved at registration, else the default.
    ``timeout``: seconds to wait for the service; ``on_slow(url)`` is called when a call takes long.
    """
    app_data = AppData(home / "app")
    url = service_url or app_data.load().service_url or DEFAULT_SERVICE_URL
    return Phone(SecureElement(home / "se"), app_data, ServiceClient(url, timeout=timeout, http=http, on_slow=on_slow))


# -- registration --------------------------------------------------------------------------------

def register(phone: Phone, card: CardReader, card_password: str, new_password: str, new_pin: str,
             device_model: str = DEFAULT_DEVICE_MODEL, key_algorithm: str = "rsa2048", *,
             email: str | None = None, login_notices: bool = False) -> Registration:
    """Copy the card's certificates onto this phone (DESIGN.md 2.1).

    The card proves the owner (card password), the SE makes the three key pairs and the CSRs,
    the service has the CA issue both certificates, and they are written into the SE. On 202
    (``pending``) the registration id is kept and :func:`status` fetches the certificates later.
    """
    _refuse_stale(phone)
    if phone.se.registration_id is not None:
        raise AppError(_("this phone is already registered (registration {id}); revoke it before registering "
                         "again").format(id=phone.se.registration_id))
    # The secrets' rules are checked before anything is spent (a challenge, a card try).
    CARD_PASSWORD.check(card_password)
    new_password, new_pin = SIGN_PASSWORD.check(new_password), AUTH_PIN.check(new_pin)
    # The keys come first: the card signs them with the challenge, so none can be swapped on the way.
    enrolment = phone.se.enrol(new_password, new_pin, key_algorithm)
    try:
        challenge = phone.service.challenge(Action.REGISTER)
        authorised = authorised_digest(signature_csr_pem=enrolment.signature_csr_pem,
                                       authentication_csr_pem=enrolment.authentication_csr_pem,
                                       device_public_key_pem=enrolment.device_public_key_pem)
        proof = Proof(challenge.challenge_id, card.sign_proof(card_password, challenge.message(authorised)),
                      card_certificate_pem=card.signature_certificate_pem)
        registration = phone.service.register(proof, device_model, enrolment.device_public_key_pem,
                                              enrolment.signature_csr_pem, enrolment.authentication_csr_pem,
                                              email=email, login_notices=login_notices)
    except Exception:
        # Not registered (or not known to be): keys no service knows of are useless; a registration
        # that did happen unseen holds certificates nobody can use and is superseded by the next.
        phone.se.delete_registration()
        raise
    phone.se.bind(registration.registration_id, registration.statement_key_pem, registration.owner_token)
    state = phone.app_data.load()
    phone.app_data.save(state.replace(registration_id=registration.registration_id,
                                      service_url=phone.service.base_url, device_model=device_model,
                                      ca_chain=card.chain, suspension_code=registration.suspension_code,
                                      ended=None))  # a new registration replaces the record of an ended one
    _store_certificates(phone, registration)
    return registration


# -- status --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatusReport:
    # As the service reports it now. None: this phone holds no registration, or (``ended`` set,
    # ``checked`` false) the service could not be asked about the ended one.
    registration: Registration | None
    copy_deleted: bool = False  # the registration is revoked/expired, so the SE copy was deleted now
    stored: tuple[str, ...] = ()  # kinds whose certificate was written into the SE now
    in_secure_element: dict[str, str] = field(default_factory=dict)  # kind -> serial held in the SE
    suspension_code: str | None = None  # as shown at registration; the service never tells it again
    # The registration that ended on this phone (keys and certificates deleted from the SE), kept
    # until the owner forgets it: what the phone knows of it, updated whenever the service answers.
    ended: EndedRegistration | None = None
    checked: bool = True  # False: the service could not be asked now; ``ended`` is what the phone last knew
    check_error: str | None = None  # why it could not be asked


def status(phone: Phone) -> StatusReport:
    """Ask the service for this phone's registration and bring the SE in line with it.

    A registration that became revoked or expired elsewhere (a new phone superseded it, the
    card was revoked, ...) means the copy in the SE is dead: it is deleted (DESIGN.md 2.2).
    Certificates issued since (after a 202, or reissued) are written into the SE.

    A registration that ended on this phone (revoke, the cases above, a stale-certificate notice)
    is still reported, as the service reports it now (state, ``ca_sync``: whether the CA has the
    end), until the owner forgets it (:func:`forget_ended`) or registers again. If the service
    cannot be asked, the report says so and gives what the phone last knew.
    """
    if phone.se.registration_id is None:
        return _status_of_ended(phone)
    registration_id = _require_registration(phone)
    registration = _read(phone, registration_id)
    if registration.is_final:
        ended = _end(phone, registration, "found-ended")
        return StatusReport(registration, copy_deleted=True, ended=ended)
    stored = _store_certificates(phone, registration)
    return StatusReport(registration, stored=stored, in_secure_element=serials_in_secure_element(phone),
                        suspension_code=phone.app_data.load().suspension_code)


def _status_of_ended(phone: Phone) -> StatusReport:
    """The record of the registration that ended here, brought up to date by the service if it answers."""
    if not phone.app_data.exists():
        return StatusReport(None)
    state = phone.app_data.load()
    ended = state.ended
    if ended is None:
        return StatusReport(None)
    if ended.owner_token is None:
        return StatusReport(None, ended=ended, checked=False,
                            check_error="this phone kept no owner token for it (ended before tokens existed), "
                                        "so the service cannot be asked")
    try:
        registration = phone.service.registration(ended.registration_id, ended.owner_token)
    except (ServiceUnreachable, ServiceProblem) as exc:
        return StatusReport(None, ended=ended, checked=False, check_error=str(exc))
    ended = _ended_record(registration, ended.ended_by, ended.owner_token, ended.ended_at)
    phone.app_data.save(state.replace(ended=ended))
    return StatusReport(registration, ended=ended)


def forget_ended(phone: Phone) -> EndedRegistration | None:
    """The owner is satisfied: remove the record of the ended registration (None: there was none).

    Refused while this phone holds a live registration: that one ends only through revoke (or
    uninstall), never by forgetting.
    """
    held = phone.se.registration_id
    if held is not None:
        raise AppError(_("this phone holds registration {id}, which has not ended: there is nothing to forget "
                         "(revoke it first)").format(id=held))
    if not phone.app_data.exists():
        return None
    state = phone.app_data.load()
    if state.ended is not None:
        phone.app_data.save(state.replace(ended=None))
    return state.ended


# -- owner actions -------------------------------------------------------------------------------

def revoke(phone: Phone, password: str) -> Registration:
    """Revoke both certificates (before selling the phone) and delete them from the SE (DESIGN.md 2.3)."""
    registration_id = _require_registration(phone)
    challenge = phone.service.challenge(Action.REVOKE, registration_id)
    signature = phone.se.sign_proof(KeySlot.SIGNATURE, password, challenge.message())
    registration = phone.service.revoke(registration_id, Proof(challenge.challenge_id, signature))
    _end(phone, registration, "owner-revoke")
    return registration


def reset_password(phone: Phone, card: CardReader, card_password: str, new_password: str) -> None:
    """Forgotten or locked phone signature password: prove the card, then set a new one (DESIGN.md 2.4)."""
    registration_id = _require_registration(phone)
    CARD_PASSWORD.check(card_password)
    new_password = NEW_SIGN_PASSWORD.check(new_password)
    challenge = phone.service.challenge(Action.RESET_PASSWORD, registration_id)
    proof = Proof(challenge.challenge_id, card.sign_proof(card_password, challenge.message()),
                  card_certificate_pem=card.signature_certificate_pem)
    authorisation = phone.service.reset_password(registration_id, proof)
    if phone.se.service_statement_key_pem is None:
        # Registered before the service sent its statement key: pinned now, once (trust on first use).
        phone.se.pin_service_statement_key(phone.service.statement_key())
    # The SE checks the service's signed statement itself (ResetRefused, password unchanged, if not good).
    phone.se.reset_signature_password(new_password, authorisation)


def lift_suspension(phone: Phone, card: CardReader, card_password: str) -> Registration:
    """Lift the call centre's suspension of this phone once it is found (DESIGN.md 2.8), or, after a
    supervisor lifted it, have the signature certificate reissued: the same request serves both.

    The card that registered this phone proves the owner (card password) and the device key proves
    it is this phone, both signing the same lift-suspension challenge: the card alone could be
    used from any phone, the phone alone could be the thief's. The service reinstates the
    user-authentication certificate (same serial) and revokes the signature certificate, which is
    reissued, never reinstated: the SE makes a new signature key and its CSR goes with the proof,
    so nothing the old key signed while the phone was out of the owner's hands can pass for a
    signature under the new certificate.

    The new key is staged in the SE and installed (the old one destroyed) only once the service
    has accepted it, with the new certificate when it is already issued; on 202 the certificate
    follows through :func:`status`. If the service refuses, or its answer is lost, the working key
    stays and the staged key waits: the next attempt sends it again, and :func:`status` installs
    it if a certificate for it turns up (the request did reach the service).
    """
    registration_id = _require_registration(phone)
    CARD_PASSWORD.check(card_password)
    # Ask first, so a phone with nothing to lift spends neither a challenge nor a card read.
    registration = _read(phone, registration_id)
    if not registration.can_lift:
        raise NothingToLift(_nothing_to_lift(registration))
    challenge = phone.service.challenge(Action.LIFT_SUSPENSION, registration_id)
    # The new key first: card and device key sign its CSR with the challenge (jpki_common/owner_proof.py).
    # A key staged by an earlier attempt is reused; one staged now goes again if the card refuses.
    staged_before = phone.se.staged_signature_public_key_pem is not None
    signature_csr_pem = phone.se.stage_new_signature_key()
    message = challenge.message(authorised_digest(signature_csr_pem=signature_csr_pem))
    try:
        card_signature = card.sign_proof(card_password, message)
    except Exception:
        if not staged_before:
            phone.se.discard_staged_signature_key()
        raise
    proof = Proof(challenge.challenge_id, card_signature, card_certificate_pem=card.signature_certificate_pem,
                  device_signature=phone.se.sign_proof(KeySlot.DEVICE, None, message))
    registration = phone.service.lift_suspension(registration_id, proof, signature_csr_pem)
    issued = registration.current(KeySlot.SIGNATURE.value)
    phone.se.install_staged_signature_key(issued.certificate_pem if issued else None)
    _store_certificates(phone, registration)
    return registration


def _nothing_to_lift(registration: Registration) -> str:
    values = {"id": registration.registration_id, "state": registration.state, "reason": registration.reason or "-"}
    if registration.is_final:
        return _("registration {id} is {state} ({reason}): there is nothing to lift; status deletes its "
                 "copy").format(**values)
    if registration.state == "pending":
        return _("registration {id} is {state}: its certificates are not issued yet, there is nothing to "
                 "lift").format(**values)
    return _("registration {id} is {state}, not suspended, and its signature certificate needs no reissue: there is "
             "nothing to lift").format(**values)


def login(phone: Phone, pin: str) -> dict[str, Any]:
    """Log in to the demo relying party with the user-authentication key (PIN)."""
    certificate_pem = _certificate(phone, KeySlot.AUTHENTICATION)
    challenge = phone.service.login_challenge()
    signature = phone.se.sign_proof(KeySlot.AUTHENTICATION, pin, challenge.message())
    return phone.service.login(challenge.challenge_id, certificate_pem, signature)


# -- the phone's own life ------------------------------------------------------------------------

@dataclass(frozen=True)
class UninstallReport:
    registration_id: str | None  # what the SE held
    registration: Registration | None  # the service's answer, when it was told (online)
    copy_deleted: bool


def uninstall(phone: Phone, offline: bool = False) -> UninstallReport:
    """Uninstall the app (DESIGN.md 2.5).

    Online: the device key tells the service (the registration expires, its certificates are
    revoked) and the SE copy is deleted; a registration already revoked or expired is only
    deleted. Offline: nothing reaches the service and the SE keeps its live certificates, as in
    reality. The app data is erased either way.
    """
    registration_id = phone.se.registration_id
    registration = None
    delete = not offline and phone.se.holds_keys()
    if delete:
        if registration_id is not None:
            registration = _read(phone, registration_id)
            if not registration.is_final:
                registration = _device_notice(phone, Action.UNINSTALL, registration_id, phone.service.uninstall)
        phone.se.delete_registration()
    phone.app_data.erase()
    return UninstallReport(registration_id, registration, copy_deleted=delete)


def factory_reset(phone: Phone) -> None:
    """Initialise the phone: the app data goes, the secure element stays (DESIGN.md 2.6)."""
    phone.app_data.erase()


@dataclass(frozen=True)
class InstallReport:
    stale_registration_id: str | None  # certificates found left in the SE, now notified and deleted
    registration: Registration | None  # the service's answer to the stale-certificate notice
    discarded_unbound_keys: bool = False  # keys of an enrolment the service never accepted


def install(phone: Phone) -> InstallReport:
    """Install and open the app online (DESIGN.md 2.6).

    Certificates left in the SE by an earlier installation are reported with the device key
    (the registration expires and is revoked if it was not already) and deleted from the SE.
    If the service cannot be reached, nothing changes and the app is not installed yet.
    """
    state = phone.app_data.load()
    stale = phone.se.registration_id
    registration = None
    discarded = False
    if stale is not None and stale != state.registration_id:
        registration = _device_notice(phone, Action.STALE_CERTIFICATE, stale, phone.service.stale_certificate)
        owner_token = _owner_token_to_keep(phone, stale)
        phone.se.delete_registration()
        # Kept as ended, like a revoke, so status can show that the end reached the CA.
        state = state.replace(ended=_ended_record(registration, "stale-certificate", owner_token))
    elif stale is None and phone.se.holds_keys():
        phone.se.delete_registration()
        discarded = True
    else:
        stale = None  # the SE holds this installation's own registration: nothing is stale
    kept = phone.se.registration_id
    # The suspension code belongs to its registration: it goes with a stale one.
    code = state.suspension_code if kept is not None and kept == state.registration_id else None
    phone.app_data.save(state.replace(registration_id=kept, service_url=phone.service.base_url,
                                      suspension_code=code))
    return InstallReport(stale, registration, discarded)


# -- a dealer's erasure receipt ------------------------------------------------------------------

@dataclass(frozen=True)
class DealerReport:
    receipt: bytes  # CMS SignedData, DER: the service's signed receipt (docs/dealers.md)
    document: dict[str, Any]  # what it says: device, checked_at, no_live_jpki_certificates, challenge, ...
    certificate_pem: str  # the receipt authority's certificate, to verify it with (openssl cms -CAfile)
    revoked_now: Registration | None  # the registration the stale-certificate flow ended in this check


def dealer_check(phone: Phone) -> DealerReport:
    """A dealer's check of a phone brought in (docs/dealers.md): no secret needed.

    If the SE still holds a registration's keys, the stale-certificate flow runs, as on a reinstall
    (:func:`install`): the device key tells the service, which revokes the certificates at the CA; the SE
    copy is deleted only once the CA has the end (``ca_sync: done``), so a phone whose certificates could
    not be revoked keeps them and gets no receipt. Keys of an enrolment the service never accepted are
    deleted. Then the SE's attestation key signs what it holds for a fresh service challenge, and the
    service, if the SE holds nothing and no registration it held is live, signs a receipt.
    """
    registration = None
    held = phone.se.registration_id
    if held is not None:
        registration = _device_notice(phone, Action.STALE_CERTIFICATE, held, phone.service.stale_certificate)
        if registration.is_final and registration.ca_sync == "done":
            owner_token = _owner_token_to_keep(phone, held)
            phone.se.delete_registration()
            state = phone.app_data.load()
            phone.app_data.save(state.replace(registration_id=None, suspension_code=None,
                                              ended=_ended_record(registration, "stale-certificate", owner_token)))
    elif phone.se.holds_keys():
        phone.se.delete_registration()
    challenge = phone.service.challenge(Action.DEALER_RECEIPT)
    statement, signature = phone.se.attest(challenge.challenge_id, challenge.nonce)
    revoked = [registration.registration_id] if registration is not None and phone.se.registration_id is None else []
    try:
        answer = phone.service.dealer_receipt(challenge.challenge_id, statement, signature,
                                              phone.se.attestation_certificate_pem(), revoked)
    except ServiceProblem as problem:
        if problem.status != 409:
            raise
        raise NoReceipt(_("no erasure receipt: this phone may still hold a live JPKI certificate. The service "
                          "says: {reason}").format(reason=problem.detail)) from None
    return DealerReport(base64.b64decode(answer["receipt"]), answer["document"], answer["certificate_pem"],
                        registration if revoked else None)


# -- documents -----------------------------------------------------------------------------------

def sign_pdf(phone: Phone, source: Path, target: Path, password: Callable[[], str],
             timestamper: TimeStamper | None = None,
             tsa_roots: Sequence[x509.Certificate] = (), timestamp: bool = True) -> pdf.SignedPdf:
    """PAdES-sign ``source`` with the phone signature key; ``password`` is asked only to really sign.

    The signature is timestamped (PAdES B-LT) by ``timestamper`` if given, else by the CA's own
    TSA, whose URL the signature certificate names (:func:`pdf.ca_tsa_url`); ``timestamp=False``
    (and no ``timestamper``) signs without a timestamp (B-B), which cannot outlive a revocation.
    """
    from app_client import pdf

    certificate_pem = _certificate(phone, KeySlot.SIGNATURE)
    if timestamper is None and timestamp:
        timestamper = pdf.http_timestamper(pdf.ca_tsa_url(x509.load_pem_x509_certificate(certificate_pem.encode())))
    return pdf.sign_pdf(phone.se, password, source, target, _trust(phone, certificate_pem), timestamper, tsa_roots)


def verify_pdf(phone: Phone, source: Path, root: x509.Certificate | None = None,
               tsa_roots: Sequence[x509.Certificate] = ()) -> pdf.Verdict:
    """Judge the signatures in ``source`` against ``root``, else the root pinned at registration,
    else the root found through the signer certificate's caIssuers URLs."""
    from app_client import pdf

    if root is not None:
        trust: pdf.Trust | None = pdf.Trust(root, (), _("given"))
    else:
        chain = phone.app_data.load().ca_chain
        trust = _pinned(chain) if chain else None
    return pdf.verify_pdf(source, trust, tsa_roots)


# -- shared steps --------------------------------------------------------------------------------

def _require_registration(phone: Phone) -> str:
    """The registration this installation works with; refuses when there is none or it is stale."""
    _refuse_stale(phone)
    registration_id = phone.se.registration_id
    if registration_id is None:
        raise NotRegistered(_("this phone holds no JPKI certificates: register it first (jpki-app register --card "
                              "FILE)"))
    return registration_id


def _refuse_stale(phone: Phone) -> None:
    held = phone.se.registration_id
    if held is not None and held != phone.app_data.load().registration_id:
        raise StaleCertificates(_(
            "the secure element holds the certificates of registration {id} from an earlier installation of the app; "
            "open the app online (jpki-app install) to have them revoked and deleted").format(id=held))


def _certificate(phone: Phone, slot: KeySlot) -> str:
    _require_registration(phone)
    certificate_pem = phone.se.certificate_pem(slot)
    if certificate_pem is None:
        raise NotRegistered(_("the phone {kind} certificate has not been issued yet; check with jpki-app "
                              "status").format(kind=slot.value))
    return certificate_pem


def _store_certificates(phone: Phone, registration: Registration) -> tuple[str, ...]:
    """Write into the SE every current certificate the service has and the SE does not."""
    stored = []
    for slot in CERTIFICATE_SLOTS:
        issued = registration.current(slot.value)
        if issued is None or not issued.certificate_pem:
            continue
        if (phone.se.certificate_pem(slot) or "").strip() != issued.certificate_pem.strip():
            if slot is KeySlot.SIGNATURE and phone.se.certifies_staged_signature_key(issued.certificate_pem):
                # A lift the service accepted though the phone never saw it do so (lost answer,
                # crash): the certificate for the staged key is the proof, so the key moves in now.
                phone.se.install_staged_signature_key(issued.certificate_pem)
            else:
                phone.se.store_certificate(slot, issued.certificate_pem)
            stored.append(slot.value)
    return tuple(stored)


def serials_in_secure_element(phone: Phone) -> dict[str, str]:
    """Kind -> serial (hex) of each certificate the SE holds: what the phone can really use."""
    serials = {}
    for slot in CERTIFICATE_SLOTS:
        pem = phone.se.certificate_pem(slot)
        if pem:
            serials[slot.value] = format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")
    return serials


def _end(phone: Phone, registration: Registration, ended_by: str) -> EndedRegistration:
    """The registration is over: delete the SE copy (every key and certificate: a revoked phone
    cannot sign), and keep in the app data only the record of its end, for status."""
    owner_token = _owner_token_to_keep(phone, registration.registration_id)
    phone.se.delete_registration()
    ended = _ended_record(registration, ended_by, owner_token)
    state = phone.app_data.load()
    phone.app_data.save(state.replace(registration_id=None, suspension_code=None, ended=ended))
    return ended


def _ended_record(registration: Registration, ended_by: str, owner_token: str | None,
                  ended_at: str | None = None) -> EndedRegistration:
    """What the phone keeps of an ended registration: no certificate, only serials."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    pending = registration.document.get("pending_ca_operations")
    return EndedRegistration(
        registration_id=registration.registration_id, state=registration.state, reason=registration.reason,
        ended_by=ended_by, ended_at=ended_at or now, checked_at=now, ca_sync=registration.ca_sync,
        ca_sync_reason=registration.ca_sync_reason,
        pending_ca_operations=pending if isinstance(pending, int) else None,
        serials={c.kind: c.serial for c in registration.certificates if c.current and c.serial},
        case_reference=registration.case_reference, owner_token=owner_token,
    )


def _read(phone: Phone, registration_id: str) -> Registration:
    """This phone's registration as the service has it, read with the owner token the SE keeps. A phone
    without one (registered before owner tokens existed) first asks for one, proven by its device key."""
    owner_token = phone.se.owner_token
    if owner_token is not None:
        return phone.service.registration(registration_id, owner_token)
    answer = _device_notice(phone, Action.OWNER_TOKEN, registration_id, phone.service.owner_token)
    if not answer.owner_token:
        raise AppError(_("the service answered the owner-token request without a token"))
    phone.se.keep_owner_token(answer.owner_token)
    return answer


def _owner_token_to_keep(phone: Phone, registration_id: str) -> str | None:
    """The owner token for the record of a registration that ends now, taken before the SE deletes its
    keys: the SE's own, or, for an SE bound before owner tokens existed, a new one asked for with the
    device key while the SE still holds it. Best effort: the end stands either way, and without a token
    status can only show what the phone last knew."""
    owner_token = phone.se.owner_token
    if owner_token is not None:
        return owner_token
    try:
        answer = _device_notice(phone, Action.OWNER_TOKEN, registration_id, phone.service.owner_token)
    except (ServiceUnreachable, ServiceProblem, NoKey):
        return None
    return answer.owner_token or None


def _device_notice(phone: Phone, action: Action, registration_id: str,
                   send: Callable[[str, Proof], Registration]) -> Registration:
    """Prove with the device key (no secret) and send: uninstall and stale-certificate notices."""
    challenge = phone.service.challenge(action, registration_id)
    signature = phone.se.sign_proof(KeySlot.DEVICE, None, challenge.message())
    return send(registration_id, Proof(challenge.challenge_id, signature))


def _trust(phone: Phone, certificate_pem: str) -> pdf.Trust:
    from app_client import pdf

    chain = phone.app_data.load().ca_chain
    if chain:
        return _pinned(chain)
    return pdf.trust_from_aia(x509.load_pem_x509_certificate(certificate_pem.encode()))


def _pinned(chain: dict[str, str]) -> pdf.Trust:
    from app_client import pdf

    return pdf.Trust.from_pems(chain["root"], [pem for name, pem in chain.items() if name != "root"],
                               _("pinned from the card at registration"))
