"""Owner notices by e-mail (issue 15, item 4), against a real SMTP server (aiosmtpd), the real service
process and the real CA: the owner gives an address at registration or later with the card; a change
made by others (here the call centre's suspension) arrives by e-mail with the case reference, the
Japanese and English texts and the masked name, and nothing else of the person; an SMTP outage delays
the notice, never loses it; a log-in at the relying party is told only to an owner who asked; bad input
is refused naming the field, with nothing changed.

The tests share one CA, one SMTP server and one service per backend (tests/shared_ca.py): each registers
persons of its own, sends to addresses of its own, and reads only the mail, notices and rows it made."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from jpki_common.owner_proof import email_digest, proof_message, sign_message
from tests.conftest import free_port
from tests.privacy_scan import Holder, scan, service_sources
from tests.service_helpers import (
    CardForTests,
    PhoneForTests,
    challenge,
    make_card,
    operator_client,
    register_body,
    signed,
)
from tests.shared_ca import (  # noqa: F401 (_fresh_keys_per_test: a fixture)
    _fresh_keys_per_test,
    backend_of,
    module_service_server,
    shared_servers,
    unique,
    unique_person,
)
from tests.test_api_bad_input import assert_problem
from tests.test_service_flows import wait_for
from tests.test_service_proofs import LIFECYCLE_TABLES

pytestmark = pytest.mark.e2e
ca_server = shared_servers("email-notices")[0]  # the module's service is ``service`` below, with its SMTP settings

LOST = {"reason": "lost", "caller": "self", "ticket": "T-2001"}


def _address(local: str) -> str:
    """An e-mail address of this test's own: the SMTP server and the service are the module's."""
    return f"{local}.{uuid.uuid4().hex[:8]}@example.jp"


def _other_person() -> dict[str, str]:
    return {**unique_person("佐藤 花子"), "gender": "2"}


@dataclass
class Inbox:
    """An aiosmtpd handler keeping every message it accepts, with its envelope recipients."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, _server, _session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [message for rcpt, message in self.received if address in rcpt]


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """One SMTP server for the module: its tests read only the mail sent to their own addresses."""
    server = SmtpServer(free_port(), Inbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(ca_server, tmp_path_factory, smtp: SmtpServer):
    """One service per backend for the module, sending owner notices to the module's SMTP server."""
    with module_service_server(ca_server, tmp_path_factory.mktemp(f"email-notices-svc-{backend_of(ca_server)}"),
                               JPKI_SMTP_HOST="127.0.0.1", JPKI_SMTP_PORT=str(smtp.port),
                               JPKI_SMTP_FROM="notices@jpki.example.jp", JPKI_SMTP_TIMEOUT_SECONDS="2") as running:
        yield running


def _registration_ids(database_url: str) -> set[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT id FROM registrations")).scalars())
    finally:
        engine.dispose()


def snapshot(database_url: str, earlier: set[str]) -> dict[str, str]:
    """As tests.test_service_proofs.snapshot (a hash of each lifecycle table), without the rows of the
    registrations in ``earlier``: other tests' on the module's service, which its background work may still
    change. What this test made, and any row new or of no registration, is all in it."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            hashes = {}
            for table in LIFECYCLE_TABLES:
                column = "id" if table == "registrations" else "registration_id"
                rows = [tuple(row) for row in connection.execute(sa.text(f"SELECT * FROM {table}"))
                        if row._mapping.get(column) not in earlier]
                hashes[table] = hashlib.sha256(repr(sorted(rows, key=repr)).encode()).hexdigest()
            return hashes
    finally:
        engine.dispose()


def _register(client: httpx.Client, card: CardForTests, phone: PhoneForTests, **extra) -> dict:
    answer = client.post("/api/v1/registrations", json={**register_body(client, card, phone), **extra})
    assert answer.status_code == 201, answer.text
    document = answer.json()
    phone.registration_id, phone.owner_token = document["registration_id"], document["owner_token"]
    phone.case_reference = document["case_reference"]
    return document


def _email_body(client: httpx.Client, card: CardForTests, phone: PhoneForTests, address: str | None,
                login_notices: bool = False) -> dict:
    """The owner's e-mail change, signed by the card over the address (owner_proof.email_digest)."""
    c = challenge(client, "email", phone.registration_id)
    return {"proof": {"challenge_id": c["challenge_id"], "card_certificate_pem": card.certificate_pem,
                      "signature": signed(c, card.key, email_digest(address, login_notices))},
            "email": address, "login_notices": login_notices}


def _suspend(service, phone: PhoneForTests) -> None:
    with operator_client(service, unique("olivia"), "operator") as operator:
        answer = operator.post(f"/api/v1/operator/registrations/{phone.case_reference}/suspend", json=LOST)
    assert answer.status_code in (200, 202), answer.text


def _login(client: httpx.Client, document: dict, phone: PhoneForTests) -> None:
    pem = next(c["certificate_pem"] for c in document["certificates"]
               if c["kind"] == "authentication" and c["current"])
    c = client.post("/rp/v1/login/challenge").json()
    message = proof_message("login", None, c["challenge_id"], c["nonce"])
    answer = client.post("/rp/v1/login", json={"challenge_id": c["challenge_id"], "certificate_pem": pem,
                                                "signature": sign_message(phone.authentication_key, message)})
    assert answer.status_code == 200, answer.text


def _notifications(database_url: str, registration_id: str) -> list[dict]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(
                "SELECT event, state, attempts, last_error FROM owner_notifications WHERE registration_id = :r "
                "ORDER BY id"), {"r": registration_id})]
    finally:
        engine.dispose()


