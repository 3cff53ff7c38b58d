"""The carrier's lost-phone report (issue 15, item 2; docs/carriers.md), against the real CA and service
processes over HTTP: credentials made with ``jpki-service carrier add`` (a real subprocess), a token by OAuth2
client credentials, a report sent by the sample client docs/examples/carrier_client.py. Every outcome is
judged at the CA with ``openssl ocsp``, as a relying party sees it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import start_service, stop_process
from tests.helpers import openssl_ocsp
from tests.service_helpers import PhoneForTests, lift_body, make_card, read, register
from tests.test_service_flows import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).parent.parent
OTHER_PERSON = {"name": "佐藤 花子", "date_of_birth": "1985-05-05", "gender": "2", "address": "大阪府大阪市北区1-2-3"}
# The subscriber as the carrier verified the card at contract: spelt otherwise than the card's own bytes
# (full-width space and digits, the era date, the address's blocks as said), the same items.
SUBSCRIBER = {"name": "山田　太郎", "birth": "平成2年1月2日", "address": "東京都千代田区千代田１丁目１番"}
NOBODY = {"name": "鈴木 一郎", "birth": "1970-07-07", "address": "北海道札幌市中央区1-1"}


@dataclass
class CarrierCredentials:
    name: str
    client_id: str
    client_secret: str


def _admin(service, *args: str) -> subprocess.CompletedProcess:
    """``jpki-service`` run by the administrator on the service's host, on its data folder and database."""
    env = {**os.environ, "JPKI_DATABASE_URL": service.database_url, "JPKI_LANG": "en"}
    return subprocess.run([sys.executable, "-m", "jpki_service", *args, "--data", str(service.data_dir)],
                          env=env, capture_output=True, text=True, timeout=120)


def _add_carrier(service, name: str) -> CarrierCredentials:
    added = _admin(service, "carrier", "add", "--name", name)
    assert added.returncode == 0, added.stderr
    fields = dict(line.split(None, 2)[-2:] for line in added.stdout.splitlines()
                  if line.startswith(("client id", "client secret")))
    return CarrierCredentials(name, fields["id"], fields["secret"])


def _token(client: httpx.Client, carrier: CarrierCredentials) -> str:
    answer = client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"},
                         auth=(carrier.client_id, carrier.client_secret))
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "Bearer" and answer.headers["cache-control"] == "no-store"
    return answer.json()["access_token"]


def _report(client: httpx.Client, token: str | None, case_number: str, kind: str = "lost",
            subscriber: dict | None = None) -> httpx.Response:
    return client.post("/api/v1/carrier/reports", headers={"Authorization": f"Bearer {token}"} if token else {},
                       json={"case_number": case_number, "kind": kind, "subscriber": subscriber or SUBSCRIBER})


def _registered(ca_server, service_server, person=None) -> tuple:
    card = make_card(ca_server.store, ca_server.settings, person)
    phone = PhoneForTests()
    with service_server.client() as client:
        answer = register(client, card, phone)
    assert answer.status_code == 201, answer.text
    document = answer.json()
    return card, phone, {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}


def _ocsp(ca_server, pems: dict[str, str], folder: Path) -> dict[str, str]:
    return {kind: openssl_ocsp(ca_server.url, pem, folder / kind) for kind, pem in pems.items()}


