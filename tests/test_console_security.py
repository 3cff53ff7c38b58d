"""The operator console's safety properties, in-process against the service's ASGI app on both
databases: the session cookie's flags, sign-in refusals and the throttle, pages without a session,
forged forms (no or wrong CSRF token, another site's Origin), roles, the confirmation step, the
security headers, and no personal data in URLs or pages beyond the masked name.

Tests that need a real registration use the real CA process (``ca_server``, one per backend for the
module); the others run without any CA at all. Each test's service is in-process on a database of its
own, so its accounts, its registrations and its audit trail are its own."""
from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from jpki_service.adapters.context import ServiceContext
from jpki_service.adapters.db import migrate
from jpki_service.audit import service as audit
from jpki_service.common.settings import ServiceSettings
from jpki_service.console.views import COOKIE
from jpki_service.entrypoints.app import create_app
from jpki_service.operators.roles import Role
from jpki_service.operators.service import add_operator
from jpki_service.registrations.transitions import load_by_case_reference
from tests.helpers import PERSON
from tests.service_helpers import PhoneForTests, make_card, register
from tests.shared_ca import _fresh_keys_per_test, own_service_database_url, shared_servers  # noqa: F401 (fixtures)

PASSWORD = "a console password"
SUSPEND = {"reason": "lost", "caller": "self", "ticket": "T-100", "channel": "phone"}
LIFT = {"reason": "owner found the phone; identity confirmed by callback", "ticket": "T-101", "caller": "self"}
FOREIGN = "http://attacker.example"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# One CA per backend for the module, for the tests that register a phone (make_console_beside_ca): it only certifies
# their phones. Each test's service database is its own, so registered()'s cards may all be for PERSON: the CA keeps
# its cards apart, and a service only ever sees its own test's registration.
ca_server = shared_servers("console-security")[0]
HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


@dataclass
class Console:
    app: Any
    ctx: ServiceContext
    clients: list[TestClient] = field(default_factory=list)

    def client(self) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        self.clients.append(client)
        return client

    def signed_in(self, username: str, role: Role) -> tuple[TestClient, str]:
        """A client signed in as a new account of ``role``, and the session's form token."""
        add_operator(self.ctx.store, username, role, PASSWORD)
        client = self.client()
        answer = client.post("/console/login", data={"username": username, "password": PASSWORD})
        assert answer.status_code == 303, answer.text
        return client, csrf_of(client.get(answer.headers["location"]).text)

    def state(self, case_reference: str) -> str:
        with self.ctx.store.sessions() as session:
            return load_by_case_reference(session, case_reference).state

    def audit_actions(self, case_reference: str | None = None) -> list[str]:
        with self.ctx.store.sessions() as session:
            return [e["action"] for e in audit.entries(session, limit=1000, case_reference=case_reference)]


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "no form token on the page"
    return found.group(1)


@contextlib.contextmanager
def _consoles(service_database_url: str, tmp_path: Path) -> Iterator:
    """What ``make_console`` yields, on ``service_database_url``; the consoles made are closed after."""
    made: list[Console] = []

    def make(ca=None, **overrides: Any) -> Console:
        settings = ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url,
                                   ca_url=ca.url if ca else "http://127.0.0.1:9", ca_token=ca.token if ca else None,
                                   **overrides)
        migrate(service_database_url)
        app = create_app(settings, background=False)
        console = Console(app, app.app.state.context)
        made.append(console)
        return console

    try:
        yield make
    finally:
        for console in made:
            for client in console.clients:
                client.close()
            console.ctx.ca.close()
            console.ctx.store.dispose()


@pytest.fixture
def make_console(service_database_url: str, tmp_path: Path) -> Iterator:
    """Builds the service app in-process on this test's database; with ``ca`` (a RunningCA) it can
    register phones, without one it has no CA at all (nothing here may call it)."""
    with _consoles(service_database_url, tmp_path) as make:
        yield make