def _file_notices(service, case_reference: str) -> list[dict]:
    """The notices in the service's file about one registration (the file is the module's service's)."""
    path = service.data_dir / "notifications.jsonl"
    notices = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [notice for notice in notices if notice["case_reference"] == case_reference]


def _mail_about(smtp: SmtpServer, case_reference: str) -> list[EmailMessage]:
    """Every message the SMTP server took about one registration, whoever it went to."""
    return [message for _, message in smtp.inbox.received
            if case_reference in message["Subject"] or case_reference in message.get_content()]


def test_a_suspension_by_the_call_centre_arrives_by_email_with_no_personal_data(ca_server, service, smtp):
    person, address = unique_person(), _address("taro.yamada")
    card, phone = make_card(ca_server.store, ca_server.settings, person), PhoneForTests()
    with service.client() as client:
        registered = _register(client, card, phone, email=address)
    assert registered["email"] == address and registered["login_notices"] is False
    _suspend(service, phone)

    [message] = wait_for(lambda: smtp.inbox.to(address))
    assert message["From"] == "notices@jpki.example.jp" and message["To"] == address
    subject = message["Subject"]
    assert "スマホ用電子証明書に関するお知らせ" in subject
    assert "Notice about your JPKI smartphone certificates" in subject
    assert phone.case_reference in subject
    assert subject.index("スマホ") < subject.index("Notice")  # Japanese first
    body = message.get_content()
    ja, en = body.index("一時利用停止"), body.index("temporarily suspended by the JPKI call centre")
    assert ja < en  # Japanese first, then English
    assert body.count(phone.case_reference) == 2 and "日本時間" in body and "JST" in body
    assert body.count("山* 太*") == 2  # the masked name, and nothing more of the person
    number = person["address"].removeprefix("東京都千代田区千代田")  # as "1-1" of tests.helpers.PERSON
    for personal in ("山田", "太郎", person["date_of_birth"], person["date_of_birth"].replace("-", ""), "東京都",
                     "千代田", number, card.serial):
        assert personal not in body and personal not in subject, personal
    # An owner with an address gets the notice there, not in the file.
    assert _file_notices(service, phone.case_reference) == []
    # Nothing of the person, the address included, is kept in clear by the service (store, files, logs).
    holder = Holder(person["name"], person["date_of_birth"], person["address"], address)
    log = service.data_dir.parent / "service.log"
    assert scan(service_sources(service.database_url, service.data_dir, [log]), [holder]) == []


def test_an_smtp_outage_delays_the_notice_and_it_arrives_when_the_server_is_back(ca_server, service, smtp):
    address = _address("taro.yamada")
    card, phone = make_card(ca_server.store, ca_server.settings, unique_person()), PhoneForTests()
    with service.client() as client:
        _register(client, card, phone, email=address)
    smtp.stop()
    try:
        _suspend(service, phone)
        failed = wait_for(lambda: [n for n in _notifications(service.database_url, phone.registration_id)
                                   if n["attempts"] >= 2])
        assert failed[0]["state"] == "pending" and "Connection" in failed[0]["last_error"]
        assert address not in failed[0]["last_error"]
        # Kept for the owner's address, not lost: no mail of this test's taken, and no notice in the file.
        assert smtp.inbox.to(address) == [] and _mail_about(smtp, phone.case_reference) == []
        assert _file_notices(service, phone.case_reference) == []
    finally:
        smtp.start()  # the same port: the outbox's next retry reaches it (and the module's next tests)
    [message] = wait_for(lambda: smtp.inbox.to(address), timeout=30)
    assert phone.case_reference in message["Subject"]
    # Marked sent in its own transaction just after the server took it (notifications/service.py send_due).
    wait_for(lambda: [n["state"] for n in _notifications(service.database_url, phone.registration_id)] == ["sent"])


