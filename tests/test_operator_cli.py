"""``jpki-operator``, the call centre's command line, run as a real subprocess against the real
``jpki-service serve`` and ``jpki-ca serve`` processes, on SQLite and on PostgreSQL.

The registration is made through the service's HTTP API with a real card; the operators are
created on the service's database. Each act's outcome is checked in the CLI's output, and the
certificates' status at the CA itself (OCSP). Exit codes: 1 refused, 2 usage / not signed in,
3 service unreachable (docs/operator-api.md).

One CA and one service per backend for the module (tests/shared_ca.py): each test signs in with accounts of its
own (the three roles' names made unique) and registers a card of a person of its own. The test that stops the CA
keeps a CA and a service of its own.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from jpki_service.adapters.db import Store
from jpki_service.operators.roles import Role
from jpki_service.operators.service import add_operator
from tests.conftest import free_port
from tests.japanese_output import untranslated
from tests.service_helpers import PhoneForTests, make_card, register
from tests.shared_ca import (  # noqa: F401 (fixtures)
    _fresh_keys_per_test,
    heisei_person,
    own_ca_server,
    own_service_server,
    shared_servers,
)
from tests.test_service_flows import ocsp_status, wait_for

pytestmark = pytest.mark.e2e

PASSWORDS = {"op.sato": "operator-pass-4821", "sv.suzuki": "supervisor-pass-9034",
             "au.ito": "auditor-pass-5517"}
ROLES = {"op.sato": Role.OPERATOR, "sv.suzuki": Role.SUPERVISOR, "au.ito": Role.AUDITOR}
# How a caller may say the card's items (tests/helpers.py PERSON's name and address; the birth is the test's
# person's, heisei_person): an ideographic space and extra spaces in the name, full-width digits and a
# full-width hyphen in the address.
SPOKEN_NAME, SPOKEN_ADDRESS = " 山田　 太郎 ", "東京都千代田区千代田１－１"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

ca_server, service_server = shared_servers("operator-cli")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "jpki-operator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jpki_service.operators.client_cli"]


def _clean_env() -> dict[str, str]:
    """The caller's environment without any JPKI setting that could point elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JPKI_")}


@dataclass
class Operator:
    """One call-centre person at their own terminal: own session file, own credentials."""

    username: str
    service_url: str
    home: Path
    outputs: list[str] = field(default_factory=list)
    password: str | None = None  # PASSWORDS[username] unless given

    @property
    def session_file(self) -> Path:
        return self.home / "jpki-operator" / "session.json"

    def run(self, *args: str, password: str | None = None, input: str | None = None,
            **extra_env: str) -> subprocess.CompletedProcess:
        env = {**_clean_env(), "NO_COLOR": "1", "COLUMNS": "250", "HOME": str(self.home), "JPKI_LANG": "en",
               "JPKI_OPERATOR_SERVICE": self.service_url, "JPKI_OPERATOR_SESSION": str(self.session_file),
               "JPKI_OPERATOR_USER": self.username,
               "JPKI_OPERATOR_PASSWORD": password if password is not None
               else self.password or PASSWORDS[self.username],
               **extra_env}
        # A new session: no controlling terminal, so a prompt reads stdin (empty unless ``input``).
        result = subprocess.run([*_command(), *args], env=env, capture_output=True, text=True, timeout=120,
                                input=input or "", start_new_session=True)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        self.outputs.append(result.stdout + result.stderr)
        return result

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.run(*args, **kw)
        assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str, **kw) -> dict:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def refused(self, *args: str, code: int, message: str, **kw) -> str:
        """Exit ``code``, nothing on stdout, one line on stderr containing ``message``."""
        result = self.run(*args, **kw)
        assert result.returncode == code, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.stdout == "", result.stdout
        assert message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        return result.stderr.strip()


def _call_centre(service, tmp_path: Path) -> dict[str, Operator]:
    """The three roles' accounts on the service's database, each with a home folder, keyed by PASSWORDS's
    names: the accounts' own names are those made unique (other tests sign in on the same service)."""
    suffix = uuid.uuid4().hex[:8]
    operators = {name: Operator(f"{name}-{suffix}", service.url, tmp_path / name, password=password)
                 for name, password in PASSWORDS.items()}
    store = Store(service.database_url)
    try:
        for name, operator in operators.items():
            add_operator(store, operator.username, ROLES[name], PASSWORDS[name])
    finally:
        store.dispose()
    return operators