def _notices(service_server) -> list[dict]:
    path = service_server.data_dir / "notifications.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _table(service_server, query: str) -> list[tuple]:
    engine = sa.create_engine(service_server.database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def _what_changed(service_server) -> tuple:
    """Everything a report could change: states, certificate statuses, history, CA commands, notices."""
    return (_table(service_server, "SELECT id, state, reason FROM registrations ORDER BY id"),
            _table(service_server, "SELECT id, status FROM phone_certificates ORDER BY id"),
            _table(service_server, "SELECT count(*) FROM registration_events"),
            _table(service_server, "SELECT count(*) FROM ca_commands"),
            _table(service_server, "SELECT count(*) FROM owner_notifications"),
            _table(service_server, "SELECT carrier_id, case_number, kind, suspended FROM carrier_reports ORDER BY id"))


def _sample_client(service_server, carrier: CarrierCredentials, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARRIER_CLIENT_ID": carrier.client_id, "CARRIER_CLIENT_SECRET": carrier.client_secret}
    return subprocess.run([sys.executable, str(REPO / "docs" / "examples" / "carrier_client.py"),
                           "--service", service_server.url, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_carriers_report_suspends_the_persons_phone_once_and_the_owner_lifts_it(ca_server, service_server,
                                                                                  tmp_path):
    card, phone, pems = _registered(ca_server, service_server)
    _, _, others = _registered(ca_server, service_server, OTHER_PERSON)
    carrier = _add_carrier(service_server, "docomo")

    # The carrier's system, as the sample client in docs/ does it: a token, then the report.
    sent = _sample_client(service_server, carrier, "--case-number", "DC-2026-000123", "--kind", "lost",
                          *(f"--{item}={value}" for item, value in SUBSCRIBER.items()))
    assert sent.returncode == 0, sent.stderr
    first = json.loads(sent.stdout)
    assert first["case_number"] == "DC-2026-000123" and first["kind"] == "lost" and first["suspended"] == 1
    assert set(first) == {"case_number", "kind", "received_at", "suspended"}  # which ones: never said

    # Both certificates on hold at the CA, as a relying party sees it; the other person's are untouched.
    wait_for(lambda: _ocsp(ca_server, pems, tmp_path / "held") == {
        "signature": "revoked:certificateHold", "authentication": "revoked:certificateHold"})
    assert set(_ocsp(ca_server, others, tmp_path / "others").values()) == {"good"}
    with service_server.client() as owner:
        seen = read(owner, phone)
    assert (seen["state"], seen["reason"], seen["last_change"]["actor"]) == ("suspended", "lost", "carrier")

    # The same case number again: the first answer, and nothing changes.
    before = _what_changed(service_server)
    with service_server.client() as client:
        again = _report(client, _token(client, carrier), "DC-2026-000123", "stolen")
    assert again.status_code == 200 and again.json() == first and again.headers["idempotent-replayed"] == "true"
    assert _what_changed(service_server) == before

    # The owner is told, by the carrier's role and never its name nor the subscriber's items.
    [notice] = wait_for(lambda: _notices(service_server) or None)
    assert (notice["case_reference"], notice["event"], notice["actor"]) == (phone.case_reference, "suspended",
                                                                            "carrier")
    assert "your mobile carrier" in notice["text_en"] and "携帯電話会社" in notice["text_ja"]
    assert "docomo" not in json.dumps(notice)
    # Audited with the carrier's name; the subscriber's items are nowhere in the store.
    trail = _table(service_server, "SELECT actor, action, case_reference, details FROM audit_log ORDER BY seq")
    assert ("carrier:docomo", "suspend", phone.case_reference) in [row[:3] for row in trail]
    assert [row[1] for row in trail if row[0] == "carrier:docomo"] == [
        "carrier-token", "suspend", "carrier-report", "carrier-token", "carrier-report-repeated"]
    [repeated] = [row for row in trail if row[1] == "carrier-report-repeated"]
    assert json.loads(repeated[3]) == {"carrier": "docomo", "case_number": "DC-2026-000123", "kind": "stolen"}
    everything = json.dumps([_table(service_server, f"SELECT * FROM {t}")
                             for t in ("carrier_reports", "audit_log", "registration_events")], default=str)
    assert not any(word in everything for word in ("山田", "太郎", "千代田", "平成"))

    # Found again: the owner lifts with the card and the phone, as after the call centre's suspension.
    with service_server.client() as owner:
        lifted = owner.post(f"/api/v1/registrations/{phone.registration_id}/lift-suspension",
                            json=lift_body(owner, card, phone, rsa.generate_private_key(65537, 2048)))
    assert lifted.status_code == 200, lifted.text
    document = lifted.json()
    assert document["state"] == "active" and document["last_change"]["event"] == "owner-lifted"
    current = {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}
    assert current["authentication"] == pems["authentication"]
    assert _ocsp(ca_server, current, tmp_path / "lifted") == {"signature": "good", "authentication": "good"}
    assert _ocsp(ca_server, {"signature": pems["signature"]}, tmp_path / "old") == {"signature": "revoked:superseded"}


def test_refusals_change_nothing(ca_server, service_server, tmp_path):
    _, phone, pems = _registered(ca_server, service_server)
    docomo, kddi = _add_carrier(service_server, "docomo"), _add_carrier(service_server, "kddi")
    with service_server.client() as client:
        docomo_token, kddi_token = _token(client, docomo), _token(client, kddi)
        before = _what_changed(service_server)

        # No credential, a wrong one, another grant.
        for token in (None, "not-a-token"):
            refused = _report(client, token, "DC-1")
            assert refused.status_code == 401 and refused.json()["error"] == "invalid_token", refused.text
            assert refused.headers["content-type"] == "application/problem+json"
        wrong = client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"},
                            auth=(docomo.client_id, kddi.client_secret))
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        assert wrong.headers["www-authenticate"].startswith("Basic")
        assert client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"}).status_code == 401
        grant = client.post("/api/v1/carrier/token", data={"grant_type": "password"},
                            auth=(docomo.client_id, docomo.client_secret))
        assert grant.status_code == 400 and grant.json()["field"] == "grant_type"

        # A carrier can only suspend: a lift (or anything else) is refused, naming the field.
        for kind in ("found", "lift", "revoke"):
            refused = _report(client, docomo_token, "DC-2", kind)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.kind", refused.text
        assert client.post("/api/v1/carrier/reports/DC-2/lift",
                           headers={"Authorization": f"Bearer {docomo_token}"}).status_code == 404

        # Malformed or oversized reports: 4xx problems naming the field.
        malformed = {
            "body.subscriber.birth": {**SUBSCRIBER, "birth": "平成2年2月30日"},
            "body.subscriber.name": {**SUBSCRIBER, "name": "x" * 201},
            "body.subscriber.address": {**SUBSCRIBER, "address": "\u3000\u200b "},
            "body.subscriber.gender": {**SUBSCRIBER, "gender": "1"},
        }
        for field, subscriber in malformed.items():
            refused = _report(client, docomo_token, "DC-3", subscriber=subscriber)
            assert refused.status_code == 422 and field in [e["field"] for e in refused.json()["errors"]], (
                field, refused.text)
        bad_case = _report(client, docomo_token, "DC 3; DROP")
        assert bad_case.status_code == 422 and bad_case.json()["errors"][0]["field"] == "body.case_number"
        missing = client.post("/api/v1/carrier/reports", headers={"Authorization": f"Bearer {docomo_token}"},
                              json={"case_number": "DC-4", "kind": "lost", "subscriber": {"name": "山田 太郎"}})
        assert missing.status_code == 422 and {e["field"] for e in missing.json()["errors"]} == {
            "body.subscriber.birth", "body.subscriber.address"}
        huge = _report(client, docomo_token, "DC-5", subscriber={**SUBSCRIBER, "note": "x" * 100_000})
        assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
        assert _what_changed(service_server) == before
        assert set(_ocsp(ca_server, pems, tmp_path / "still").values()) == {"good"}

        # Nobody registered under these items: accepted, nothing suspended (whether a person is registered
        # is not the carrier's to learn by asking; docs/carriers.md).
        nobody = _report(client, docomo_token, "DC-6", subscriber=NOBODY)
        assert nobody.status_code == 200 and nobody.json()["suspended"] == 0

        # docomo's case DC-7 suspends; kddi's own DC-7 is kddi's case: not docomo's answer.
        assert _report(client, docomo_token, "DC-7").json()["suspended"] == 1
        theirs = _report(client, kddi_token, "DC-7", subscriber=NOBODY)
        assert theirs.status_code == 200 and theirs.json()["suspended"] == 0
        assert "idempotent-replayed" not in theirs.headers

    # Disabled: its token stops working at once, and it gets no new one.
    disabled = _admin(service_server, "carrier", "disable", "--name", "docomo")
    assert disabled.returncode == 0 and "1 access token(s) ended" in disabled.stdout, disabled.stderr
    listed = json.loads(_admin(service_server, "carrier", "list", "--json").stdout)["carriers"]
    assert [(c["name"], c["state"], c["reports"]) for c in listed] == [("docomo", "disabled", 2),
                                                                       ("kddi", "active", 1)]
    with service_server.client() as client:
        refused = _report(client, docomo_token, "DC-8")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        again = client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"},
                            auth=(docomo.client_id, docomo.client_secret))
        assert again.status_code == 401
        assert _report(client, kddi_token, "DC-9", subscriber=NOBODY).status_code == 200
    with service_server.client() as owner:
        assert read(owner, phone)["state"] == "suspended"
    administrators = _table(service_server, "SELECT actor, action FROM audit_log "
                                             "WHERE action IN ('carrier-added', 'carrier-disabled') ORDER BY seq")
    assert [action for _, action in administrators] == ["carrier-added", "carrier-added", "carrier-disabled"]
    assert all(actor.startswith("administrator:") for actor, _ in administrators)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reports_are_rate_limited_per_carrier(ca_server, service_database_url, tmp_path):
    service = start_service(ca_server, service_database_url, tmp_path,
                            settings={"JPKI_CARRIER_REPORTS_PER_MINUTE": "2"})
    try:
        docomo, kddi = _add_carrier(service, "docomo"), _add_carrier(service, "kddi")
        with service.client() as client:
            token = _token(client, docomo)
            # Six in a row: whichever minute they fall in, one minute holds three of them.
            answers = [_report(client, token, f"DC-{n}", subscriber=NOBODY) for n in range(6)]
            limited = [a for a in answers if a.status_code == 429]
            assert limited and all(a.status_code in (200, 429) for a in answers)
            assert limited[0].json()["scope"] == "carrier-reports" and int(limited[0].headers["retry-after"]) > 0
            # Another carrier has its own count.
            assert _report(client, _token(client, kddi), "DC-0", subscriber=NOBODY).status_code == 200
    finally:
        stop_process(service.process)