def test_a_login_notice_arrives_only_for_an_owner_who_asked(ca_server, service, smtp):
    asked, quiet = _address("hanako.sato"), _address("taro.yamada")
    asking_card = make_card(ca_server.store, ca_server.settings, _other_person())
    quiet_card = make_card(ca_server.store, ca_server.settings, unique_person())
    asking, not_asking = PhoneForTests(), PhoneForTests()
    with service.client() as client:
        asking_doc = _register(client, asking_card, asking, email=asked, login_notices=True)
        quiet_doc = _register(client, quiet_card, not_asking, email=quiet)
        assert asking_doc["login_notices"] is True and quiet_doc["login_notices"] is False
        _login(client, quiet_doc, not_asking)  # first: the outbox sends in order
        _login(client, asking_doc, asking)

    [message] = wait_for(lambda: smtp.inbox.to(asked))
    body = message.get_content()
    assert "the demo relying party of the JPKI service" in body and "ログイン" in body
    assert "JST" in body and asking.case_reference in body and "佐* 花*" in body
    assert smtp.inbox.to(quiet) == []
    assert _notifications(service.database_url, not_asking.registration_id) == []


def test_the_owner_sets_and_changes_the_address_with_the_card(ca_server, service, smtp):
    earlier = _registration_ids(service.database_url)  # other tests': their rows are not this test's
    address, new_address = _address("taro.yamada"), _address("new.taro")
    card, phone = make_card(ca_server.store, ca_server.settings, unique_person()), PhoneForTests()
    other_card = make_card(ca_server.store, ca_server.settings, _other_person())
    with service.client() as client:
        registered = _register(client, card, phone)
        assert registered["email"] is None
        # Without an address, notices go to the configured sender (the file), as before.
        _suspend(service, phone)
        wait_for(lambda: _file_notices(service, phone.case_reference))
        assert [n["event"] for n in _file_notices(service, phone.case_reference)] == ["suspended"]
        assert _mail_about(smtp, phone.case_reference) == []

        # Another person's card may not set it: refused, nothing changed.
        before = snapshot(service.database_url, earlier)
        refused = client.post(f"/api/v1/registrations/{phone.registration_id}/email",
                              json=_email_body(client, other_card, phone, "thief@example.jp", True))
        assert_problem(refused, 403, "not the one that registered this phone")
        after = snapshot(service.database_url, earlier)
        assert {t: h for t, h in after.items() if t != "challenges"} == \
            {t: h for t, h in before.items() if t != "challenges"}

        # An address signed for another one than sent: the card's signature does not cover it.
        body = _email_body(client, card, phone, address, True)
        assert_problem(client.post(f"/api/v1/registrations/{phone.registration_id}/email",
                                   json={**body, "email": "thief@example.jp"}), 403, "did not sign")

        answer = client.post(f"/api/v1/registrations/{phone.registration_id}/email",
                             json=_email_body(client, card, phone, address, True))
        assert answer.status_code == 200, answer.text
        assert answer.json()["email"] == address and answer.json()["login_notices"] is True
        changed = client.post(f"/api/v1/registrations/{phone.registration_id}/email",
                              json=_email_body(client, card, phone, new_address, False))
        assert changed.status_code == 200 and changed.json()["login_notices"] is False
    # The next notice goes to the new address only.
    with operator_client(service, unique("sam"), "supervisor") as supervisor:
        lifted = supervisor.post(f"/api/v1/operator/registrations/{phone.case_reference}/lift",
                                 json={"reason": "owner found the phone, identity checked", "caller": "self",
                                       "ticket": "T-2002"})
    assert lifted.status_code in (200, 202), lifted.text
    [message] = wait_for(lambda: smtp.inbox.to(new_address))
    assert "lifted" in message.get_content() and smtp.inbox.to(address) == []