@pytest.fixture
def call_centre(service_server, tmp_path: Path) -> dict[str, Operator]:
    """The three roles' accounts on the module's service."""
    return _call_centre(service_server, tmp_path)


@pytest.fixture
def own_call_centre(own_service_server, tmp_path: Path) -> dict[str, Operator]:
    """The three roles' accounts on a service of the test's own."""
    return _call_centre(own_service_server, tmp_path)


def _state(operator: Operator, case: str) -> dict:
    return operator.json("history", case)


def _ca_sync_done(service_url: str, phone: PhoneForTests) -> None:
    """Wait until the CA has every change (polled as the owner's phone reads it: history views are audited)."""
    url = f"{service_url}/api/v1/registrations/{phone.registration_id}"
    headers = {"Authorization": f"Bearer {phone.owner_token}"}
    wait_for(lambda: httpx.get(url, headers=headers).json()["ca_sync"] == "done")


def _no_secret_shown(operators: dict[str, Operator]) -> None:
    tokens = [json.loads(o.session_file.read_text())["token"]
              for o in operators.values() if o.session_file.exists()]
    for operator in operators.values():
        for output in operator.outputs:
            for secret in [*PASSWORDS.values(), *tokens]:
                assert secret not in output


def test_call_centre_over_the_cli(ca_server, service_server, call_centre):
    op, sv, au = call_centre["op.sato"], call_centre["sv.suzuki"], call_centre["au.ito"]
    person, era = heisei_person()
    era_birth = era.translate(FULL_WIDTH)  # as the caller says it, in full-width digits
    birth = person["date_of_birth"]  # as a caller says it: the ISO date
    card = make_card(ca_server.store, ca_server.settings, person)
    phone = PhoneForTests()
    with service_server.client() as client:
        registered = register(client, card, phone)
    assert registered.status_code == 201, registered.text
    rid = phone.case_reference  # what staff name it by; they never see the registration id
    pems = {c["kind"]: c["certificate_pem"] for c in registered.json()["certificates"]}

    # Login: the token in a 0600 file in a 0700 folder; the password nowhere.
    for operator in (op, sv, au):
        out = operator.ok("login").stdout
        assert f"signed in to {service_server.url} as {operator.username}" in out
    assert stat.S_IMODE(op.session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(op.session_file.parent.stat().st_mode) == 0o700
    saved = json.loads(op.session_file.read_text())
    assert saved["service"] == service_server.url and saved["token"]
    assert PASSWORDS["op.sato"] not in op.session_file.read_text()
    assert f"{op.username} (operator)" in op.ok("whoami").stdout
    assert op.json("whoami")["role"] == "operator" and "token" not in op.json("whoami")

    # Find by what the caller says, spelled differently from the card.
    table = op.ok("find", "--name", SPOKEN_NAME, "--birth", birth, "--address", SPOKEN_ADDRESS).stdout
    header, row = table.splitlines()
    assert header.split() == ["CASE", "NAME", "REGISTERED", "MODEL", "STATE", "REASON"]
    assert rid in row and "山* 太*" in row and "Test Phone 1" in row and "active" in row
    assert "太郎" not in table
    found = op.json("find", "--name", SPOKEN_NAME, "--birth", birth, "--address", SPOKEN_ADDRESS)
    assert [r["case_reference"] for r in found["results"]] == [rid] and phone.registration_id not in table
    # As a caller in Japan says it: the era date the card prints, the address's block numbers spoken.
    said = op.json("find", "--name", SPOKEN_NAME, "--birth", era_birth,
                   "--address", "東京都千代田区千代田一丁目一番")
    assert [r["case_reference"] for r in said["results"]] == [rid]
    op.refused("find", "--name", SPOKEN_NAME, "--birth", "平成32年1月2日", "--address", SPOKEN_ADDRESS, code=1,
               message="birth is not a real date: 平成 ended in its year 31")
    by_code = op.json("find", "--code", registered.json()["suspension_code"].lower())
    assert [r["case_reference"] for r in by_code["results"]] == [rid]
    # In Japanese, the default (here by --lang, and by JPKI_LANG): the service's words, Japan time.
    for japanese in (op.ok("--lang", "ja", "find", "--code", registered.json()["suspension_code"]).stdout,
                     op.ok("find", "--code", registered.json()["suspension_code"], JPKI_LANG="ja").stdout):
        header, row = japanese.splitlines()
        assert header.split() == ["受付番号", "氏名", "登録日時", "機種", "状態", "理由"]
        assert rid in row and "有効" in row and "日本時間" in row and untranslated(japanese) == []

    # Suspend, for the owner's spouse: both certificates held, at the CA too.
    suspended = op.json("suspend", rid, "--reason", "lost", "--caller", "proxy", "--relationship", "spouse",
                        "--ticket", "CC-2024-0001")
    assert suspended["state"] == "suspended" and suspended["reason"] == "lost"
    assert {c["kind"]: c["status"] for c in suspended["certificates"]} == {"signature": "held",
                                                                           "authentication": "held"}
    _ca_sync_done(service_server.url, phone)
    assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:certificateHold"}

    # An operator may not lift: refused, one line, exit 1, nothing changed.
    line = op.refused("lift", rid, "--reason", "found at home", "--caller", "self", "--ticket", "CC-2024-0002", code=1,
                      message="refused (403 Not allowed for this role): ")
    assert line == ("refused (403 Not allowed for this role): "
                    "an operator may not lift a suspension (only: supervisor)")
    problem = json.loads(op.refused("lift", rid, "--reason", "found at home", "--caller", "self",
                                    "--ticket", "CC-2024-0002", "--json", code=1, message='"status":403'))
    assert problem["title"] == "Not allowed for this role" and problem["type"].endswith("/role-forbidden")
    assert _state(op, rid)["registration"]["state"] == "suspended"
    assert {ocsp_status(ca_server.url, pem) for pem in pems.values()} == {"revoked:certificateHold"}

    # The supervisor lifts: authentication released, signature revoked (the app reissues it).
    text = sv.ok("lift", rid, "--reason", "found at home", "--caller", "self", "--ticket", "CC-2024-0002").stdout
    assert ((f"registration {rid}: active" in text and "ca_sync done: the CA has it" in text)
            or (f"registration {rid}: lift requested, waiting for the CA" in text
                and "recorded, on its way to the CA" in text)), text
    assert "new signature certificate" in text
    lifted = _state(sv, rid)["registration"]
    assert lifted["state"] == "active" and lifted["signature_reissue_needed"] is True
    assert {c["kind"]: c["status"] for c in lifted["certificates"]} == {"signature": "revoked",
                                                                        "authentication": "good"}
    _ca_sync_done(service_server.url, phone)
    assert ocsp_status(ca_server.url, pems["authentication"]) == "good"
    assert ocsp_status(ca_server.url, pems["signature"]) == "revoked:superseded"

    # History: each change with the operator who made it.
    japanese = op.ok("--lang", "ja", "history", rid).stdout
    assert f"登録 {rid}: 有効" in japanese and "署名用電子証明書" in japanese and "一時利用停止中" in japanese
    # The notes are what the operators typed (here in English): values, as the case references are.
    assert "管理者による一時利用停止の解除" in japanese
    assert untranslated(japanese.replace("found at home", "")) == [], japanese
    history = op.ok("history", rid).stdout
    assert "suspended" in history and f"operator:{op.username}" in history and f"supervisor:{sv.username}" in history
    assert "lost; caller proxy (spouse); ticket CC-2024-0001" in history
    events = {e["event"]: e for e in op.json("history", rid)["events"]}
    assert events["suspended"]["operator"] == op.username and events["suspended"]["to_state"] == "suspended"
    assert events["supervisor-lifted"]["operator"] == sv.username

    # The supervisor revokes for good.
    revoked = sv.json("revoke", rid, "--reason", "keyCompromise", "--caller", "self", "--ticket", "CC-2024-0003",
                      "--note", "phone stolen again")
    assert revoked["state"] == "revoked"
    assert {c["status"] for c in revoked["certificates"]} == {"revoked"}
    _ca_sync_done(service_server.url, phone)
    assert ocsp_status(ca_server.url, pems["authentication"]) == "revoked:keyCompromise"
    op.refused("suspend", rid, "--reason", "stolen", "--caller", "self", "--ticket", "CC-2024-0004", code=1,
               message="refused (409 Not possible in this state)")

    # The auditor reads the trail; the others may not, and the auditor may not act.
    trail = au.json("audit", "--limit", "200")["entries"]
    acts = {(e["actor"], e["action"]) for e in trail}
    assert {(f"operator:{op.username}", "suspend"), (f"supervisor:{sv.username}", "lift"),
            (f"supervisor:{sv.username}", "revoke"), (f"operator:{op.username}", "find"),
            (f"operator:{op.username}", "login")} <= acts
    assert not any(e["action"] == "lift" and e["actor"].startswith("operator:") for e in trail)
    listing = au.ok("audit", "--limit", "5").stdout
    assert listing.splitlines()[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "CASE", "DETAILS"]
    assert len(listing.splitlines()) == 6
    older = au.run("audit", "--limit", "5").stderr.strip()
    assert older.startswith("(older entries: --before ")
    before = int(older.rsplit(" ", 1)[1].rstrip(")"))
    page = au.json("audit", "--limit", "5", "--before", str(before))["entries"]
    assert [e["seq"] for e in page] == list(range(before - 1, before - 6, -1))
    mine = au.json("audit", "--case", rid.lower().replace("-", " "))["entries"]  # as read out, any case
    assert mine and {e["case_reference"] for e in mine} == {rid}
    op.refused("audit", code=1,
               message="refused (403 Not allowed for this role): an operator may not read the audit")
    sv.refused("audit", code=1, message="(only: auditor)")
    au.refused("history", rid, code=1, message="refused (403 Not allowed for this role): an auditor may not")

    # Nothing found: a clear refusal, exit 1.
    op.refused("find", "--name", "山田 花子", "--birth", birth, "--address", SPOKEN_ADDRESS, code=1,
               message="refused (404 No registration matches): no registration matches")

    # Logout ends the session at the service too.
    token = json.loads(op.session_file.read_text())["token"]
    _no_secret_shown(call_centre)
    assert "signed out" in op.ok("logout").stdout
    assert not op.session_file.exists()
    op.refused("whoami", code=2, message="not signed in: run jpki-operator login")
    assert httpx.get(f"{service_server.url}/api/v1/operator/session",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    _no_secret_shown(call_centre)


def test_with_the_ca_down_the_cli_says_the_suspension_waits_for_it(own_ca_server, own_service_server,
                                                                   own_call_centre):
    """Honest status: until the CA has the hold, jpki-operator says it was requested, never that it is done
    (relying parties still get `good` from the CA meanwhile); once the CA has it, `history` says suspended.
    It stops the CA: a CA and a service of its own."""
    ca_server, service_server, op = own_ca_server, own_service_server, own_call_centre["op.sato"]
    phone = PhoneForTests()
    with service_server.client() as client:
        registered = register(client, make_card(ca_server.store, ca_server.settings), phone)
    assert registered.status_code == 201, registered.text
    pems = [c["certificate_pem"] for c in registered.json()["certificates"]]
    op.ok("login")
    ca_server.stop()
    try:
        text = op.ok("suspend", phone.case_reference, "--reason", "lost", "--caller", "self",
                     "--ticket", "CC-2024-0100").stdout
        assert f"registration {phone.case_reference}: suspension requested, waiting for the CA (lost)" in text, text
        assert text.count("held requested, waiting for the CA") == 2, text  # both certificates
        assert "recorded, on its way to the CA" in text
        assert f"registration {phone.case_reference}: suspended" not in text
        japanese = op.ok("--lang", "ja", "history", phone.case_reference).stdout
        assert "一時利用停止を依頼済み（認証局の反映待ち）" in japanese and untranslated(japanese) == []
    finally:
        ca_server.start()
    _ca_sync_done(service_server.url, phone)
    assert f"registration {phone.case_reference}: suspended (lost)" in op.ok("history", phone.case_reference).stdout
    assert {ocsp_status(ca_server.url, pem) for pem in pems} == {"revoked:certificateHold"}


def test_sign_in_refusals(service_server, call_centre):
    op, sv = call_centre["op.sato"], call_centre["sv.suzuki"]

    # Not signed in: exit 2 with the hint, for every command that needs a session.
    for args in (["whoami"], ["find", "--code", "ABCD-EFGH-JKMN"], ["audit"], ["history", "ABCD-EFGH-JKMN"],
                 ["logout"]):
        op.refused(*args, code=2, message="not signed in: run jpki-operator login")
    problem = json.loads(op.refused("whoami", "--json", code=2, message="not-signed-in"))
    assert problem["title"] == "Not signed in"

    # A session the service no longer knows: exit 2, and the stale file is removed.
    op.ok("login")
    session = json.loads(op.session_file.read_text())
    op.session_file.write_text(json.dumps({**session, "token": "not-a-real-token"}))
    op.refused("whoami", code=2, message="not signed in: run jpki-operator login")
    assert not op.session_file.exists()

    # The session is for its service: another --service must log in again.
    op.ok("login")
    op.refused("whoami", code=2, message="not signed in", JPKI_OPERATOR_SERVICE="http://127.0.0.1:1")
    op.refused("whoami", code=2, message="not signed in", JPKI_SERVICE_URL="http://127.0.0.1:1")
    # JPKI_SERVICE_URL, jpki-app's variable, names the service for jpki-operator too (the old name is an alias).
    assert f"signed in to {op.service_url}" in op.ok("login", JPKI_OPERATOR_SERVICE="",
                                                      JPKI_SERVICE_URL=op.service_url).stdout

    # Usage errors: exit 2.
    for args in (["find", "--name", "山田 太郎"],
                 ["find", "--code", "X", "--name", "Y", "--birth", "1990-01-02", "--address", "Z"],
                 ["suspend", "ABCD-EFGH-JKMN", "--reason", "lost", "--caller", "proxy", "--ticket", "T1"],
                 ["suspend", "not-an-id", "--reason", "lost", "--caller", "self", "--ticket", "T1"],
                 ["history", "0" * 32],  # a registration id is not a case reference
                 ["suspend", "ABCD-EFGH-JKMN", "--reason", "bored", "--caller", "self", "--ticket", "T1"]):
        assert op.run(*args).returncode == 2, args
    # Invalid input the service refuses: exit 1 with its detail; an unknown registration: 404.
    op.refused("suspend", "ABCD-EFGH-JKMN", "--reason", "lost", "--caller", "self", "--ticket", "no spaces allowed",
               code=1, message="refused (422 Invalid request): ")
    op.refused("suspend", "ABCD-EFGH-JKMN", "--reason", "lost", "--caller", "self", "--ticket", "T1",
               code=1, message="refused (404 Unknown registration)")

    # Prompted user and password (none in the environment): the password is read without echo.
    sv.session_file.unlink(missing_ok=True)
    prompted = sv.run("login", input=f"{sv.username}\n{PASSWORDS['sv.suzuki']}\n",
                      JPKI_OPERATOR_USER="", JPKI_OPERATOR_PASSWORD="")
    assert prompted.returncode == 0, prompted.stderr
    assert f"as {sv.username} (supervisor)" in prompted.stdout and sv.session_file.exists()
    assert f"{sv.username} (supervisor)" in sv.ok("whoami").stdout

    # Wrong passwords: refused each time (the throttle that follows more of them: tests/test_operator_accounts.py).
    for _ in range(4):
        sv.refused("login", password="wrong-password-000", code=1,
                   message="refused (401 Login refused): username or password wrong")
    assert f"{sv.username} (supervisor)" in sv.ok("whoami").stdout  # a refused login leaves the session as it was
    # An unknown account gets the same answer as a wrong password.
    stranger = Operator("nobody.here", service_server.url, op.home.parent / "nobody")
    stranger.refused("login", password="whatever-password", code=1,
                     message="refused (401 Login refused): username or password wrong")
    _no_secret_shown(call_centre)


def test_service_unreachable(tmp_path: Path):
    """No server needed: exit 3 with a one-line reason, for login and for a signed-in command."""
    url = f"http://127.0.0.1:{free_port()}"
    op = Operator("op.sato", url, tmp_path / "op")
    op.refused("login", code=3, message=f"service unreachable: cannot reach the service at {url}")
    problem = json.loads(op.refused("login", "--json", code=3, message="service-unreachable"))
    assert problem["title"] == "Service unreachable"
    op.session_file.parent.mkdir(mode=0o700, parents=True)
    op.session_file.write_text(json.dumps({"service": url, "token": "t" * 43}))
    op.refused("whoami", code=3, message="service unreachable")
    op.refused("logout", code=3, message="service unreachable")
    assert op.session_file.exists()  # kept: the session may still be live, logout can be tried again
    op.refused("login", code=2, message="--service must be an http:// or https:// URL",
               JPKI_OPERATOR_SERVICE="ftp://example.invalid")
