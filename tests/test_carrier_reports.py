"""The carrier's lost-phone report (issue 15, item 2; docs/carriers.md), against the real CA and service
processes over HTTP: credentials made with ``jpki-service carrier add`` (a real subprocess), a token by OAuth2
client credentials, a report sent by the sample client docs/examples/carrier_client.py. Every outcome is
judged at the CA with ``openssl ocsp``, as a relying party sees it.

One CA and one service per backend for the module (tests/shared_ca.py): each test registers persons of its own,
adds carriers under names of its own, and looks only at what it made (its registrations, its carriers' reports,
its notices and audit entries). The test with a report limit has a service of its own on the module's CA."""
from __future__ import annotations

import functools
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

from tests.helpers import openssl_ocsp
from tests.service_helpers import PhoneForTests, lift_body, make_card, read, register
from tests.shared_ca import (  # noqa: F401 (a fixture)
    _fresh_keys_per_test,
    heisei_person,
    module_service_server,
    shared_servers,
    unique,
    unique_person,
)
from tests.test_service_flows import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).parent.parent
# The subscriber as the carrier verified the card at contract: spelt otherwise than the card's own bytes
# (full-width space and digits, the era date, the address's blocks as said), the same items: those of
# tests.helpers.PERSON, born on the day of the test's own person (own_subscriber()).
SUBSCRIBER = {"name": "山田　太郎", "birth": "平成2年1月2日", "address": "東京都千代田区千代田１丁目１番"}
NOBODY = {"name": "鈴木 一郎", "birth": "1970-07-07", "address": "北海道札幌市中央区1-1"}

ca_server, service_server = shared_servers("carrier-reports")


def own_subscriber() -> tuple[dict[str, str], dict[str, str]]:
    """A person of the test's own (tests.helpers.PERSON born on a day no other test's person is) and the
    subscriber's items as the carrier says them: SUBSCRIBER with that birth, in the era (in ASCII digits, as
    SUBSCRIBER's)."""
    person, era = heisei_person()
    return person, {**SUBSCRIBER, "birth": era}


def other_person() -> dict[str, str]:
    """Another person, of the test's own: a report for the subscriber leaves their phone as it was."""
    return {**unique_person("佐藤 花子"), "gender": "2"}


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


def _add_carriers(service, *names: str) -> list[CarrierCredentials]:
    """Carriers named ``names`` made unique: carrier names are the service's, shared by the module's tests."""
    return [_add_carrier(service, unique(name)) for name in names]


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


def _table(service_server, query: str, **lists: list[str]) -> list[tuple]:
    """``query``'s rows; ``lists``: the values of its ``IN :name`` parameters."""
    statement = sa.text(query).bindparams(*(sa.bindparam(name, value, expanding=True) for name, value in lists.items()))
    engine = sa.create_engine(service_server.database_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]
    finally:
        engine.dispose()


def _what_changed(service_server, phones: list[PhoneForTests], carriers: list[CarrierCredentials]) -> tuple:
    """Everything a report could change, for the test's registrations (``phones``, all it registered) and its
    carriers: states, certificate statuses, history, CA commands, notices, the carriers' reports."""
    ids, names = [phone.registration_id for phone in phones], [carrier.name for carrier in carriers]
    return (_table(service_server, "SELECT id, state, reason FROM registrations WHERE id IN :ids ORDER BY id", ids=ids),
            _table(service_server, "SELECT id, status FROM phone_certificates WHERE registration_id IN :ids "
                                   "ORDER BY id", ids=ids),
            _table(service_server, "SELECT count(*) FROM registration_events WHERE registration_id IN :ids", ids=ids),
            _table(service_server, "SELECT count(*) FROM ca_commands WHERE registration_id IN :ids", ids=ids),
            _table(service_server, "SELECT count(*) FROM owner_notifications WHERE registration_id IN :ids", ids=ids),
            _table(service_server, "SELECT carrier_id, case_number, kind, suspended FROM carrier_reports "
                                   "WHERE carrier_id IN (SELECT id FROM carriers WHERE name IN :names) ORDER BY id",
                   names=names))


