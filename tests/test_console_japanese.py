"""The console in Japanese (issue 14): with the service's language set to Japanese (``JPKI_LANG=ja``,
the default) and a browser that names no language, every page an operator, a supervisor and an
auditor go through reads in Japanese: no English sentence is left, refusals included, and times are
Japan time. A browser asking for English (``Accept-Language``) gets the same pages in English.

"No English sentence" is judged on each page's visible text, outside ``<code>`` (case references,
commands) and the values the test itself put in (usernames, ticket, phone model): two English words
in a row is a string that escaped translation.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from jpki_service.operators.roles import Role
from tests.test_console_security import LIFT, SUSPEND, Console, csrf_of, make_console, registered  # noqa: F401

pytestmark = pytest.mark.e2e
ENGLISH_RUN = re.compile(r"[A-Za-z]{2,}(?:[ ,'’]+[A-Za-z]{2,})+")
# What the test typed or the registration carries, the history's recorded notes (kept as they were
# written, in the audit's words), and the product's own names.
DATA = ("Test Phone 1", "owner found the phone; identity confirmed by callback", "lost; caller self; ticket T-100",
        "T-100", "T-101", "JPKI")


class _VisibleText(HTMLParser):
    """The text a person reads on the page: no <code>, <title> counts, attribute values do not."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("code", "style", "script"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("code", "style", "script"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def english_left(html: str) -> list[str]:
    reader = _VisibleText()
    reader.feed(html)
    text = " ".join(reader.parts)
    for value in DATA:
        text = text.replace(value, " ")
    return ENGLISH_RUN.findall(text)


def read(client, url: str, status: int = 200, **kwargs) -> str:
    answer = client.get(url, **kwargs) if not kwargs.get("data") else client.post(url, **kwargs)
    assert answer.status_code == status, (url, answer.status_code, answer.text[:2000])
    assert not english_left(answer.text), (url, english_left(answer.text))
    return answer.text


def test_every_page_of_a_call_reads_in_japanese(make_console, ca_server):  # noqa: F811
    console: Console = make_console(ca_server, lang="ja", two_person_acts="lift")
    case = registered(console, ca_server)
    page_url = f"/console/registrations/{case}"

    login = read(console.client(), "/console/login")
    assert '<html lang="ja">' in login and "サインイン" in login
    operator, csrf = console.signed_in("hanako", Role.OPERATOR)
    read(operator, "/console/find")
    nobody = {"name": "佐藤 花子", "birth": "昭和60年5月5日", "address": "大阪府大阪市北区梅田一丁目1番"}
    nothing = operator.post("/console/find", data={"csrf_token": csrf, "by": "items", **nobody})
    assert nothing.status_code == 404 and not english_left(nothing.text), english_left(nothing.text)
    impossible = operator.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "佐藤 花子",
                                                      "birth": "平成32年1月2日", "address": "大阪府"})
    assert impossible.status_code == 422 and not english_left(impossible.text), english_left(impossible.text)
    assert "平成" in impossible.text
    found = operator.post("/console/find", data={"csrf_token": csrf, "by": "items", "name": "山田 太郎",
                                                 "birth": "平成2年1月2日", "address": "東京都千代田区千代田一丁目1番"})
    assert found.status_code == 200 and "1件の登録が見つかりました" in found.text, found.text[:3000]
    assert not english_left(found.text), english_left(found.text)

    registration = read(operator, page_url)
    assert "有効" in registration and "日本時間" in registration
    refused = operator.post(f"{page_url}/suspend", data={**SUSPEND, "ticket": "has space", "csrf_token": csrf})
    assert refused.status_code == 422 and "受付票番号" in refused.text
    assert not english_left(refused.text), english_left(refused.text)
    confirm = operator.post(f"{page_url}/suspend", data={**SUSPEND, "csrf_token": csrf})
    assert confirm.status_code == 200 and not english_left(confirm.text), english_left(confirm.text)
    done = operator.post(f"{page_url}/suspend", data={**SUSPEND, "csrf_token": csrf, "confirmed": "yes"})
    assert done.status_code == 303
    result = read(operator, done.headers["location"])
    assert "一時利用停止" in result
    again = operator.post(f"{page_url}/suspend", data={**SUSPEND, "csrf_token": csrf, "confirmed": "yes"})
    assert again.status_code == 409 and not english_left(again.text), english_left(again.text)
    forced = operator.post(f"{page_url}/lift", data={**LIFT, "csrf_token": csrf})
    assert forced.status_code == 403 and not english_left(forced.text), english_left(forced.text)
    read(operator, "/console/registrations/ABCD-EFGH-JKMN", status=404)
    read(operator, "/console/password")

    supervisor, supervisor_csrf = console.signed_in("sachiko", Role.SUPERVISOR)
    read(supervisor, page_url)
    asked = supervisor.post(f"{page_url}/lift", data={**LIFT, "csrf_token": supervisor_csrf, "confirmed": "yes"})
    assert asked.status_code == 303
    waiting = read(supervisor, asked.headers["location"])
    assert "2人目の責任者の承認待ち" in waiting
    read(supervisor, "/console/approvals")

    auditor, _ = console.signed_in("aiko", Role.AUDITOR)
    trail = read(auditor, "/console/audit")
    assert "日本時間" in trail

    in_english = operator.get(page_url, headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in in_english.text and "History" in in_english.text and " JST" in in_english.text
