"""The dealer's erasure receipt (docs/dealers.md): a phone's secure element shows, with its attestation key
under a maker's certificate, that it holds no JPKI key for a fresh challenge, and the service, having checked
its own records for every registration that SE ever held, signs a receipt (CMS SignedData) saying when, for
which device, and that no live JPKI certificate remains on it.

What the service checks, in order (nothing is written unless a receipt is given, and a receipt changes no
registration):

1. the challenge: a ``dealer-receipt`` one, spent now (one attempt, as every proof's);
2. the attestation: the certificate chains directly to a configured maker root (JPKI_SE_MAKER_CA_FILE, else
   the simulated maker), its key signed the statement, and the statement names this challenge (its nonce);
3. the SE holds nothing: else 409, "still holds";
4. every registration the SE says it held and deleted (``ended``) that this service knows is final
   (revoked or expired) and the CA has it (no change waiting, no certificate good or held): else 409.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hmac
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import select

from jpki_common.owner_proof import Action
from jpki_common.se_attestation import (
    SIMULATED_MAKER_CA_PEM,
    AttestationRefused,
    load_maker_roots,
    verify_statement,
)
from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.service_keys import ReceiptSigner, receipt_signer
from jpki_service.audit import service as audit
from jpki_service.ca_commands.service import registration_sync
from jpki_service.challenges.service import spend_challenge
from jpki_service.common.problems import InvalidInput, ProofRejected, StateConflict
from jpki_service.lifecycle import State
from jpki_service.receipts.schemas import ReceiptRequest
from jpki_service.receipts.verify import RECEIPT_FORMAT
from jpki_service.registrations.models import PhoneCertificate, Registration


@functools.lru_cache(maxsize=4)
def maker_roots(path: Path | None) -> list[x509.Certificate]:
    """The maker roots a dealer check trusts: the file's, else the simulated maker's (docs/dealers.md)."""
    return load_maker_roots(path.read_bytes() if path is not None else SIMULATED_MAKER_CA_PEM)


@functools.lru_cache(maxsize=4)
def signer(data_dir: Path) -> ReceiptSigner:
    return receipt_signer(data_dir)


def certificate_pem(ctx: ServiceContext) -> str:
    """The receipt authority's certificate: what a verifier trusts (openssl cms -verify -CAfile)."""
    return signer(ctx.settings.data_dir).certificate.public_bytes(serialization.Encoding.PEM).decode()


def issue_receipt(ctx: ServiceContext, request: ReceiptRequest) -> dict[str, Any]:
    try:
        statement_bytes = base64.b64decode(request.statement, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("statement is not base64", field="statement") from None
    challenge = spend_challenge(ctx.store, request.challenge_id, Action.DEALER_RECEIPT, None)
    try:
        statement = verify_statement(request.attestation_certificate_pem, statement_bytes, request.signature,
                                     maker_roots(ctx.settings.se_maker_ca_file))
    except AttestationRefused as refused:
        raise ProofRejected(f"the secure element's attestation is refused: {refused}",
                            field="attestation_certificate_pem") from None
    if statement.challenge_id != challenge.challenge_id or not hmac.compare_digest(statement.nonce, challenge.nonce):
        raise ProofRejected("the secure element's statement was made for another challenge", field="statement")
    if statement.held:
        held = ", ".join(str(h.get("registration_id") or "(not registered)") for h in statement.held)
        raise StateConflict(f"the secure element still holds JPKI keys or certificates (registration {held}): "
                            "no receipt; end them first (jpki-app dealer-check runs the stale-certificate flow)")
    unknown = sorted(set(request.revoked_now) - set(statement.ended))
    if unknown:
        raise InvalidInput(f"revoked_now names registrations the secure element does not report as ended: "
                           f"{', '.join(unknown)}", field="revoked_now")
    checked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with ctx.store.transaction() as session:
        revoked_now = []
        for registration_id in statement.ended:
            registration = session.get(Registration, registration_id)
            if registration is None:
                continue  # another service's, or made before this store: nothing of it is here
            _refuse_unless_ended(session, registration)
            if registration_id in request.revoked_now:
                revoked_now.append(registration.case_reference)
        document = {"format": RECEIPT_FORMAT, "device": statement.device,
                    "checked_at": checked_at.isoformat().replace("+00:00", "Z"),
                    "no_live_jpki_certificates": True, "challenge": challenge.challenge_id,
                    "registrations_revoked_now": revoked_now}
        audit.record(session, ctx.keys.audit_chain, "dealer", "dealer-receipt", None,
                             {"device": statement.device, "registrations_revoked_now": revoked_now})
    content = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    receipt_signer_ = signer(ctx.settings.data_dir)
    receipt = (pkcs7.PKCS7SignatureBuilder().set_data(content)
               .add_signer(receipt_signer_.certificate, receipt_signer_.key, hashes.SHA256())
               .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    return {"receipt": base64.b64encode(receipt).decode(), "document": document,
            "certificate_pem": certificate_pem(ctx)}


def _refuse_unless_ended(session: Any, registration: Registration) -> None:
    """409 unless the registration is final and the CA has it: a certificate still good or held at the CA is live."""
    case = registration.case_reference
    if not State(registration.state).is_final:
        raise StateConflict(f"registration {case}, which this secure element held, is still {registration.state}: "
                            "no receipt", state=registration.state)
    sync = registration_sync(session, registration.id)
    live = session.scalars(select(PhoneCertificate.serial).where(
        PhoneCertificate.registration_id == registration.id, PhoneCertificate.status.in_(("good", "held")),
        PhoneCertificate.serial.is_not(None))).all()
    if sync.state != "done" or live:
        raise StateConflict(f"registration {case}, which this secure element held, is {registration.state} here but "
                            f"the CA does not have it yet ({sync.reason or 'certificates not yet revoked'}): no "
                            "receipt until its certificates are revoked at the CA; try again later",
                            state=registration.state)
