"""The owner-notification outbox, on SQLite and PostgreSQL: written in the caller's transaction,
delivered by a sender outside it, kept and retried with back-off when the sender fails, and
free of personal data."""
from __future__ import annotations

import json
import logging
import re
import stat

import pytest
import sqlalchemy as sa

from jpki_service.adapters.db import Store, migrate, utcnow
from jpki_service.common.settings import ServiceSettings
from jpki_service.lifecycle import Event
from jpki_service.notifications.models import OwnerNotification
from jpki_service.notifications.senders import FileSender, LogSender, make_sender
from jpki_service.notifications.service import enqueue, pending_count, send_due
from jpki_service.registrations.models import Registration

DIGITS_12 = re.compile(r"[0-9]{12}")


@pytest.fixture
def store(service_database_url: str):
    migrate(service_database_url)
    store = Store(service_database_url)
    yield store
    store.dispose()


@pytest.fixture
def registration_id(store: Store) -> str:
    now = utcnow()
    with store.transaction() as session:
        session.add(Registration(id="ab" * 16, case_reference="ABCD-EFGH-JKMN",
                                 state="active", reason=None, person_key="c" * 64, card_serial="0a1b",
                                 device_model="Test Phone 1", device_public_key_pem="-", created_at=now,
                                 updated_at=now))
    return "ab" * 16


class FailingSender:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: dict) -> None:
        self.calls += 1
        raise ConnectionError("gateway down")


def test_enqueued_notifications_are_written_as_private_json_lines(store: Store, registration_id: str, tmp_path):
    events = [(Event.SUSPENDED, "operator:alice"), (Event.SUPERVISOR_LIFTED, "supervisor:bob"),
              (Event.SUPERSEDED, "owner"), (Event.CARD_REVOKED, "system"), (Event.SUPERVISOR_REVOKED, "supervisor:bob")]
    with store.transaction() as session:
        ids = [enqueue(session, registration_id, "ABCD-EFGH-JKMN", event.value, actor).id for event, actor in events]
    assert pending_count(store) == 5

    path = tmp_path / "out" / "notifications.jsonl"
    assert send_due(store, FileSender(path)) == 5
    assert pending_count(store) == 0
    assert send_due(store, FileSender(path)) == 0  # nothing sent twice
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    raw = path.read_text(encoding="utf-8")
    messages = [json.loads(line) for line in raw.splitlines()]
    assert [m["notification_id"] for m in messages] == ids
    assert [m["event"] for m in messages] == [e.value for e, _ in events]
    assert [m["actor"] for m in messages] == ["operator", "supervisor", "owner", "system", "supervisor"]
    assert all(m["case_reference"] == "ABCD-EFGH-JKMN" and "registration_id" not in m and m["at"].endswith("+00:00")
               for m in messages)
    suspended, lifted, superseded, card = messages[:4]
    assert "call centre" in suspended["text_en"] and "JPKIコールセンター" in suspended["text_ja"]
    assert "supervisor" in lifted["text_en"] and "責任者" in lifted["text_ja"]
    assert "another phone was registered" in superseded["text_en"] and "別のスマートフォン" in superseded["text_ja"]
    assert "My Number Card was revoked" in card["text_en"]
    for message in messages:
        assert message["text_en"].endswith("If this was not you, call the JPKI call centre.")
        assert message["text_ja"].endswith("お心当たりがない場合は、JPKIコールセンターにお電話ください。")
    # Privacy: no staff user name, no 12-digit run anywhere (the Individual Number's shape).
    assert "alice" not in raw and "bob" not in raw
    assert not DIGITS_12.search(raw)
    with store.sessions() as session:
        rows = session.scalars(sa.select(OwnerNotification)).all()
    assert all(r.state == "sent" and r.sent_at is not None and r.attempts == 0 for r in rows)


def test_a_notification_is_sent_only_if_the_change_commits(store: Store, registration_id: str):
    with pytest.raises(RuntimeError), store.transaction() as session:
        enqueue(session, registration_id, "ABCD-EFGH-JKMN", Event.SUSPENDED.value, "operator:alice")
        raise RuntimeError("the change failed")
    assert pending_count(store) == 0


def test_a_failing_sender_backs_off_and_loses_nothing(store: Store, registration_id: str, tmp_path):
    with store.transaction() as session:
        first = enqueue(session, registration_id, "ABCD-EFGH-JKMN", Event.SUSPENDED.value, "operator:alice").id
        second = enqueue(session, registration_id, "ABCD-EFGH-JKMN", Event.SUPERVISOR_REVOKED.value,
                         "supervisor:bob").id
    failing = FailingSender()
    before = utcnow()
    assert send_due(store, failing) == 0
    assert failing.calls == 1  # the round stops at the first failure
    assert pending_count(store) == 2
    with store.sessions() as session:
        deferred = session.get_one(OwnerNotification, first)
        released = session.get_one(OwnerNotification, second)
    assert deferred.attempts == 1 and "gateway down" in deferred.last_error
    assert deferred.next_attempt_at > before
    assert released.attempts == 0 and released.next_attempt_at <= utcnow()  # given back, not counted

    # The second is due again at once and fails too; the first waits for its back-off.
    assert send_due(store, failing) == 0 and failing.calls == 2
    assert send_due(store, failing) == 0 and failing.calls == 2  # nothing due now
    with store.engine.begin() as connection:
        connection.execute(sa.update(OwnerNotification).values(next_attempt_at=before))
    path = tmp_path / "notifications.jsonl"
    assert send_due(store, FileSender(path)) == 2
    assert pending_count(store) == 0
    assert [json.loads(line)["notification_id"] for line in path.read_text().splitlines()] == [first, second]


def test_log_sender_logs_at_info(store: Store, registration_id: str, caplog):
    with store.transaction() as session:
        enqueue(session, registration_id, "ABCD-EFGH-JKMN", Event.CARD_REVOKED.value, "system")
    with caplog.at_level(logging.INFO, logger="jpki_service.notifications"):
        assert send_due(store, LogSender()) == 1
    record = next(r for r in caplog.records if r.name == "jpki_service.notifications")
    assert record.levelno == logging.INFO and "card-revoked" in record.getMessage()


def test_make_sender_by_name(tmp_path):
    default = make_sender(ServiceSettings(data_dir=tmp_path))
    assert isinstance(default, FileSender) and default.path == tmp_path / "notifications.jsonl"
    chosen = make_sender(ServiceSettings(data_dir=tmp_path, notification_file=tmp_path / "x.jsonl"))
    assert isinstance(chosen, FileSender) and chosen.path == tmp_path / "x.jsonl"
    assert isinstance(make_sender(ServiceSettings(data_dir=tmp_path, notification_sender="log")), LogSender)
    with pytest.raises(ValueError, match=r"unknown notification sender 'sms'.*file, log"):
        make_sender(ServiceSettings(data_dir=tmp_path, notification_sender="sms"))
