"""The operator console in a real browser: headless Chromium (Playwright) against the real
service process, which talks to the real CA process, on both databases.

An operator signs in, finds a registration from what a caller says (typed with full-width
characters and stray spaces), suspends it through the confirmation page and sees it in the
history; forcing a lift is refused; a supervisor lifts it, confirmed; an auditor reads the trail.
A second test does sign-in, find and suspend with the keyboard alone.

Chromium is Debian's (``/usr/bin/chromium``; Playwright downloads no browser here). Where it is
missing these tests are skipped, except on CI (``CI=true``), where that fails the run.
``JPKI_SCREENSHOTS=1`` saves the pages shown in docs/console.md to docs/images/console-*.png.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import missing_on_this_machine
from tests.service_helpers import OPERATOR_PASSWORD, PhoneForTests, add_operator, make_card, register
from tests.test_service_flows import ocsp_status

pytestmark = pytest.mark.e2e

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 860}
# How the caller says it on the phone: full-width spaces, digits and dash, stray spaces.
CALLER_SAYS = {"name": "　山田　　太郎 ", "birth": "１９９０－０１－０２", "address": " 東京都千代田区千代田１－１　"}


def _browser_problem() -> str | None:
    if shutil.which("chromium") is None:
        return "Chromium is not installed (Debian: apt-get install chromium); the console's browser tests need it"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser():
    problem = _browser_problem()
    if problem:
        missing_on_this_machine(problem, "the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, service_server):
    """A fresh browser profile (its own cookies) on the running service, per signed-in person."""
    contexts = []

    def make(locale: str = "en-GB", viewport: dict | None = None):
        context = browser.new_context(base_url=service_server.url, viewport=viewport or VIEWPORT, locale=locale,
                                      timezone_id="UTC")
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shoot(page, name: str, service_server) -> None:
    """docs/images/console-NAME.png, only when asked (JPKI_SCREENSHOTS=1) and once (the SQLite run)."""
    if os.environ.get("JPKI_SCREENSHOTS") == "1" and service_server.database_url.startswith("sqlite"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


def registered(ca_server, service_server) -> dict:
    card = make_card(ca_server.store, ca_server.settings)
    with service_server.client() as client:
        answer = register(client, card, PhoneForTests())
    assert answer.status_code == 201, answer.text
    return answer.json()


def state_of(service_server, document: dict) -> str:
    """The state the owner's phone reads (with the owner token from the answer to registering)."""
    with service_server.client() as client:
        answer = client.get(f"/api/v1/registrations/{document['registration_id']}",
                            headers={"Authorization": f"Bearer {document['owner_token']}"})
        return answer.json()["state"]


def sign_in(page, username: str) -> None:
    page.goto("/console")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def history_rows(page) -> list[str]:
    return [" | ".join(cell.strip() for cell in row.locator("td").all_inner_texts())
            for row in page.locator("table.history tbody tr").all()]


def focused(page) -> dict:
    """What has the keyboard focus (read only; the page itself runs no script)."""
    return page.evaluate("""() => { const e = document.activeElement;
        return {tag: e.tagName.toLowerCase(), id: e.id, name: e.getAttribute('name') || '',
                text: (e.innerText || e.value || '').trim()}; }""")


def autofocused(page) -> dict:
    """What has the focus once the browser has applied the page's autofocus. Chromium does that at a
    rendering update, which on a busy machine can come after the load event that ``wait_for_url`` waits for."""
    page.wait_for_function("document.activeElement !== null && document.activeElement !== document.body")
    return focused(page)


