"""Issue 13, items 1 and 2: staff accounts are throttled, never locked, and the administrator can
list, disable, enable, reset, re-role and sign out each of them.

Through the real ``jpki-service serve`` process over HTTP and the real CLIs (``jpki-service operator``,
``jpki-operator``), on SQLite and PostgreSQL. Sources are told apart as the deployment does: the
test client is the trusted proxy (``JPKI_TRUSTED_PROXIES``) and names each caller in X-Forwarded-For.
The waits are set long (600 s) so that nothing here depends on how fast the machine is; the waits'
arithmetic, with an injected clock, is at the end.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jpki_service.adapters.db import Store
from jpki_service.audit import service as audit
from jpki_service.operators import throttle
from jpki_service.operators.roles import Role
from jpki_service.operators.service import add_operator as add_account
from jpki_service.operators.service import disable, reset_password
from tests.conftest import start_service, stop_process
from tests.service_helpers import OPERATOR_PASSWORD, add_operator
from tests.test_console_security import PASSWORD, Console, make_console  # noqa: F401  (a fixture)

SESSION = "/api/v1/operator/session"
THROTTLED = {"JPKI_TRUSTED_PROXIES": "127.0.0.1", "JPKI_OPERATOR_LOGIN_FREE_FAILURES": "3",
             "JPKI_OPERATOR_LOGIN_FIRST_DELAY_SECONDS": "600"}
OWNER_DESK, NEW_DESK = "198.51.100.7", "198.51.100.8"


@pytest.fixture
def service(ca_server, service_database_url, tmp_path):
    running = start_service(ca_server, service_database_url, tmp_path, settings=THROTTLED)
    yield running
    stop_process(running.process)


def _sign_in(service, username: str, password: str, source: str):
    with service.client() as client:
        return client.post(SESSION, json={"username": username, "password": password},
                           headers={"X-Forwarded-For": source})


def _bearer(service, token: str, source: str = OWNER_DESK):
    client = service.client()
    client.headers.update({"Authorization": f"Bearer {token}", "X-Forwarded-For": source})
    return client


def _audit(service) -> list[dict]:
    store = Store(service.database_url)
    try:
        with store.sessions() as session:
            return audit.entries(session, limit=1000)
    finally:
        store.dispose()


def _same_refusal(a, b) -> None:
    """Same status and problem document, seconds aside (they may straddle a second boundary)."""
    assert a.status_code == b.status_code
    assert a.headers["content-type"] == b.headers["content-type"] == "application/problem+json"
    first, second = a.json(), b.json()
    for document in (first, second):
        document["detail"] = re.sub(r"\d+ s", "N s", document["detail"])
        document.pop("retry_after", None)
    assert first == second
    if a.status_code == 429:
        assert abs(int(a.headers["retry-after"]) - int(b.headers["retry-after"])) <= 1


@pytest.mark.e2e
def test_a_stranger_neither_keeps_the_owner_out_nor_learns_which_accounts_exist(service):
    add_operator(service, "hana", "supervisor")
    assert _sign_in(service, "hana", OPERATOR_PASSWORD, OWNER_DESK).status_code == 201  # her usual desk

    # A stranger guesses from many addresses, at hana and at a name no account has: the same answers.
    answers: dict[str, list] = {"hana": [], "no.such.person": []}
    for i in range(4):
        for name in answers:
            answers[name].append(_sign_in(service, name, f"guess-{i}-xxxxxx", f"203.0.113.{i + 1}"))
    for known, unknown in zip(answers["hana"], answers["no.such.person"], strict=True):
        _same_refusal(known, unknown)
    statuses = [a.status_code for a in answers["hana"]]
    assert statuses == [401, 401, 401, 429]  # 3 free failures, then the username waits (not locked)
    throttled = answers["hana"][3]
    assert throttled.json()["type"].endswith("/too-many-attempts") and throttled.json()["scope"] == "operator-login"
    assert 590 <= int(throttled.headers["retry-after"]) <= 600
    assert "hana" not in throttled.text

    # From a new place even the right password waits (it cannot be told from the stranger's)...
    elsewhere = _sign_in(service, "hana", OPERATOR_PASSWORD, NEW_DESK)
    assert elsewhere.status_code == 429 and int(elsewhere.headers["retry-after"]) > 0
    # ... but from her usual desk only that desk's own failures count: none, so she is in at once.
    owner = _sign_in(service, "hana", OPERATOR_PASSWORD, OWNER_DESK)
    assert owner.status_code == 201, owner.text
    # Her desk's own mistakes do slow her desk down (3 free, then the wait), and nothing else.
    mistakes = [_sign_in(service, "hana", "typo-password-1", OWNER_DESK).status_code for _ in range(3)]
    assert mistakes == [401, 401, 401]
    assert _sign_in(service, "hana", OPERATOR_PASSWORD, OWNER_DESK).status_code == 429

    refusals = [e for e in _audit(service) if e["action"] == "login-refused"]
    assert any("throttled" in e["details"]["why"] for e in refusals)
    assert {e["actor"] for e in refusals} == {"operator:hana", "operator:?"}


def _service_cli(service, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("JPKI_")},
                   "JPKI_DATA_DIR": str(service.data_dir), "JPKI_DATABASE_URL": service.database_url,
                   **THROTTLED, "NO_COLOR": "1", "COLUMNS": "200", **env}  # the service's own settings
    result = subprocess.run([sys.executable, "-m", "jpki_service", "operator", *args], env=environment,
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def _ok(service, *args: str, **env: str) -> str:
    result = _service_cli(service, *args, **env)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def _accounts(service) -> dict[str, dict]:
    return {row["username"]: row for row in json.loads(_ok(service, "list", "--json"))["operators"]}


def _operator_cli(service, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "jpki-operator"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jpki_service.operators.client_cli"]
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("JPKI_")},
                   "HOME": str(home), "NO_COLOR": "1", "JPKI_LANG": "en", "JPKI_OPERATOR_SERVICE": service.url,
                   "JPKI_OPERATOR_SESSION": str(home / "session.json"), **env}
    return subprocess.run([*command, *args], env=environment, capture_output=True, text=True, timeout=120,
                          start_new_session=True)


@pytest.mark.e2e
def test_every_account_command_works_and_is_audited(service, tmp_path):
    add_operator(service, "kenji", "operator")
    token = _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK).json()["token"]
    with _bearer(service, token) as kenji:
        assert kenji.get(SESSION).json()["role"] == "operator"
        row = _accounts(service)["kenji"]
        assert row["state"] == "active" and row["role"] == "operator" and row["open_sessions"] == 1
        assert row["last_login_at"] is not None
        listed = _ok(service, "list")
        assert "USERNAME" in listed and re.search(r"kenji\s+operator\s+active\s+\S+\s+1\s+0", listed), listed

        # set-role: in force at the session's next request.
        changed = _ok(service, "set-role", "--username", "kenji", "--role", "supervisor")
        assert "kenji: operator -> supervisor" in changed
        assert kenji.get(SESSION).json()["role"] == "supervisor"
        assert _service_cli(service, "set-role", "--username", "kenji", "--role", "boss").returncode == 1

        # end-sessions: the token stops at once.
        assert "1 session(s) ended" in _ok(service, "end-sessions", "--username", "kenji")
        assert kenji.get(SESSION).status_code == 401

    # disable: the live session is refused at once, and signing in answers as for an unknown name.
    token = _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK).json()["token"]
    with _bearer(service, token) as kenji:
        assert "kenji disabled; 1 session(s) ended" in _ok(service, "disable", "--username", "kenji")
        refused = kenji.get(SESSION)
        assert refused.status_code == 401 and refused.json()["type"].endswith("/not-signed-in")
    disabled = _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK)
    _same_refusal(disabled, _sign_in(service, "nobody.at.all", OPERATOR_PASSWORD, NEW_DESK))
    assert disabled.status_code == 401
    assert _accounts(service)["kenji"]["state"] == "disabled"
    _ok(service, "enable", "--username", "kenji")
    assert _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK).status_code == 201

    # reset-password: sessions end; the new password gives a session that can only change it.
    old_token = _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK).json()["token"]
    temporary, final = "temporary-pass-2024", "kenjis-own-pass-77"
    assert "to be changed at the next sign-in" in _ok(service, "reset-password", "--username", "kenji",
                                                      JPKI_OPERATOR_PASSWORD=temporary)
    assert _accounts(service)["kenji"]["state"] == "must change password"
    with _bearer(service, old_token) as kenji:
        assert kenji.get(SESSION).status_code == 401
    assert _sign_in(service, "kenji", OPERATOR_PASSWORD, OWNER_DESK).status_code == 401
    home = tmp_path / "kenji-home"
    signed_in = _operator_cli(service, home, "login", JPKI_OPERATOR_USER="kenji", JPKI_OPERATOR_PASSWORD=temporary)
    assert signed_in.returncode == 0 and "jpki-operator password" in signed_in.stdout, signed_in.stderr
    blocked = _operator_cli(service, home, "find", "--code", "ABCD-EFGH-JKMN")
    assert blocked.returncode == 1 and "403 Password change required" in blocked.stderr, blocked.stderr
    assert _operator_cli(service, home, "whoami").returncode == 0  # who am I, and signing out, still work
    short = _operator_cli(service, home, "password", JPKI_OPERATOR_PASSWORD=temporary,
                          JPKI_OPERATOR_NEW_PASSWORD="short")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    changed = _operator_cli(service, home, "password", JPKI_OPERATOR_PASSWORD=temporary,
                            JPKI_OPERATOR_NEW_PASSWORD=final)
    assert changed.returncode == 0 and "password of kenji changed" in changed.stdout, changed.stderr
    after = _operator_cli(service, home, "find", "--code", "ABCD-EFGH-JKMN")
    assert "Password change required" not in after.stderr and "404" in after.stderr  # found nothing: allowed
    assert _accounts(service)["kenji"]["state"] == "active"
    assert _sign_in(service, "kenji", temporary, OWNER_DESK).status_code == 401
    assert _sign_in(service, "kenji", final, OWNER_DESK).status_code == 201

    # unlock: clears a throttle (here the username's, after failures from several addresses).
    for i in range(3):
        _sign_in(service, "kenji", "wrong-password-x", f"203.0.113.{i + 10}")
    assert _sign_in(service, "kenji", final, NEW_DESK).status_code == 429
    row = _accounts(service)["kenji"]
    assert row["failed_sign_ins"] == 3 and row["throttled_for_seconds"] > 0
    assert "3 failed sign-ins forgotten" in _ok(service, "unlock", "--username", "kenji")
    assert _sign_in(service, "kenji", final, NEW_DESK).status_code == 201
    assert _service_cli(service, "disable", "--username", "nobody.at.all").returncode == 1

    by_action = {}
    for entry in _audit(service):
        by_action.setdefault(entry["action"], entry)
    for action in ("operator-role-changed", "operator-sessions-ended", "operator-disabled", "operator-enabled",
                   "operator-password-reset", "login-throttle-cleared"):
        assert by_action[action]["actor"].startswith("administrator:"), action
        assert by_action[action]["details"]["username"] == "kenji"
    assert by_action["operator-role-changed"]["details"] == {"username": "kenji", "from": "operator",
                                                             "to": "supervisor"}
    assert by_action["password-changed"]["actor"] == "supervisor:kenji"  # set-role above


# -- the console (in-process, on both databases) -------------------------------------------------------
def test_a_disabled_accounts_console_session_is_refused_at_once(make_console):
    console: Console = make_console()
    client, csrf = console.signed_in("olga", Role.OPERATOR)
    assert client.get("/console/find").status_code == 200
    assert disable(console.ctx.store, console.ctx.keys.audit_chain, "administrator:test", "olga") == 1
    page = client.get("/console/find")
    assert page.status_code == 303 and page.headers["location"] == "/console/login"
    form = client.post("/console/find", data={"csrf_token": csrf, "by": "code", "code": "ABCD-EFGH-JKMN"})
    assert form.status_code == 401 and "Not signed in" in form.text


def test_a_reset_password_is_changed_at_the_next_console_sign_in(make_console):
    console: Console = make_console()
    client, _ = console.signed_in("olga", Role.OPERATOR)
    temporary, final = "temporary-pass-2024", "olgas-own-password-1"
    reset_password(console.ctx.store, console.ctx.keys.audit_chain, "administrator:test", "olga", temporary)
    assert client.get("/console/find").status_code == 303  # the old session ended
    signed = client.post("/console/login", data={"username": "olga", "password": temporary})
    assert signed.status_code == 303 and signed.headers["location"] == "/console/password"
    for path in ("/console/find", "/console/audit", "/console"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] in ("/console/password", "/console/find")
    form = client.get("/console/password")
    assert form.status_code == 200 and "Your password was reset" in form.text
    assert "Find a registration" not in form.text  # no way elsewhere from here
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    acted = client.post("/console/find", data={"csrf_token": csrf, "by": "code", "code": "ABCD-EFGH-JKMN"})
    assert acted.status_code == 403 and "Password change required" in acted.text
    wrong = client.post("/console/password", data={"csrf_token": csrf, "current_password": "not it at all",
                                                   "new_password": final, "new_password_again": final})
    assert wrong.status_code == 422 and "the current password is wrong" in wrong.text
    differ = client.post("/console/password", data={"csrf_token": csrf, "current_password": temporary,
                                                    "new_password": final, "new_password_again": final + "x"})
    assert differ.status_code == 422 and "differ" in differ.text
    forged = client.post("/console/password", data={"current_password": temporary, "new_password": final,
                                                    "new_password_again": final})
    assert forged.status_code == 403
    done = client.post("/console/password", data={"csrf_token": csrf, "current_password": temporary,
                                                  "new_password": final, "new_password_again": final})
    assert done.status_code == 303
    assert client.get("/console/find").status_code == 200
    assert console.client().post("/console/login", data={"username": "olga", "password": final}).status_code == 303


# -- the waits' arithmetic ---------------------------------------------------------------------------
def test_each_failure_beyond_the_free_ones_doubles_the_wait_up_to_the_cap():
    policy = throttle.Policy(free_failures=5, first_delay=2.0, max_delay=900.0, kept_seconds=86400)
    assert [policy.delay_after(n) for n in range(4, 12)] == [0, 2, 4, 8, 16, 32, 64, 128]
    assert policy.delay_after(15) == 900 and policy.delay_after(10**6) == 900
    assert throttle.retry_after(0.2) == 1 and throttle.retry_after(2.0) == 2


def test_the_counts_follow_the_injected_clock_and_are_forgotten(make_console, monkeypatch):
    now = [1_900_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    console: Console = make_console(operator_login_free_failures=2, operator_login_first_delay_seconds=10,
                                    operator_login_failures_kept_seconds=3600)
    add_account(console.ctx.store, "olga", Role.OPERATOR, PASSWORD)
    client = console.client()

    def attempt(password: str) -> int:
        return client.post("/console/login", data={"username": "olga", "password": password}).status_code

    assert [attempt("wrong password!"), attempt("wrong password!")] == [401, 401]
    assert attempt(PASSWORD) == 429  # waits 10 s after the 2nd failure
    now[0] += 10
    assert attempt("wrong password!") == 401  # 3rd failure: 20 s
    now[0] += 19
    answer = client.post("/console/login", data={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    now[0] += 3600  # an hour without failures: forgotten
    assert [attempt("wrong password!"), attempt("wrong password!")] == [401, 401]
    now[0] += 10
    assert attempt(PASSWORD) == 303
