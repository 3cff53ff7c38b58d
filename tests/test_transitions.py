"""apply_event, the one applier of the lifecycle table, on a real database: the CA commands it
queues, in order, for the cases an end-to-end test cannot easily reach."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from jpki_service.adapters.db import Store, migrate
from jpki_service.ca_commands.models import CACommand
from jpki_service.lifecycle import Event
from jpki_service.registrations.models import PhoneCertificate, Registration
from jpki_service.registrations.transitions import apply_event


def test_a_certificate_still_being_issued_is_held_after_its_issue(service_database_url):
    """Lifted while the CA was slow (the new signature certificate not issued yet), then suspended:
    the hold is queued after the issue, so the CA issues it and then holds it."""
    migrate(service_database_url)
    store = Store(service_database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        with store.transaction() as session:
            session.add(Registration(id="ef" * 16, case_reference="ABCD-EFGH-JKMN",
                                     state="active", reason=None, person_key="p" * 64,
                                     card_serial="1", device_model="m", device_public_key_pem="-",
                                     created_at=now, updated_at=now))
            session.flush()
            issued = PhoneCertificate(registration_id="ef" * 16, kind="authentication", public_key_pem="-",
                                      serial="a1", status="good", current=True)
            pending = PhoneCertificate(registration_id="ef" * 16, kind="signature", public_key_pem="-",
                                       serial=None, status="pending", current=True)
            session.add_all([issued, pending])
            session.flush()
            session.add(CACommand(registration_id="ef" * 16, certificate_id=pending.id, action="issue",
                                  operation_id="svc-issue", payload={}, state="pending", attempts=0,
                                  created_at=now, next_attempt_at=now))
            apply_event(session, session.get_one(Registration, "ef" * 16), Event.SUSPENDED, operator="o",
                        suspension_reason="lost")
        with store.sessions() as session:
            commands = [(c.certificate_id, c.action) for c in session.scalars(select(CACommand).order_by(CACommand.id))]
            statuses = {c.kind: c.status for c in session.scalars(select(PhoneCertificate))}
        assert commands == [(pending.id, "issue"), (issued.id, "hold"), (pending.id, "hold")]
        assert statuses == {"authentication": "held", "signature": "held"}
    finally:
        store.dispose()