@pytest.fixture
def make_console_beside_ca(own_service_database_url: str, tmp_path: Path) -> Iterator:
    """``make_console`` for a test on the module's CA (``ca_server``): this test's own database, on that CA's
    backend (conftest's ``service_database_url`` goes by ``database_url``, a parameter of its own, which would
    pair each backend's CA with both backends' databases)."""
    with _consoles(own_service_database_url, tmp_path) as make:
        yield make


def registered(console: Console, ca_server) -> str:
    """A phone registered through the service's API (active, both certificates issued at the real CA):
    its case reference, what the console names it by."""
    card = make_card(ca_server.store, ca_server.settings)
    phone = PhoneForTests()
    answer = register(console.client(), card, phone)
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "active"
    return phone.case_reference


def assert_secure_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


# -- signing in ----------------------------------------------------------------------------------
def test_login_sets_a_strict_session_cookie_and_lands_by_role(make_console):
    console = make_console()
    add_operator(console.ctx.store, "olga", Role.OPERATOR, PASSWORD)
    add_operator(console.ctx.store, "aki", Role.AUDITOR, PASSWORD)
    client = console.client()
    form = client.get("/console/login")
    assert form.status_code == 200 and 'name="username"' in form.text and "autofocus" in form.text
    assert_secure_headers(form)

    answer = client.post("/console/login", data={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/find"
    assert_secure_headers(answer)
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/console" and "secure" not in attributes
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40
    page = client.get("/console/find")
    assert page.status_code == 200 and "olga" in page.text and "operator" in page.text and "Sign out" in page.text
    assert token not in page.text  # the session token is only in the cookie; the page has the form token

    auditor = console.client().post("/console/login", data={"username": "aki", "password": PASSWORD})
    assert auditor.status_code == 303 and auditor.headers["location"] == "/console/audit"
    assert "login" in console.audit_actions()


def test_secure_cookie_when_the_setting_is_on(make_console):
    console = make_console(console_secure_cookies=True)
    add_operator(console.ctx.store, "olga", Role.OPERATOR, PASSWORD)
    answer = console.client().post("/console/login", data={"username": "olga", "password": PASSWORD})
    assert answer.status_code == 303
    assert "secure" in [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]


def test_wrong_passwords_slow_sign_in_down_and_never_lock_the_account(make_console, monkeypatch):
    from jpki_service.operators import throttle

    now = [1_900_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])  # the throttle's clock, no sleeping
    console = make_console()
    add_operator(console.ctx.store, "olga", Role.OPERATOR, PASSWORD)
    client = console.client()
    unknown = client.post("/console/login", data={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and "username or password wrong" in unknown.text
    for _ in range(4):  # with the unknown one: 5 failures from this address, the free ones
        wrong = client.post("/console/login", data={"username": "olga", "password": "not the password"})
        assert wrong.status_code == 401, wrong.text
        assert "Login refused" in wrong.text and "username or password wrong" in wrong.text
        assert "set-cookie" not in wrong.headers
        assert_secure_headers(wrong)
    waiting = client.post("/console/login", data={"username": "olga", "password": PASSWORD})
    assert waiting.status_code == 429 and waiting.headers["retry-after"] == "2", waiting.text
    assert "Too many attempts" in waiting.text and "try again in 2 s" in waiting.text
    assert "jpki-service operator unlock" not in waiting.text and "set-cookie" not in waiting.headers
    assert_secure_headers(waiting)
    now[0] += 2  # the wait is over: the right password gets in (no lock to lift)
    assert client.post("/console/login", data={"username": "olga", "password": PASSWORD}).status_code == 303
    empty = client.post("/console/login", data={"username": "", "password": ""})
    assert empty.status_code == 422 and "Enter your username and password" in empty.text


def test_login_from_another_sites_page_is_refused(make_console):
    console = make_console()
    add_operator(console.ctx.store, "olga", Role.OPERATOR, PASSWORD)
    answer = console.client().post("/console/login", data={"username": "olga", "password": PASSWORD},
                                   headers={"Origin": FOREIGN})
    assert answer.status_code == 403 and "another site" in answer.text and "set-cookie" not in answer.headers
    assert "login" not in console.audit_actions()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"},
                    {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):
        refused = console.client().post("/console/login", data={"username": "olga", "password": PASSWORD},
                                        headers=headers)
        assert refused.status_code == 403 and "set-cookie" not in refused.headers, headers
    assert "login" not in console.audit_actions()
    # Its own page: Origin is this service, or "null" (no-referrer) with Sec-Fetch-Site: same-origin.
    for headers in ({"Origin": "http://testserver"}, {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
                    {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}):
        same = console.client().post("/console/login", data={"username": "olga", "password": PASSWORD},
                                     headers=headers)
        assert same.status_code == 303, headers


# -- without a session ---------------------------------------------------------------------------
@pytest.mark.parametrize("cookie", [None, "not-a-session"])
def test_without_a_session_pages_lead_to_login_and_forms_are_refused(make_console, cookie):
    console = make_console()
    client = console.client()
    for path in ("/console/find", "/console/audit", "/console/registrations/" + "0" * 32, "/console"):
        if cookie:
            client.cookies.set(COOKIE, cookie, domain="testserver.local", path="/console")
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path
        assert_secure_headers(answer)
        if cookie:
            assert f'{COOKIE}=""' in answer.headers["set-cookie"]  # the dead cookie is cleared
    for path, data in (("/console/find", {"name": "x"}), ("/console/registrations/" + "0" * 32 + "/suspend", SUSPEND)):
        answer = client.post(path, data=data)
        assert answer.status_code == 401 and "Not signed in" in answer.text, path
        assert_secure_headers(answer)


def test_sign_out_ends_the_session(make_console):
    console = make_console()
    client, csrf = console.signed_in("olga", Role.OPERATOR)
    stolen = client.cookies.get(COOKIE)
    copy = console.client()
    copy.cookies.set(COOKIE, stolen, domain="testserver.local", path="/console")
    assert copy.get("/console/find").status_code == 200  # the cookie alone is the session...
    refused = client.post("/console/logout", data={})
    assert refused.status_code == 403  # a forged sign-out does nothing either
    assert client.get("/console/find").status_code == 200
    answer = client.post("/console/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login?signed_out=1"
    assert f'{COOKIE}=""' in answer.headers["set-cookie"]
    assert copy.get("/console/find").headers["location"] == "/console/login"  # ...until signed out


# -- roles ---------------------------------------------------------------------------------------
def test_each_role_sees_only_its_pages(make_console):
    console = make_console()
    auditor, auditor_csrf = console.signed_in("aki", Role.AUDITOR)
    for answer in (auditor.get("/console/find"),
                   auditor.post("/console/find", data={"csrf_token": auditor_csrf, "code": "ABCD-EFGH-JKMN"})):
        assert answer.status_code == 403 and "Not allowed for this role" in answer.text
        assert_secure_headers(answer)
    assert "find" not in console.audit_actions() and console.audit_actions().count("refused") == 2
    trail = auditor.get("/console/audit")
    assert trail.status_code == 200 and "Audit trail" in trail.text and "login" in trail.text
    assert "Find a registration" not in trail.text  # not in the auditor's navigation

    operator, _ = console.signed_in("olga", Role.OPERATOR)
    refused = operator.get("/console/audit")
    assert refused.status_code == 403 and "Not allowed for this role" in refused.text


# -- finding -------------------------------------------------------------------------------------
def test_find_is_a_post_and_says_clearly_when_nothing_matches(make_console):
    console = make_console()
    client, csrf = console.signed_in("olga", Role.OPERATOR)
    form = client.get("/console/find").text
    forms = re.findall(r"<form[^>]*>", form)
    assert all('method="post"' in f for f in forms if 'action="/console/find"' in f)
    assert sum('action="/console/find"' in f for f in forms) == 2
    assert 'for="name"' in form and 'for="birth"' in form and 'for="address"' in form and 'for="code"' in form

    answer = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子",
                                                "birth": "1985-05-06", "address": "大阪府大阪市北区1-1"})
    assert answer.status_code == 404
    assert "No registration matches" in answer.text and "check the spelling with the caller" in answer.text
    assert str(answer.url) == "http://testserver/console/find" and "%E4%BD%90" not in str(answer.url)
    assert_secure_headers(answer)

    era_date = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子",
                                                  "birth": "昭和60年5月6日", "address": "大阪府大阪市北区一丁目一番"})
    assert era_date.status_code == 404 and "No registration matches" in era_date.text  # read, and looked up
    bad_date = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子",
                                                  "birth": "1985-13-45", "address": "大阪府"})
    assert bad_date.status_code == 422 and "birth is not a real date: there is no month 13" in bad_date.text
    no_date = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子",
                                                 "birth": "昨日", "address": "大阪府"})
    assert no_date.status_code == 422 and "birth must be a date as YYYY-MM-DD or as the card prints it" in no_date.text
    partial = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子"})
    assert partial.status_code == 422 and "give name, birth and address (all three), or code" in partial.text
    bad_code = client.post("/console/find", data={"csrf_token": csrf, "by": "code", "code": "nope"})
    assert bad_code.status_code == 422 and "suspension code" in bad_code.text
    forged = client.post("/console/find", data={"by": "code", "code": "ABCD-EFGH-JKMN"})
    assert forged.status_code == 403
    assert console.audit_actions().count("find") == 2  # the look-ups that ran (bad input is refused before)


