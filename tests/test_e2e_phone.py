"""Every owner flow as the owner runs it: ``jpki-ca card issue`` at the municipal office, then
``jpki-app`` commands, each a real process, through the real ``jpki-service serve`` and
``jpki-ca serve`` processes, on SQLite and on PostgreSQL. After each flow the ``openssl ocsp``
CLI confirms every certificate's status at the CA. After each test, every database, log and
phone file is searched for the secrets used and for any 12-digit number: none may be there; and
what the service keeps (its database files with -wal and -shm, or every PostgreSQL table; its data
folder with the notices; its log) is searched for every holder's items, in clear, in DER or inside
base64, while it runs and after it stopped (tests/privacy_scan.py). The CA's store is not searched
for the items: as the CA it holds the certificates, which carry them, by design.

The tests share one CA and one service per backend (tests/shared_ca.py): each issues cards for persons of
its own, and the scans read the shared servers' folders and databases too, so they cover what the test made
(and every other test's data besides). The scan of the running service is made after each test; the scan of
the stopped service once its last test is done, for the holders of every test of the module."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import privacy_scan
from tests.conftest import stop_process
from tests.helpers import openssl_ocsp
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique_person  # noqa: F401 (a fixture)
from tests.test_service_flows import wait_for

pytestmark = pytest.mark.e2e
ca_server, service_server = shared_servers("e2e-phone")

CARD_PASSWORD, CARD_PIN = "MYNA2024CARD", "7391"
PHONE_PASSWORD, PHONE_PIN, NEW_PASSWORD = "PHONE77SIGN", "5820", "RESET99NEW"
SECRETS = (CARD_PASSWORD, PHONE_PASSWORD, NEW_PASSWORD)
PINS = (CARD_PIN, PHONE_PIN)
# A number standing as its own token. Digit runs inside hex ids and serials, and ASN.1 UTCTimes
# (YYMMDDHHMMSSZ, in every certificate) touch letters and are not matched.
INDIVIDUAL_NUMBER = r"(?<![0-9A-Za-z])[0-9]{12}(?![0-9A-Za-z])"
SECRET_ENV = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN}


@dataclass
class World:
    ca: object
    service: object
    tmp: Path
    log: Path
    holders: list[privacy_scan.Holder] = field(default_factory=list)

    def run(self, args: list[str], env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, capture_output=True, text=True, timeout=180,
                                env={**os.environ, **(env or {})})
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(args[2:])}\n{result.stdout}{result.stderr}")
        if check:
            assert result.returncode == 0, f"{args[2:]} failed: {result.stdout}{result.stderr}"
        return result

    def issue_card(self, name: str = "山田 太郎", out: str = "card.json") -> Path:
        """A card for a person of this test's own (the CA and the service are shared: tests/shared_ca.py)."""
        path, person = self.tmp / out, unique_person(name)
        self.holders.append(privacy_scan.Holder(name, person["date_of_birth"], person["address"]))
        self.run([sys.executable, "-m", "ca_mock", "card", "issue", "--out", str(path), "--name", name,
                  "--birth", person["date_of_birth"], "--gender", "1", "--address", person["address"]],
                 {"JPKI_CA_DATA_DIR": str(self.ca.settings.data_dir),
                  "JPKI_CA_DATABASE_URL": self.ca.settings.resolved_database_url(),
                  "JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_CARD_PIN": CARD_PIN})
        return path

    def app(self, phone: str, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "app_client", "--home", str(self.tmp / phone),
                         "--service", self.service.url, *args], env, check)

    def status(self, phone: str) -> dict:
        return json.loads(self.app(phone, "status", "--json").stdout)

    def owner_token(self, phone: str) -> str:
        """The token that reads the phone's registration: in its SE while it lives, then in the app's
        record of its end (``status`` never prints it)."""
        se = json.loads((self.tmp / phone / "se" / "state.json").read_text())
        if se.get("owner_token"):
            return se["owner_token"]
        return json.loads((self.tmp / phone / "app" / "app.json").read_text())["ended"]["owner_token"]

    def ocsp(self, certificate_pem: str) -> str:
        return openssl_ocsp(self.ca.url, certificate_pem, self.tmp / "openssl")


def certificates(document: dict) -> dict[str, str]:
    return {c["kind"]: c["certificate_pem"] for c in document["certificates"] if c["current"]}