def tab_to(page, matches, limit: int = 25) -> dict:
    """Press Tab until the focus is on what ``matches``; fail if it never gets there."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if matches(now):
            return now
        seen.append(now)
    raise AssertionError(f"never reached by Tab; went through {seen}")


def test_operator_suspends_supervisor_lifts_auditor_reads(ca_server, service_server, open_page):
    document = registered(ca_server, service_server)
    case = document["case_reference"]  # what the console names it by
    pems = [c["certificate_pem"] for c in document["certificates"] if c["current"]]
    for username, role in (("olivia", "operator"), ("sachiko", "supervisor"), ("aiko", "auditor")):
        add_operator(service_server, username, role)

    # -- the operator: sign in, find, open, suspend (confirmed) --------------------------------
    page = open_page()
    page.goto("/console")
    assert page.url.endswith("/console/login")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.get_by_label("Username").fill("olivia")
    shoot(page, "login", service_server)
    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Sign in").click()
    assert "username or password wrong" in page.locator("[role=alert]").inner_text()
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/find")
    assert "olivia" in page.locator(".who").inner_text() and "operator" in page.locator(".who").inner_text()
    assert page.get_by_role("button", name="Sign out").is_visible()

    page.get_by_label("Name, as on the card").fill(CALLER_SAYS["name"])
    page.get_by_label("Date of birth").fill(CALLER_SAYS["birth"])
    page.get_by_label("Address, as on the card").fill(CALLER_SAYS["address"])
    page.get_by_role("button", name="Find by card items").click()
    page.get_by_role("heading", name="1 registration found").wait_for()
    assert page.url.endswith("/console/find")  # a POST: nothing the caller said is in the URL
    results = page.locator(".results table").inner_text()
    assert "山* 太*" in results and "Test Phone 1" in results and "active" in results
    assert "山田" not in page.content() and "千代田" not in page.locator(".results").inner_text()
    shoot(page, "find-results", service_server)

    page.locator(".results a").first.click()
    page.wait_for_url(f"**/console/registrations/{case}")
    assert page.locator("#state").inner_text() == "active"
    assert page.locator("#suspend-form").count() == 1
    assert page.locator("#lift-form").count() == 0 and page.locator("#revoke-form").count() == 0
    shoot(page, "registration", service_server)

    page.get_by_label("Reason").select_option("stolen")
    page.get_by_label("someone on the owner's behalf").check()
    page.get_by_label("Relationship to the owner").fill("spouse")
    page.get_by_label("Ticket").fill("T-3001")
    page.get_by_role("button", name="Suspend…").click()
    page.get_by_role("heading", name="Please confirm").wait_for()
    warning = page.locator(".confirm").inner_text()
    assert "You are about to SUSPEND both certificates of registration" in warning
    assert case in warning and "山* 太*" in warning and "The owner will be notified." in warning
    assert page.get_by_role("link", name="Cancel").get_attribute("href") == f"/console/registrations/{case}"
    assert state_of(service_server, document) == "active"  # not yet
    shoot(page, "suspend-confirm", service_server)
    page.get_by_role("button", name="Confirm suspension").click()
    page.get_by_role("heading", name="Suspended").wait_for()
    assert page.locator("#state").inner_text() == "suspended"
    assert state_of(service_server, document) == "suspended"
    assert all(ocsp_status(ca_server.url, pem) == "revoked:certificateHold" for pem in pems)

    page.get_by_role("link", name="Back to the registration").click()
    newest = history_rows(page)[0]
    assert "suspended" in newest and "olivia" in newest and "stolen; caller proxy (spouse); ticket T-3001" in newest
    assert page.locator("#lift-form").count() == 0 and "needs a supervisor" in page.content()

    # Forcing a lift anyway: a real form POST from this page, with the session's own form token.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    page.evaluate("""([action, fields]) => {
        const form = document.createElement('form');
        form.method = 'post'; form.action = action;
        for (const [name, value] of Object.entries(fields)) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit(); }""",
                  [f"/console/registrations/{case}/lift",
                   {"csrf_token": token, "reason": "forced", "ticket": "T-666", "confirmed": "yes"}])
    page.get_by_role("heading", name="Not allowed for this role").wait_for()
    assert "may not lift a suspension" in page.locator("[role=alert]").inner_text()
    assert state_of(service_server, document) == "suspended"

    # -- the supervisor: find by the suspension code, lift (confirmed) -------------------------
    supervisor = open_page()
    sign_in(supervisor, "sachiko")
    supervisor.wait_for_url("**/console/find")
    supervisor.get_by_label("Suspension code").fill(document["suspension_code"].lower().replace("-", " "))
    supervisor.get_by_role("button", name="Find by code").click()
    supervisor.locator(".results a").first.click()
    supervisor.wait_for_url(f"**/console/registrations/{case}")
    assert supervisor.locator("#lift-form").count() == 1 and supervisor.locator("#revoke-form").count() == 1
    assert supervisor.locator("#suspend-form").count() == 0
    assert supervisor.get_by_label("Revocation reason").input_value() == "keyCompromise"
    shoot(supervisor, "supervisor", service_server)
    supervisor.get_by_label("Why it is lifted").fill("owner found the phone; identity confirmed by callback")
    supervisor.locator("#lift-ticket").fill("T-3002")
    supervisor.get_by_role("button", name="Lift suspension…").click()
    assert "You are about to LIFT THE SUSPENSION OF registration" in supervisor.locator(".confirm").inner_text()
    assert state_of(service_server, document) == "suspended"
    supervisor.get_by_role("button", name="Confirm lifting").click()
    supervisor.get_by_role("heading", name="Suspension lifted").wait_for()
    assert supervisor.locator("#state").inner_text() == "active"
    assert state_of(service_server, document) == "active"
    supervisor.get_by_role("link", name="Back to the registration").click()
    newest = history_rows(supervisor)[0]
    assert "suspension lifted by a supervisor" in newest and "sachiko" in newest and "ticket T-3002" in newest
    assert " JST" in newest  # Japan time, the zone named

    # -- the auditor: lands on the trail, sees both acts and the refused login ------------------
    auditor = open_page()
    sign_in(auditor, "aiko")
    auditor.wait_for_url("**/console/audit")
    trail = auditor.locator("table.audit").inner_text()
    assert "operator:olivia" in trail and "supervisor:sachiko" in trail
    actions = auditor.locator("table.audit tbody tr td:nth-child(4)").all_inner_texts()
    assert {"suspend", "lift", "find", "login", "login-refused"} <= set(actions)
    assert "山田" not in auditor.content()
    shoot(auditor, "audit", service_server)
    assert auditor.get_by_role("link", name="Find a registration").count() == 0

    # Signing out ends the session.
    page.goto("/console/find")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login?signed_out=1")
    assert "You have signed out." in page.content()
    page.goto("/console/find")
    assert page.url.endswith("/console/login")


def test_keyboard_only_sign_in_find_and_suspend(ca_server, service_server, open_page):
    document = registered(ca_server, service_server)
    case = document["case_reference"]  # what the console names it by
    add_operator(service_server, "kenta", "operator")
    page = open_page()
    page.goto("/console/login")
    keys = page.keyboard

    # The first field has the focus; the skip link is the first stop before it, visible when focused.
    assert autofocused(page)["id"] == "username"
    keys.press("Shift+Tab")
    assert focused(page)["text"] == "Skip to main content"
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["y"] >= 0
    keys.press("Enter")
    assert page.url.endswith("#main")
    keys.press("Tab")
    assert focused(page)["id"] == "username"

    keys.type("kenta")
    keys.press("Tab")
    assert focused(page)["id"] == "password"
    keys.type(OPERATOR_PASSWORD)
    keys.press("Tab")
    assert focused(page) == {"tag": "button", "id": "", "name": "", "text": "Sign in"}
    keys.press("Enter")
    page.wait_for_url("**/console/find")

    assert autofocused(page)["id"] == "name"
    keys.type(CALLER_SAYS["name"])
    keys.press("Tab")
    assert focused(page)["id"] == "birth"
    keys.type(CALLER_SAYS["birth"])
    keys.press("Tab")
    assert focused(page)["id"] == "address"
    keys.type(CALLER_SAYS["address"])
    keys.press("Tab")
    assert focused(page)["text"] == "Find by card items"
    keys.press("Enter")
    page.get_by_role("heading", name="1 registration found").wait_for()

    # The first result has the focus: Enter opens it.
    assert autofocused(page)["tag"] == "a" and "山* 太*" in focused(page)["text"]
    keys.press("Enter")
    page.wait_for_url(f"**/console/registrations/{case}")

    # The suspend form's first field has the focus; keep reason and caller, give the ticket.
    assert autofocused(page)["id"] == "suspend-reason"
    tab_to(page, lambda f: f["id"] == "suspend-ticket")
    keys.type("T-4001")
    tab_to(page, lambda f: f["text"] == "Suspend…")
    keys.press("Enter")
    page.get_by_role("heading", name="Please confirm").wait_for()
    # Nothing is focused for you on the confirmation page: Enter alone must not confirm.
    assert focused(page)["tag"] == "body"
    keys.press("Enter")
    assert state_of(service_server, document) == "active"
    tab_to(page, lambda f: f["text"] == "Confirm suspension")
    keys.press("Enter")
    page.get_by_role("heading", name="Suspended").wait_for()
    assert state_of(service_server, document) == "suspended"
    assert focused(page)["text"] == "Back to the registration"
    keys.press("Enter")
    page.wait_for_url(f"**/console/registrations/{case}")
    assert "lost; caller self; ticket T-4001" in history_rows(page)[0]

    # The focus is always visible: a 3px outline.
    tab_to(page, lambda f: f["text"] == "Sign out")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineWidth")
    assert outline == "3px"


# How a caller in Japan says the same items: the birth date in the era the card prints, the address spoken.
CALLER_SAYS_IN_JAPANESE = {"name": "山田 太郎", "birth": "平成２年１月２日",
                           "address": "東京都千代田区千代田一丁目１番"}
PHONE = {"width": 390, "height": 844}


def fits_the_screen(page) -> bool:
    """Nothing on the page is wider than the viewport (no sideways scrolling)."""
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_japanese_console_on_a_phone_sized_screen_finds_by_era_date_and_spoken_address(
        ca_server, service_server, open_page):
    """Japanese first: a browser asking for Japanese gets every page in Japanese, times in Japan time;
    the caller's era date and spoken address find the card's registration; the result page reloads;
    with the CA down the console says the suspension waits for the CA, and nothing is wider than 390 px."""
    document = registered(ca_server, service_server)
    case = document["case_reference"]
    add_operator(service_server, "hanako", "operator")
    page = open_page(locale="ja-JP", viewport=PHONE)
    page.goto("/console")
    assert page.get_by_role("heading", name="サインイン").is_visible()
    assert page.locator("html").get_attribute("lang") == "ja"
    page.get_by_label("ユーザー名").fill("hanako")
    page.get_by_label("パスワード").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="サインイン").click()
    page.wait_for_url("**/console/find")
    assert fits_the_screen(page)

    # An impossible era date is refused with the reason, the focus on the date.
    page.get_by_label("氏名（カードの記載どおり）").fill(CALLER_SAYS_IN_JAPANESE["name"])
    page.get_by_label("生年月日").fill("平成32年1月2日")
    page.get_by_label("住所（カードの記載どおり）").fill(CALLER_SAYS_IN_JAPANESE["address"])
    page.get_by_role("button", name="カードの記載事項で検索").first.click()
    page.locator("[role=alert]").wait_for()
    assert "平成" in page.locator("[role=alert]").inner_text()
    assert autofocused(page)["id"] == "birth"

    page.get_by_label("生年月日").fill(CALLER_SAYS_IN_JAPANESE["birth"])
    page.get_by_role("button", name="カードの記載事項で検索").first.click()
    page.get_by_role("heading", name="1件の登録が見つかりました").wait_for()
    results = page.locator(".results table").inner_text()
    assert "山* 太*" in results and "有効" in results and "日本時間" in results
    assert fits_the_screen(page)
    shoot(page, "ja-find-results", service_server)

    # The CA goes down: the suspension is recorded and waits for the CA, and the console says so.
    page.locator(".results a").first.click()
    page.wait_for_url(f"**/console/registrations/{case}")
    assert page.locator("#state").inner_text() == "有効"
    assert fits_the_screen(page)
    ca_server.stop()
    try:
        page.get_by_label("受付票番号").fill("T-5001")
        page.get_by_role("button", name="一時利用停止…").click()
        page.get_by_role("heading", name="確認してください").wait_for()
        assert "両方の電子証明書" in page.locator(".confirm").inner_text()
        page.get_by_role("button", name="一時利用停止を確定").click()
        page.get_by_role("heading", name="一時利用停止を依頼しました（認証局の反映待ち）").wait_for()
        result_url = page.url
        assert result_url.endswith(f"/console/registrations/{case}/done/suspend")
        assert page.locator("#state").inner_text() == "一時利用停止を依頼済み（認証局の反映待ち）"
        assert "認証局の反映待ち" in page.locator(".certificate-status").first.inner_text()
        assert fits_the_screen(page)
        shoot(page, "ja-waiting-for-the-ca", service_server)
        page.reload()  # a GET: no form is sent again
        page.get_by_role("heading", name="一時利用停止を依頼しました（認証局の反映待ち）").wait_for()
    finally:
        ca_server.start()
    # Once the CA has it, the same page says it is done.
    deadline = time.monotonic() + 60
    while page.locator("#state").inner_text() != "一時利用停止中" and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    assert page.url == result_url and page.locator("#state").inner_text() == "一時利用停止中"
    page.get_by_role("heading", name="一時利用停止しました").wait_for()
    assert ocsp_status(ca_server.url, document["certificates"][0]["certificate_pem"]) == "revoked:certificateHold"
    page.get_by_role("link", name="登録に戻る").click()
    newest = history_rows(page)[0]
    assert "一時利用停止" in newest and "hanako" in newest and "日本時間" in newest
    assert fits_the_screen(page)
    shoot(page, "ja-registration", service_server)