# -- acting: forged forms, confirmation, roles ---------------------------------------------------
def test_find_shows_the_masked_name_only_and_forged_forms_change_nothing(make_console_beside_ca, ca_server):
    console = make_console_beside_ca(ca_server)
    case = registered(console, ca_server)
    client, csrf = console.signed_in("olga", Role.OPERATOR)
    answer = client.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": " 山田　太郎 ",
                                                "birth": "１９９０－０１－０２",
                                                "address": "東京都千代田区千代田１－１"})
    assert answer.status_code == 200, answer.text
    assert "山* 太*" in answer.text and f"/console/registrations/{case}" in answer.text
    for personal in (PERSON["name"], "山田", "太郎", PERSON["address"], "千代田区", "1990-01-02", "１９９０"):
        assert personal not in answer.text, personal
    page = client.get(f"/console/registrations/{case}")
    assert page.status_code == 200 and "山* 太*" in page.text and "山田" not in page.text
    assert "Test Phone 1" in page.text

    url = f"/console/registrations/{case}/suspend"
    for data, headers in (({**SUSPEND, "confirmed": "yes"}, {}),
                          ({**SUSPEND, "confirmed": "yes", "csrf_token": "wrong"}, {}),
                          ({**SUSPEND, "confirmed": "yes", "csrf_token": csrf + "x"}, {}),
                          ({**SUSPEND, "confirmed": "yes", "csrf_token": csrf}, {"Origin": FOREIGN})):
        answer = client.post(url, data=data, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "Form token missing or wrong" in answer.text
        assert ("form token missing or wrong; reload the page" in answer.text) or ("another site" in answer.text)
        assert_secure_headers(answer)
    assert console.state(case) == "active"
    assert "suspend" not in console.audit_actions(case)
    # Another operator's token is not this session's.
    _, other_csrf = console.signed_in("oscar", Role.OPERATOR)
    assert client.post(url, data={**SUSPEND, "confirmed": "yes", "csrf_token": other_csrf}).status_code == 403
    assert console.state(case) == "active"


def test_acts_are_confirmed_first_and_roles_hold(make_console_beside_ca, ca_server):
    console = make_console_beside_ca(ca_server)
    case = registered(console, ca_server)
    page_url = f"/console/registrations/{case}"
    operator, csrf = console.signed_in("olga", Role.OPERATOR)

    page = operator.get(page_url).text
    assert 'id="suspend-form"' in page and 'id="lift-form"' not in page and 'id="revoke-form"' not in page
    # Invalid input comes back next to the form, and nothing happens.
    proxy = operator.post(f"{page_url}/suspend", data={**SUSPEND, "caller": "proxy", "csrf_token": csrf})
    assert proxy.status_code == 422 and "a proxy caller needs relationship" in proxy.text
    ticket = operator.post(f"{page_url}/suspend", data={**SUSPEND, "ticket": "has space", "csrf_token": csrf})
    assert ticket.status_code == 422 and "Ticket: only letters, digits" in ticket.text

    # First POST: the confirmation page only.
    confirm = operator.post(f"{page_url}/suspend", data={**SUSPEND, "csrf_token": csrf})
    assert confirm.status_code == 200, confirm.text
    assert "You are about to <strong>SUSPEND</strong> both certificates of registration" in confirm.text
    assert "山* 太*" in confirm.text and "The owner will be notified" in confirm.text
    assert 'name="confirmed" value="yes"' in confirm.text and "Confirm suspension" in confirm.text
    assert f'href="{page_url}"' in confirm.text  # Cancel goes back
    assert console.state(case) == "active" and "suspend" not in console.audit_actions(case)

    # Second POST, exactly the confirmation page's fields: done.
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.text))
    assert fields == {**SUSPEND, "csrf_token": csrf, "confirmed": "yes"}
    posted = operator.post(f"{page_url}/suspend", data=fields)
    # Post/Redirect/Get: the result is a page of its own, which a reload or a bookmark shows again.
    assert posted.status_code == 303 and posted.headers["location"] == f"{page_url}/done/suspend", posted.text
    done = operator.get(posted.headers["location"])
    assert done.status_code == 200 and "Suspended" in done.text and 'id="state">suspended<' in done.text
    reloaded = operator.get(posted.headers["location"])
    assert reloaded.status_code == 200 and 'id="state">suspended<' in reloaded.text
    opened = operator.get(f"{page_url}/suspend")  # the form's address opened as a page: the registration
    assert opened.status_code == 303 and opened.headers["location"] == page_url
    assert console.state(case) == "suspended"
    assert console.audit_actions(case).count("suspend") == 1
    again = operator.post(f"{page_url}/suspend", data=fields)
    assert again.status_code == 409 and "Not possible in this state" in again.text

    history = operator.get(page_url).text
    assert "suspended" in history and "olga" in history and "lost; caller self; ticket T-100" in history
    assert 'id="lift-form"' not in history and "needs a supervisor" in history
    # An operator forcing a lift is refused, confirmed or not, and nothing changes.
    for extra in ({}, {"confirmed": "yes"}):
        forced = operator.post(f"{page_url}/lift", data={**LIFT, **extra, "csrf_token": csrf})
        assert forced.status_code == 403 and "Not allowed for this role" in forced.text
        assert "an operator may not lift a suspension" in forced.text
    forced = operator.post(f"{page_url}/revoke", data={"reason": "keyCompromise", "ticket": "T-9", "caller": "self",
                                                      "confirmed": "yes", "csrf_token": csrf})
    assert forced.status_code == 403
    assert console.state(case) == "suspended"
    assert not {"lift", "revoke"} & set(console.audit_actions(case))
    assert console.audit_actions(case).count("refused") == 3  # each attempt is on record

    supervisor, supervisor_csrf = console.signed_in("sachiko", Role.SUPERVISOR)
    page = supervisor.get(page_url).text
    assert 'id="lift-form"' in page and 'id="revoke-form"' in page and 'id="suspend-form"' not in page
    assert '<option value="keyCompromise" selected>' in page
    confirm = supervisor.post(f"{page_url}/lift", data={**LIFT, "csrf_token": supervisor_csrf})
    assert confirm.status_code == 200 and "LIFT THE SUSPENSION OF" in confirm.text and "Confirm lifting" in confirm.text
    assert console.state(case) == "suspended"
    # The two-person rule (on by default): the lift waits for a second supervisor.
    asked = supervisor.post(f"{page_url}/lift", data={**LIFT, "csrf_token": supervisor_csrf, "confirmed": "yes"})
    assert asked.status_code == 303 and asked.headers["location"] == f"{page_url}/done/lift"
    asked = supervisor.get(asked.headers["location"])
    assert asked.status_code == 200 and "Waiting for a second supervisor" in asked.text
    assert 'id="state">suspended<' in asked.text and "not done yet" in asked.text
    assert console.state(case) == "suspended" and console.audit_actions(case).count("approval-requested") == 1
    [approval_id] = re.findall(r"approval <code>([0-9a-f]{16})</code>", asked.text)
    waiting = supervisor.get(page_url).text
    assert "Waiting for a second supervisor" in waiting and "You asked for it" in waiting
    assert f"/approvals/{approval_id}/approve" not in waiting  # never offered to the one who asked
    own = supervisor.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": supervisor_csrf})
    assert own.status_code == 403 and "second supervisor must approve" in own.text
    assert console.state(case) == "suspended"
    forged = supervisor.post(f"/console/approvals/{approval_id}/approve", data={})
    assert forged.status_code == 403 and console.state(case) == "suspended"

    second, second_csrf = console.signed_in("sora", Role.SUPERVISOR)
    listed = second.get("/console/approvals")
    assert listed.status_code == 200 and f"/approvals/{approval_id}/approve" in listed.text and "sachiko" in listed.text
    assert operator.get("/console/approvals").status_code == 403  # an operator may not approve
    lifted = second.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": second_csrf})
    assert lifted.status_code == 303 and lifted.headers["location"] == f"{page_url}/done/approved-lift"
    lifted = second.get(lifted.headers["location"])
    assert lifted.status_code == 200 and 'id="state">active<' in lifted.text, lifted.text
    assert "Approved: the lift is done" in lifted.text
    assert console.state(case) == "active"
    assert console.audit_actions(case).count("lift") == 1
    assert console.audit_actions(case).count("approval-granted") == 1
    again = second.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": second_csrf})
    assert again.status_code == 409 and "already approved" in again.text


