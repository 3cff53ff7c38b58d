"""Pre-produced OCSP answers are re-signed before they age out, and never against a newer status."""
from __future__ import annotations

import datetime as dt

from cryptography.x509 import ocsp
from sqlalchemy import select, update

from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.ocsp.models import PreparedOCSPResponse
from ca_mock.ocsp.service import refresh_ageing_responses
from tests.helpers import issue_body


def _prepared(store, serial):
    with store.sessions() as session:
        return session.scalars(select(PreparedOCSPResponse).where(PreparedOCSPResponse.serial == serial)).all()


def test_ageing_answers_are_resigned_with_the_current_status(store, hierarchy, ca_settings):
    card = issue_certificate(store, ca_settings, IssueRequest(**issue_body("card-signature", "c")))
    change_status(store, ca_settings, card["serial"], StatusAction.HOLD, "h")
    # Age the answers artificially: they now expire within the refresh window.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    with store.transaction() as session:
        session.execute(update(PreparedOCSPResponse).values(next_update=soon))
    validity = dt.timedelta(hours=ca_settings.ocsp_validity_hours)

    assert refresh_ageing_responses(store, hierarchy, validity) == 1
    answers = _prepared(store, card["serial"])
    assert {a.hash_algorithm for a in answers} == {"sha1", "sha256"}
    for answer in answers:
        assert answer.next_update > soon
        parsed = ocsp.load_der_ocsp_response(answer.der)
        assert parsed.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert parsed.revocation_reason is not None and parsed.revocation_reason.value == "certificateHold"
    # Nothing left to do: a second round re-signs nothing.
    assert refresh_ageing_responses(store, hierarchy, validity) == 0
