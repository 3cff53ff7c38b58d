"""The API documentation of both servers, as a newcomer on a closed network uses it (issue 14, item 6).

/docs (Swagger UI) and /redoc load every script and stylesheet from the server itself, never from a CDN;
the OpenAPI documents declare the bearer credentials (Swagger UI's Authorize button) and, for every
operation, the problems it answers: application/problem+json, one example per kind whose ``type`` is a
kind the code defines. Real refusals of the running servers are among the kinds their operation declares.
A headless Chromium that may reach 127.0.0.1 only renders the service's operations.
"""
from __future__ import annotations

import shutil
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

import ca_mock.app  # noqa: F401 - every kind of problem the CA defines, for the register below
import jpki_service.entrypoints.app  # noqa: F401 - and the service's
from jpki_common.problems import PROBLEM_MEDIA_TYPE, Problem, problem_type
from tests.conftest import missing_on_this_machine
from tests.service_helpers import operator_client
from tests.shared_ca import _fresh_keys_per_test, shared_servers, unique  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e
# The documents do not depend on the database: one backend is enough. One CA and one service for the module
# (conftest's are one per test): the tests read the documents and pages, and the refusals are asked with
# operators and operation ids of the test's own (unique()).
ca_server, service_server = shared_servers("api-docs", backends=("sqlite",))
METHODS = ("get", "post", "put", "patch", "delete")
# Answers only OCSP responses (malformedRequest...), never a problem document: ca_mock/ocsp/responder.py.
NO_PROBLEMS = {("get", "/ocsp/{request}")}
# Problems the handlers in jpki_common/http.py answer without a Problem kind: FastAPI's own refusals (405...).
HTTP_FALLBACK = "http-"


def _kinds(cls: type[Problem] = Problem) -> list[type[Problem]]:
    return [k for sub in cls.__subclasses__() for k in (sub, *_kinds(sub))]


REGISTER = {problem_type(kind.slug): kind for kind in _kinds()}


