"""/metrics shows the work waiting (the CA queue, owner notices) and registrations by state,
read from the database, so it is right on every replica and after a restart."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi.testclient import TestClient

from jpki_service.adapters.db import migrate
from jpki_service.ca_commands import service as ca_commands
from jpki_service.common.settings import ServiceSettings
from jpki_service.entrypoints.app import create_app
from jpki_service.notifications import service as notifications
from jpki_service.registrations.models import PhoneCertificate, Registration


def test_metrics_count_what_waits(service_database_url: str, tmp_path: Path):
    migrate(service_database_url)
    settings = ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url,
                               ca_url="http://127.0.0.1:9")
    app = create_app(settings, background=False)
    ctx = app.app.state.context
    now = dt.datetime.now(dt.UTC)
    with ctx.store.transaction() as session:
        session.add(Registration(id="cd" * 16, case_reference="ABCD-EFGH-JKMN",
                                 state="suspended", reason="lost", person_key="p" * 64,
                                 card_serial="1", device_model="m", device_public_key_pem="-", created_at=now,
                                 updated_at=now))
        session.flush()
        certificate = PhoneCertificate(registration_id="cd" * 16, kind="signature", public_key_pem="-",
                                       serial="5", status="held", current=True)
        session.add(certificate)
        session.flush()
        ca_commands.enqueue(session, certificate, "hold")
        notifications.enqueue(session, "cd" * 16, "ABCD-EFGH-JKMN", "suspended", "operator")
    try:
        with TestClient(app) as client:
            text = client.get("/metrics").text
    finally:
        ctx.store.dispose()
    assert 'jpki_ca_commands{state="pending"} 1.0' in text
    assert "jpki_owner_notifications_pending 1.0" in text
    assert 'jpki_registrations{state="suspended"} 1.0' in text
