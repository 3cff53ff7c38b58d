"""Phone certificates at rest: sealed under the holder-data key (a signature certificate carries the
holder's four items), and those an earlier version stored in clear are sealed when the service starts."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from jpki_service import holder_data
from jpki_service.adapters.db import Store, migrate
from jpki_service.ca_commands.models import CACommand
from jpki_service.ca_commands.service import seal_clear_certificates
from jpki_service.common.settings import ServiceSettings
from jpki_service.entrypoints.app import create_app
from jpki_service.registrations.models import PhoneCertificate, Registration

KEY = os.urandom(32)
# Not a real certificate: sealing does not parse it, and the marker line is easy to look for.
CLEAR_BODY = "TUFSS0VSLWNsZWFyLWNlcnRpZmljYXRlLWJvZHktdGhhdC1tdXN0LWdvLWF3YXktYWZ0ZXItc2VhbGluZw"
LEGACY_ITEMS = {"name": "LEGACYNAME Taro", "date_of_birth": "1990-01-02", "gender": "1",
                "address": "LEGACY-ADDRESS Chiyoda 1-1"}
CLEAR_PEM = f"-----BEGIN CERTIFICATE-----\n{CLEAR_BODY}\n-----END CERTIFICATE-----\n"


def test_a_sealed_certificate_opens_only_as_that_certificate():
    sealed = holder_data.seal_certificate(KEY, "0a1b", CLEAR_PEM)
    assert CLEAR_BODY not in sealed and not holder_data.certificate_in_clear(sealed)
    assert holder_data.open_certificate(KEY, "0a1b", sealed) == CLEAR_PEM
    assert holder_data.open_certificate(KEY, "0a1c", sealed) is None  # another row's certificate
    assert holder_data.open_certificate(os.urandom(32), "0a1b", sealed) is None  # another key
    assert holder_data.open_name(KEY, sealed) is None  # a certificate is not a name ...
    name = holder_data.seal_name(KEY, "山田 太郎")
    assert holder_data.open_certificate(KEY, "0a1b", name) is None  # ... nor a name a certificate
    assert holder_data.open_name(KEY, name) == "山田 太郎"
    assert holder_data.open_certificate(KEY, "0a1b", CLEAR_PEM) == CLEAR_PEM  # not sealed yet
    assert holder_data.open_certificate(KEY, None, sealed) is None


def _raw_bytes(path: Path) -> bytes:
    """A store file read by another process: never open a database file in a process with a store on it."""
    if not path.exists():
        return b""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True).stdout


def test_certificates_stored_in_clear_are_sealed_at_start(service_database_url: str, tmp_path: Path):
    migrate(service_database_url)
    now = dt.datetime.now(dt.UTC)
    store = Store(service_database_url)
    try:
        with store.transaction() as session:
            session.add(Registration(id="ab" * 16, case_reference="ABCD-EFGH-JKMN",
                                     state="active", reason=None, person_key="p" * 64,
                                     card_serial="1", device_model="m", device_public_key_pem="-", created_at=now,
                                     updated_at=now))
            session.flush()
            pending = PhoneCertificate(registration_id="ab" * 16, kind="authentication", public_key_pem="-",
                                       serial=None, status="pending", current=True, certificate_pem=None)
            session.add_all([
                PhoneCertificate(registration_id="ab" * 16, kind="signature", public_key_pem="-", serial="5a",
                                 status="good", current=True, certificate_pem=CLEAR_PEM), pending])
            session.flush()
            # An issue command queued by an older version, still carrying the holder's items.
            session.add(CACommand(registration_id="ab" * 16, certificate_id=pending.id, action="issue",
                                  operation_id="svc-legacy", state="pending", attempts=0, created_at=now,
                                  next_attempt_at=now, payload={**LEGACY_ITEMS, "profile": "phone-authentication",
                                                                "csr_pem": "csr", "card_serial": "1"}))
    finally:
        store.dispose()
    settings = ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url,
                               ca_url="http://127.0.0.1:9")
    app = create_app(settings, background=False)
    ctx = app.app.state.context
    try:
        with TestClient(app):
            pass
        with ctx.store.sessions() as session:
            stored = {c.kind: c.certificate_pem for c in session.scalars(select(PhoneCertificate))}
        assert stored["authentication"] is None
        assert stored["signature"] and not holder_data.certificate_in_clear(stored["signature"])
        assert holder_data.open_certificate(ctx.keys.holder_seal, "5a", stored["signature"]) == CLEAR_PEM
        with ctx.store.sessions() as session:
            payload = session.scalars(select(CACommand.payload)).one()
        assert payload == {"profile": "phone-authentication", "csr_pem": "csr", "card_serial": "1"}
        assert seal_clear_certificates(ctx.store, ctx.keys.holder_seal) == 0  # idempotent
        if service_database_url.startswith("sqlite"):
            # Read while the store is still open (its last close would checkpoint and hide what lingers).
            database = Path(service_database_url.split("///", 1)[1])
            for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), Path(f"{database}-journal")):
                raw = _raw_bytes(path)
                assert CLEAR_BODY.encode() not in raw, f"the clear certificate lingers in {path.name}"
                assert LEGACY_ITEMS["address"].encode() not in raw, f"a legacy command's items linger in {path.name}"
    finally:
        ctx.store.dispose()


@pytest.mark.parametrize("stored", [None, ""])
def test_nothing_stored_opens_to_nothing(stored):
    assert holder_data.open_certificate(KEY, "5a", stored) is None
    assert not holder_data.certificate_in_clear(stored)