class _Assets(HTMLParser):
    """Every URL a page loads: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _declared_types(document: dict[str, Any], method: str, path: str, status: int) -> set[str]:
    response = document["paths"][path][method]["responses"].get(str(status), {})
    examples = response.get("content", {}).get(PROBLEM_MEDIA_TYPE, {}).get("examples", {})
    return {example["value"]["type"] for example in examples.values()}


def test_docs_pages_load_nothing_from_elsewhere(service_server, ca_server):
    for url in (service_server.url, ca_server.url):
        host = urlsplit(url).netloc
        for page in ("/docs", "/redoc"):
            answer = httpx.get(url + page)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"), (url, page)
            assets = _Assets()
            assets.feed(answer.text)
            scripts = [u for u in assets.urls if u.endswith(".js")]
            assert scripts, (url, page, answer.text)  # the page's own UI, not an empty shell
            if page == "/docs":
                assert any(u.endswith(".css") for u in assets.urls), (url, answer.text)
            for asset in assets.urls:
                absolute = urljoin(url + page, asset)
                assert urlsplit(absolute).netloc == host, (page, asset)  # no CDN, no font service
                fetched = httpx.get(absolute)
                assert fetched.status_code == 200, (absolute, fetched.status_code)
                kind = fetched.headers["content-type"]
                wanted = {"js": "javascript", "css": "text/css", "png": "image/png"}[asset.rpartition(".")[2]]
                assert wanted in kind and len(fetched.content) > 1000, (absolute, kind, len(fetched.content))
            assert "cdn.jsdelivr" not in answer.text and "fonts.googleapis" not in answer.text, page


def test_every_operation_declares_its_problems_and_the_bearer_credentials(service_server, ca_server):
    for url in (service_server.url, ca_server.url):
        document = httpx.get(f"{url}/openapi.json").json()
        for method, path, operation in _operations(document):
            problems = {status: response for status, response in operation["responses"].items()
                        if status[0] in "45" and status[1:].isdigit()}
            if (method, path) in NO_PROBLEMS:
                continue
            assert problems, (method, path)
            for status, response in problems.items():
                content = response["content"]
                assert list(content) == [PROBLEM_MEDIA_TYPE], (method, path, status, list(content))
                assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/ProblemOut"}
                examples = content[PROBLEM_MEDIA_TYPE]["examples"]
                assert examples, (method, path, status)
                for example in examples.values():
                    value = example["value"]
                    kind = REGISTER.get(value["type"])
                    assert kind is not None, (method, path, status, value["type"])  # a type the code defines
                    assert (kind.status, kind.title) == (int(status), value["title"]) == (value["status"],
                                                                                          kind.title)
                    assert value["detail"], (method, path, value)
            if _declared_types(document, method, path, 401) - {problem_type("login-refused")}:
                assert operation.get("security"), (method, path)  # a credential is asked: Authorize offers it
            if "429" in problems:
                assert "Retry-After" in problems["429"]["headers"], (method, path)

    service = httpx.get(f"{service_server.url}/openapi.json").json()
    schemes = service["components"]["securitySchemes"]
    assert schemes["ownerToken"]["scheme"] == schemes["operatorSession"]["scheme"] == "bearer"
    assert service["paths"]["/api/v1/registrations/{registration_id}"]["get"]["security"] == [{"ownerToken": []}]
    for method, path, operation in _operations(service):
        if path.startswith("/api/v1/operator/") and (method, path) != ("post", "/api/v1/operator/session"):
            assert operation["security"] == [{"operatorSession": []}], (method, path)
    ca = httpx.get(f"{ca_server.url}/openapi.json").json()
    assert ca["components"]["securitySchemes"]["caCredential"]["scheme"] == "bearer"
    for method, path, operation in _operations(ca):
        wanted = [{"caCredential": []}] if path.startswith("/api/v1/") else None
        assert operation.get("security") == wanted, (method, path)


def test_real_refusals_are_among_the_declared_kinds(service_server, ca_server):
    """What the servers really answer, with its type, is what the documents say each operation answers."""
    service = httpx.get(f"{service_server.url}/openapi.json").json()
    ca = httpx.get(f"{ca_server.url}/openapi.json").json()
    unknown = "0" * 32
    auditor_name, supervisor_name = unique("docs.auditor"), unique("docs.supervisor")
    with service_server.client() as anyone, operator_client(service_server, auditor_name, "auditor") as auditor, \
            operator_client(service_server, supervisor_name, "supervisor") as supervisor:
        caller = {"name": "山田 太郎", "birth": "1990-01-02", "address": "東京都千代田区千代田1-1"}
        proof = {"proof": {"challenge_id": "nope", "signature": "AAAA"}}
        asked = [
            (service, "get", "/api/v1/registrations/{registration_id}", anyone.get(f"/api/v1/registrations/{unknown}")),
            (service, "get", "/api/v1/registrations/{registration_id}",
             anyone.get(f"/api/v1/registrations/{unknown}", headers={"Authorization": "Bearer wrong"})),
            (service, "post", "/api/v1/registrations/{registration_id}/revoke",
             anyone.post(f"/api/v1/registrations/{unknown}/revoke", json=proof)),
            (service, "post", "/api/v1/registrations", anyone.post("/api/v1/registrations", json={"proof": {}})),
            (service, "post", "/rp/v1/login",
             anyone.post("/rp/v1/login", json={"challenge_id": "nope", "certificate_pem": "x", "signature": "x"})),
            (service, "get", "/api/v1/operator/session", anyone.get("/api/v1/operator/session")),
            (service, "post", "/api/v1/operator/session",
             anyone.post("/api/v1/operator/session", json={"username": auditor_name, "password": "wrong"})),
            (service, "post", "/api/v1/operator/registrations/search",
             auditor.post("/api/v1/operator/registrations/search", json=caller)),
            (service, "post", "/api/v1/operator/registrations/search",
             supervisor.post("/api/v1/operator/registrations/search", json=caller)),
            (service, "post", "/api/v1/operator/registrations/{case_reference}/suspend",
             supervisor.post("/api/v1/operator/registrations/ABCD-EFGH-JKMN/suspend",
                             json={"caller": "self", "reason": "lost", "ticket": "T-1"})),
            (service, "post", "/api/v1/operator/approvals/{approval_id}/approve",
             supervisor.post("/api/v1/operator/approvals/0123456789abcdef/approve")),
        ]
    with ca_server.client(authorised=False) as stranger, ca_server.client() as the_service:
        asked += [
            (ca, "get", "/api/v1/certificates/{serial}", stranger.get("/api/v1/certificates/1A")),
            (ca, "get", "/api/v1/certificates/{serial}", the_service.get("/api/v1/certificates/1A2B3C4D5E")),
            (ca, "post", "/api/v1/certificates",
             the_service.post("/api/v1/certificates", json={"operation_id": unique("docs-1"),
                                                            "profile": "card-signature", "csr_pem": "not a request"})),
            (ca, "get", "/crl/{filename}", stranger.get("/crl/nosuch.crl")),
        ]
    seen = set()
    for document, method, path, answer in asked:
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE, (path, answer.status_code, answer.text)
        problem = answer.json()
        declared = _declared_types(document, method, path, answer.status_code)
        assert problem["type"] in declared, (method, path, answer.status_code, problem, declared)
        seen.add(problem["type"].rpartition("/")[2])
    # The refusals above are the kinds a newcomer meets first: each was really answered.
    assert {"owner-token-missing", "registration-unknown", "invalid-request", "challenge-unknown", "not-signed-in",
            "login-refused", "role-forbidden", "nothing-found", "approval-unknown", "unauthorised",
            "unknown-certificate", "outside-credential-scope", "unknown-authority"} <= seen, seen


def test_swagger_ui_renders_the_operations_offline(service_server):
    """Chromium may reach 127.0.0.1 and nothing else: the page still shows every operation and Authorize."""
    if shutil.which("chromium") is None:
        missing_on_this_machine("Chromium is not installed (Debian: apt-get install chromium)", "the docs page test")
    from playwright.sync_api import sync_playwright

    from tests.test_console_browser import CHROMIUM_ARGS

    operations = sum(1 for _ in _operations(httpx.get(f"{service_server.url}/openapi.json").json()))
    elsewhere: list[str] = []

    def only_here(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_here)
            page.goto(f"{service_server.url}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() == operations
            assert page.locator("button.authorize").count() == 1
            page.locator("button.authorize").click()
            assert page.get_by_text("ownerToken").count() and page.get_by_text("operatorSession").count()
        finally:
            browser.close()
    assert elsewhere == [], elsewhere