@pytest.mark.parametrize(("extra", "field_", "why"), [
    ({"email": "not an address"}, "body.email", "not a valid email address"),
    ({"email": "a" * 250 + "@example.jp"}, "body.email", "too long"),
    ({"email": 12}, "body.email", ""),
    ({"email": None, "login_notices": True}, "login_notices", "needs an email address"),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_changes(ca_server, service, extra, field_, why):
    earlier = _registration_ids(service.database_url)  # other tests': their rows are not this test's
    address = _address("taro.yamada")
    card, phone = make_card(ca_server.store, ca_server.settings, unique_person()), PhoneForTests()
    with service.client() as client:
        before = snapshot(service.database_url, earlier)
        refused = client.post("/api/v1/registrations", json={**register_body(client, card, phone), **extra})
        problem = assert_problem(refused, 422, field_, why)
        assert problem.get("field", field_) == field_ or any(e["field"] == field_ for e in problem.get("errors", []))
        after = snapshot(service.database_url, earlier)
        assert {t: h for t, h in after.items() if t != "challenges"} == \
            {t: h for t, h in before.items() if t != "challenges"}

        _register(client, card, phone, email=address)
        before = snapshot(service.database_url, earlier)
        body = {**_email_body(client, card, phone, address), **extra}
        refused = client.post(f"/api/v1/registrations/{phone.registration_id}/email", json=body)
        assert_problem(refused, 422, field_, why)
        after = snapshot(service.database_url, earlier)
        assert {t: h for t, h in after.items() if t != "challenges"} == \
            {t: h for t, h in before.items() if t != "challenges"}


def test_the_app_sets_the_address_with_the_card_and_a_log_in_is_told(ca_server, service, smtp, tmp_path):
    from typer.testing import CliRunner

    from app_client.cli import app
    from ca_mock.cards.service import issue_card, write_card
    from ca_mock.certificates.schemas import PersonIn
    from tests.app_client.conftest import CARD_PASSWORD, CARD_PIN, PHONE_PASSWORD, PHONE_PIN

    address, first = _address("taro.yamada"), _address("first")
    card_file = tmp_path / "card.json"
    write_card(issue_card(ca_server.store, ca_server.settings, PersonIn(**unique_person()), CARD_PASSWORD, CARD_PIN),
               card_file)
    runner = CliRunner()
    env = {"JPKI_CARD_PASSWORD": CARD_PASSWORD, "JPKI_SIGN_PASSWORD": PHONE_PASSWORD, "JPKI_AUTH_PIN": PHONE_PIN,
           "JPKI_APP_HOME": str(tmp_path / "cli-phone"), "JPKI_SERVICE_URL": service.url, "JPKI_LANG": "en"}

    def run(*args: str):
        result = runner.invoke(app, list(args), env=env)
        assert CARD_PASSWORD not in result.output
        return result

    refused = run("register", "--card", str(card_file), "--email", "not an address")
    assert refused.exit_code == 1 and "email" in refused.output, refused.output
    registered = run("register", "--card", str(card_file), "--email", first)
    assert registered.exit_code == 0 and f"notices go to {first}\nlog-in notices: off" in registered.stdout
    refused = run("email", "set", "not an address", "--card", str(card_file))
    assert refused.exit_code == 1 and "not a valid email address" in refused.output, refused.output
    answer = run("email", "set", address, "--card", str(card_file), "--login-notices")
    assert answer.exit_code == 0, answer.output
    assert f"now go to {address}" in answer.stdout and "log-in notices: on" in answer.stdout

    assert run("login").exit_code == 0
    [message] = wait_for(lambda: smtp.inbox.to(address))
    assert "was used to log in at the demo relying party" in message.get_content()

    removed = run("email", "remove", "--card", str(card_file))
    assert removed.exit_code == 0 and "no longer sent by e-mail" in removed.stdout, removed.output
    assert run("login").exit_code == 0
    registration = json.loads(run("status", "--json").stdout)["registration"]
    assert registration["login_notices"] is False
    assert [n["event"] for n in _notifications(service.database_url, registration["registration_id"])] == ["login"]


class RefusingInbox(Inbox):
    async def handle_RCPT(self, _server, _session, _envelope, address, _options) -> str:  # noqa: N802
        return f"550 5.1.1 <{address}>: no such user"


def test_a_refused_address_is_reported_by_its_code_never_its_text():
    from jpki_service.notifications.senders import MailRefused, OwnerMail, SmtpSender

    server = SmtpServer(free_port(), RefusingInbox())
    server.start()
    try:
        sender = SmtpSender("127.0.0.1", server.port, "notices@jpki.example.jp", timeout=5)
        mail = OwnerMail(to=_address("taro"), subject="s", body="b", notification_id=1, at=dt.datetime.now(dt.UTC))
        with pytest.raises(MailRefused) as refused:
            sender.send_mail(mail)
    finally:
        server.stop()
    assert str(refused.value) == "the SMTP server refused the owner's address (SMTP 550)"
    assert server.inbox.received == []