def test_bad_requests_are_pages_never_500(make_console):
    console = make_console()
    client, csrf = console.signed_in("sachiko", Role.SUPERVISOR)
    for path in ("/console/registrations/nope", "/console/registrations/" + "a" * 32):  # not a case reference
        answer = client.get(path)
        assert answer.status_code == 422 and "<h1>" in answer.text and "case reference" in answer.text, path
        assert_secure_headers(answer)
    unknown = client.get("/console/registrations/ABCD-EFGH-JKMN")
    assert unknown.status_code == 404 and "<h1>" in unknown.text and "Unknown registration" in unknown.text
    unknown_action = client.post("/console/registrations/ABCD-EFGH-JKMN/explode", data={"csrf_token": csrf})
    assert unknown_action.status_code == 404
    gone = client.post("/console/registrations/ABCD-EFGH-JKMN/revoke",
                       data={"reason": "keyCompromise", "ticket": "T-1", "caller": "self", "csrf_token": csrf})
    assert gone.status_code == 404 and "Unknown registration" in gone.text
    auditor, _ = console.signed_in("aki", Role.AUDITOR)
    for query in ("after_seq=abc", "after_seq=-1", "case_reference=../../etc"):
        answer = auditor.get(f"/console/audit?{query}")
        assert answer.status_code == 422 and "<h1>" in answer.text, query
    stylesheet = client.get("/console/static/console.css")
    assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")
    assert ":focus" in stylesheet.text


def test_audit_pages_towards_older_entries(make_console):
    console = make_console()
    auditor, _ = console.signed_in("aki", Role.AUDITOR)
    with console.ctx.store.transaction() as session:
        for number in range(60):
            audit.record(session, console.ctx.keys.audit_chain, "system", "test-entry", None, {"n": number})
    first = auditor.get("/console/audit")
    seqs = [int(s) for s in re.findall(r'<tr class="action-[^"]+"><td data-label="[^"]+">(\d+)</td>', first.text)]
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True)
    older = re.search(r'href="/console/audit\?after_seq=(\d+)"', first.text)
    assert older and int(older.group(1)) == seqs[-1]
    second = auditor.get(f"/console/audit?after_seq={older.group(1)}")
    rest = [int(s) for s in re.findall(r'<tr class="action-[^"]+"><td data-label="[^"]+">(\d+)</td>', second.text)]
    assert rest and max(rest) < seqs[-1] and min(rest) == 1
    assert "Newest entries" in second.text and "Older entries" not in second.text