def _sample_client(service_server, carrier: CarrierCredentials, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARRIER_CLIENT_ID": carrier.client_id, "CARRIER_CLIENT_SECRET": carrier.client_secret}
    return subprocess.run([sys.executable, str(REPO / "docs" / "examples" / "carrier_client.py"),
                           "--service", service_server.url, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_carriers_report_suspends_the_persons_phone_once_and_the_owner_lifts_it(ca_server, service_server,
                                                                                  tmp_path):
    person, said = own_subscriber()
    card, phone, pems = _registered(ca_server, service_server, person)
    _, other, others = _registered(ca_server, service_server, other_person())
    [carrier] = _add_carriers(service_server, "docomo")
    actor = f"carrier:{carrier.name}"

    # The carrier's system, as the sample client in docs/ does it: a token, then the report.
    sent = _sample_client(service_server, carrier, "--case-number", "DC-2026-000123", "--kind", "lost",
                          *(f"--{item}={value}" for item, value in said.items()))
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
    before = _what_changed(service_server, [phone, other], [carrier])
    with service_server.client() as client:
        again = _report(client, _token(client, carrier), "DC-2026-000123", "stolen", said)
    assert again.status_code == 200 and again.json() == first and again.headers["idempotent-replayed"] == "true"
    assert _what_changed(service_server, [phone, other], [carrier]) == before

    # The owner is told, by the carrier's role and never its name nor the subscriber's items (the notices
    # about this test's two persons: the other is told nothing).
    mine = (phone.case_reference, other.case_reference)
    [notice] = wait_for(lambda: [n for n in _notices(service_server) if n["case_reference"] in mine] or None)
    assert (notice["case_reference"], notice["event"], notice["actor"]) == (phone.case_reference, "suspended",
                                                                            "carrier")
    assert "your mobile carrier" in notice["text_en"] and "携帯電話会社" in notice["text_ja"]
    assert "docomo" not in json.dumps(notice) and carrier.name not in json.dumps(notice)
    # Audited with the carrier's name; the subscriber's items are nowhere in the store.
    trail = _table(service_server, "SELECT actor, action, case_reference, details FROM audit_log ORDER BY seq")
    assert (actor, "suspend", phone.case_reference) in [row[:3] for row in trail]
    assert [row[1] for row in trail if row[0] == actor] == [
        "carrier-token", "suspend", "carrier-report", "carrier-token", "carrier-report-repeated"]
    [repeated] = [row for row in trail if row[1] == "carrier-report-repeated" and row[0] == actor]
    assert json.loads(repeated[3]) == {"carrier": carrier.name, "case_number": "DC-2026-000123", "kind": "stolen"}
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
    person, said = own_subscriber()
    _, phone, pems = _registered(ca_server, service_server, person)
    docomo, kddi = _add_carriers(service_server, "docomo", "kddi")
    report = functools.partial(_report, subscriber=said)  # for this test's person unless said otherwise

    with service_server.client() as client:
        docomo_token, kddi_token = _token(client, docomo), _token(client, kddi)
        before = _what_changed(service_server, [phone], [docomo, kddi])

        # No credential, a wrong one, another grant.
        for token in (None, "not-a-token"):
            refused = report(client, token, "DC-1")
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
            refused = report(client, docomo_token, "DC-2", kind)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.kind", refused.text
        assert client.post("/api/v1/carrier/reports/DC-2/lift",
                           headers={"Authorization": f"Bearer {docomo_token}"}).status_code == 404

        # Malformed or oversized reports: 4xx problems naming the field.
        malformed = {
            "body.subscriber.birth": {**said, "birth": "平成2年2月30日"},
            "body.subscriber.name": {**said, "name": "x" * 201},
            "body.subscriber.address": {**said, "address": "\u3000\u200b "},
            "body.subscriber.gender": {**said, "gender": "1"},
        }
        for field, subscriber in malformed.items():
            refused = report(client, docomo_token, "DC-3", subscriber=subscriber)
            assert refused.status_code == 422 and field in [e["field"] for e in refused.json()["errors"]], (
                field, refused.text)
        bad_case = report(client, docomo_token, "DC 3; DROP")
        assert bad_case.status_code == 422 and bad_case.json()["errors"][0]["field"] == "body.case_number"
        missing = client.post("/api/v1/carrier/reports", headers={"Authorization": f"Bearer {docomo_token}"},
                              json={"case_number": "DC-4", "kind": "lost", "subscriber": {"name": "山田 太郎"}})
        assert missing.status_code == 422 and {e["field"] for e in missing.json()["errors"]} == {
            "body.subscriber.birth", "body.subscriber.address"}
        huge = report(client, docomo_token, "DC-5", subscriber={**said, "note": "x" * 100_000})
        assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
        assert _what_changed(service_server, [phone], [docomo, kddi]) == before
        assert set(_ocsp(ca_server, pems, tmp_path / "still").values()) == {"good"}

        # Nobody registered under these items: accepted, nothing suspended (whether a person is registered
        # is not the carrier's to learn by asking; docs/carriers.md).
        nobody = report(client, docomo_token, "DC-6", subscriber=NOBODY)
        assert nobody.status_code == 200 and nobody.json()["suspended"] == 0

        # docomo's case DC-7 suspends; kddi's own DC-7 is kddi's case: not docomo's answer.
        assert report(client, docomo_token, "DC-7").json()["suspended"] == 1
        theirs = report(client, kddi_token, "DC-7", subscriber=NOBODY)
        assert theirs.status_code == 200 and theirs.json()["suspended"] == 0
        assert "idempotent-replayed" not in theirs.headers

    # Disabled: its token stops working at once, and it gets no new one.
    disabled = _admin(service_server, "carrier", "disable", "--name", docomo.name)
    assert disabled.returncode == 0 and "1 access token(s) ended" in disabled.stdout, disabled.stderr
    listed = json.loads(_admin(service_server, "carrier", "list", "--json").stdout)["carriers"]
    assert [(c["name"], c["state"], c["reports"]) for c in listed if c["name"] in (docomo.name, kddi.name)] == [
        (docomo.name, "disabled", 2), (kddi.name, "active", 1)]
    with service_server.client() as client:
        refused = report(client, docomo_token, "DC-8")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        again = client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"},
                            auth=(docomo.client_id, docomo.client_secret))
        assert again.status_code == 401
        assert report(client, kddi_token, "DC-9", subscriber=NOBODY).status_code == 200
    with service_server.client() as owner:
        assert read(owner, phone)["state"] == "suspended"
    administrators = [(actor, action) for actor, action, details in _table(
        service_server, "SELECT actor, action, details FROM audit_log "
                        "WHERE action IN ('carrier-added', 'carrier-disabled') ORDER BY seq")
        if json.loads(details)["carrier"] in (docomo.name, kddi.name)]  # this test's carriers
    assert [action for _, action in administrators] == ["carrier-added", "carrier-added", "carrier-disabled"]
    assert all(actor.startswith("administrator:") for actor, _ in administrators)


@pytest.mark.parametrize("ca_server", ["sqlite"], indirect=True)
def test_reports_are_rate_limited_per_carrier(ca_server, tmp_path):
    """A service of its own (its report limit) on the module's CA."""
    with module_service_server(ca_server, tmp_path, JPKI_CARRIER_REPORTS_PER_MINUTE="2") as service:
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