def _database_text(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return "\n".join(repr(connection.execute(sa.text(f'SELECT * FROM "{table}"')).all())
                             for table in sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def holders_of_the_module(service_server):
    """Every holder of the module's tests on this backend's service. When the last test is done, the service
    is stopped and what it keeps (database file, WAL, data folder, log) is searched for all their items."""
    holders: list[privacy_scan.Holder] = []
    yield holders
    assert holders, "the scan needs the holders whose items it looks for"
    stop_process(service_server.process)
    logs = [service_server.data_dir.parent / "service.log"]
    stopped = privacy_scan.service_sources(service_server.database_url, service_server.data_dir, logs)
    found = privacy_scan.scan({f"{where} (service stopped)": blob for where, blob in stopped.items()}, holders)
    assert not found, "holder items in clear in the stopped service's store:\n" + "\n".join(found[:20])


@pytest.fixture
def world(ca_server, service_server, holders_of_the_module, tmp_path):
    world = World(ca_server, service_server, tmp_path, tmp_path / "app.log")
    yield world
    holders_of_the_module.extend(world.holders)
    # Privacy: nothing anywhere holds a secret or a 12-digit number (the Individual Number).
    # Files are read by another process: the CA's store is open in this one (tests/privacy_scan.py).
    # This test's folder (phones, cards, app log) and the shared CA's and service's folders (store files,
    # data folders, logs), where conftest's per-test servers kept theirs in this test's folder.
    ca_folder, service_folder = ca_server.settings.data_dir.parent, service_server.data_dir.parent
    texts = {str(p): privacy_scan.read_file(p).decode("latin-1") for folder in (tmp_path, ca_folder, service_folder)
             for p in folder.rglob("*") if p.is_file()}
    texts["ca database"] = _database_text(ca_server.settings.resolved_database_url())
    texts["service database"] = _database_text(service_server.database_url)
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text and secret.lower() not in text, f"a password in {where}"
        for pin in PINS:
            found = re.search(rf"(?<![0-9A-Za-z]){pin}(?![0-9A-Za-z])", text)
            assert not found, f"a PIN in {where}: {text[max(0, found.start() - 40):found.end() + 40]!r}"
        found = re.search(INDIVIDUAL_NUMBER, text)
        assert not found, f"a 12-digit number in {where}: {text[max(0, found.start() - 40):found.end() + 40]!r}"
    # Personal data at rest in the service: sealed or blind-indexed, never in clear (the CA, the J-LIS
    # stand-in, holds the card's items by design; the phone's files are the owner's own). Searched while
    # the service runs (its WAL as it stands), and after it stopped (holders_of_the_module).
    assert world.holders, "the scan needs the holders whose items it looks for"
    logs = [service_folder / "service.log"]
    running = privacy_scan.service_sources(service_server.database_url, service_server.data_dir, logs)
    found = privacy_scan.scan(running, world.holders)
    assert not found, "holder items in clear in the service's store:\n" + "\n".join(found[:20])


def test_register_status_login_revoke(world):
    card = world.issue_card()
    out = world.app("phone", "register", "--card", str(card), **SECRET_ENV).stdout
    assert "registered this phone" in out
    document = world.status("phone")["registration"]
    assert document["state"] == "active" and document["ca_sync"] == "done"
    pems = certificates(document)
    assert {kind: world.ocsp(pem) for kind, pem in pems.items()} == {"signature": "good", "authentication": "good"}

    assert "logged in" in world.app("phone", "login", JPKI_AUTH_PIN=PHONE_PIN).stdout

    world.app("phone", "revoke", JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    # Deleted from the SE; the phone still shows the ended registration until the owner forgets it.
    after = world.status("phone")
    assert after["registration"]["state"] == "revoked" and after["ended"]["ended_by"] == "owner-revoke"
    world.app("phone", "forget")
    assert world.status("phone")["registration"] is None
    for pem in pems.values():
        assert world.ocsp(pem) == "revoked:cessationOfOperation"
    refused = world.app("phone", "login", JPKI_AUTH_PIN=PHONE_PIN, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr


def test_a_new_phone_supersedes_the_old_one(world):
    card = world.issue_card()
    world.app("old", "register", "--card", str(card), **SECRET_ENV)
    old_pems = certificates(world.status("old")["registration"])
    world.app("new", "register", "--card", str(card), **SECRET_ENV)
    for pem in old_pems.values():
        assert world.ocsp(pem) == "revoked:superseded"
    for pem in certificates(world.status("new")["registration"]).values():
        assert world.ocsp(pem) == "good"
    # The old phone, online again, learns it and deletes its copy.
    report = world.status("old")
    assert report["registration"]["state"] == "revoked" and report["registration"]["reason"] == "superseded"
    assert report["copy_deleted"] is True
    again = world.status("old")  # kept as ended until forgotten
    assert again["registration"]["state"] == "revoked" and again["ended"]["ended_by"] == "found-ended"


def test_wrong_passwords_lock_and_the_card_resets(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    pems = certificates(world.status("phone")["registration"])
    for _ in range(5):
        wrong = world.app("phone", "revoke", check=False, JPKI_SIGN_PASSWORD="WRONG1PASS")
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    locked = world.app("phone", "revoke", check=False, JPKI_SIGN_PASSWORD=PHONE_PASSWORD)
    assert locked.returncode == 1 and "locked" in locked.stderr
    assert all(world.ocsp(pem) == "good" for pem in pems.values())  # nothing changed
    world.app("phone", "reset-password", "--card", str(card), JPKI_CARD_PASSWORD=CARD_PASSWORD,
              JPKI_NEW_SIGN_PASSWORD=NEW_PASSWORD)
    world.app("phone", "revoke", JPKI_SIGN_PASSWORD=NEW_PASSWORD)
    assert all(world.ocsp(pem) == "revoked:cessationOfOperation" for pem in pems.values())


def test_online_uninstall_expires_the_certificates(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    pems = certificates(world.status("phone")["registration"])
    world.app("phone", "uninstall")
    assert all(world.ocsp(pem) == "revoked:cessationOfOperation" for pem in pems.values())


def test_offline_uninstall_leaves_them_live_until_reinstall(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    pems = certificates(world.status("phone")["registration"])
    world.app("phone", "uninstall", "--offline")
    assert all(world.ocsp(pem) == "good" for pem in pems.values())  # as in reality
    assert "found the certificates" in world.app("phone", "install").stdout
    assert all(world.ocsp(pem) == "revoked:cessationOfOperation" for pem in pems.values())
    stale = world.status("phone")["ended"]
    assert stale["ended_by"] == "stale-certificate" and stale["state"] == "expired"


def test_factory_reset_then_install_deletes_the_stale_certificates(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    pems = certificates(world.status("phone")["registration"])
    world.app("phone", "factory-reset")
    assert all(world.ocsp(pem) == "good" for pem in pems.values())  # the SE survived the reset
    world.app("phone", "install")
    assert all(world.ocsp(pem) == "revoked:cessationOfOperation" for pem in pems.values())


def test_revocation_while_the_ca_is_down_completes_when_it_returns(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    document = world.status("phone")["registration"]
    pems, registration_id = certificates(document), document["registration_id"]
    world.ca.stop()
    try:
        out = world.app("phone", "revoke", JPKI_SIGN_PASSWORD=PHONE_PASSWORD).stdout
        assert "ca_sync pending" in out
        import httpx

        # Read as the phone reads it: with the owner token its record of the ended registration keeps.
        owner_token = world.owner_token("phone")
        url, owner = f"{world.service.url}/api/v1/registrations/{registration_id}", {
            "Authorization": f"Bearer {owner_token}"}
        pending = httpx.get(url, headers=owner).json()
        assert pending["state"] == "revoked" and pending["ca_sync"] == "pending"
        # Nobody else reads it: no token, 401, and none of its certificates.
        anyone = httpx.get(url)
        assert anyone.status_code == 401 and "BEGIN CERTIFICATE" not in anyone.text
        assert all(pem not in anyone.text for pem in pems.values())
    finally:
        world.ca.start()
    import httpx

    wait_for(lambda: httpx.get(url, headers=owner).json()["ca_sync"] == "done", timeout=30)
    assert owner_token not in world.app("phone", "status", "--json").stdout
    assert all(world.ocsp(pem) == "revoked:cessationOfOperation" for pem in pems.values())


def test_card_revocation_cascades_to_the_phone_signature_certificate(world):
    card = world.issue_card()
    world.app("phone", "register", "--card", str(card), **SECRET_ENV)
    pems = certificates(world.status("phone")["registration"])
    card_serial = json.loads(card.read_text())["signature"]["serial"]
    world.run([sys.executable, "-m", "ca_mock", "revoke", card_serial, "--reason", "affiliationChanged"],
              {"JPKI_CA_DATA_DIR": str(world.ca.settings.data_dir),
               "JPKI_CA_DATABASE_URL": world.ca.settings.resolved_database_url()})
    wait_for(lambda: world.ocsp(pems["signature"]) == "revoked:affiliationChanged", timeout=30)
    assert world.ocsp(pems["authentication"]) == "good"
    assert "logged in" in world.app("phone", "login", JPKI_AUTH_PIN=PHONE_PIN).stdout


def test_a_locked_or_revoked_card_registers_nothing(world):
    card = world.issue_card()
    for _ in range(5):
        wrong = world.app("phone", "register", "--card", str(card), check=False,
                          **{**SECRET_ENV, "JPKI_CARD_PASSWORD": "WRONG2CARD"})
        assert wrong.returncode == 1
    locked = world.app("phone", "register", "--card", str(card), check=False, **SECRET_ENV)
    assert locked.returncode == 1 and "locked" in locked.stderr
    other = world.issue_card("佐藤 花子", "other.json")
    world.run([sys.executable, "-m", "ca_mock", "revoke", json.loads(other.read_text())["signature"]["serial"],
               "--reason", "keyCompromise"],
              {"JPKI_CA_DATA_DIR": str(world.ca.settings.data_dir),
               "JPKI_CA_DATABASE_URL": world.ca.settings.resolved_database_url()})
    refused = world.app("phone", "register", "--card", str(other), check=False, **SECRET_ENV)
    assert refused.returncode == 1 and "revoked" in refused.stderr
    assert world.status("phone")["registration"] is None
