"""The audit trail's keyed hash chain, on SQLite and PostgreSQL: appends verify; every kind of
tampering done with raw SQL (edit, delete, truncate, reorder, head) is found at the right entry;
the CLI names it; racing appends make one gap-free chain."""
from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from jpki_service.adapters.db import Store, migrate
from jpki_service.adapters.service_keys import load_service_keys
from jpki_service.audit.cli import audit_app
from jpki_service.audit.service import GENESIS_HASH, entries, record, verify
from jpki_service.common.settings import ServiceSettings

DATA_KEY = "audit-test-data-key"


@pytest.fixture
def settings(service_database_url: str, tmp_path) -> ServiceSettings:
    migrate(service_database_url)
    return ServiceSettings(data_dir=tmp_path / "service", database_url=service_database_url, data_key=DATA_KEY)


@pytest.fixture
def chain_key(settings: ServiceSettings) -> bytes:
    return load_service_keys(settings).audit_chain


@pytest.fixture
def store(settings: ServiceSettings):
    store = Store(settings.resolved_database_url())
    yield store
    store.dispose()


def append(store: Store, key: bytes, count: int) -> None:
    for n in range(count):
        with store.transaction() as session:
            record(session, key, f"operator:op{n % 3}", "suspend", f"reg{n:04d}",
                   {"ticket": f"T-{n}", "note": "電話で本人確認", "n": n})


def execute(store: Store, sql: str, **params) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text(sql), params)


def problems(store: Store, key: bytes) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in verify(store, key).problems]


def test_appends_chain_and_verify(store: Store, chain_key: bytes):
    report = verify(store, chain_key)
    assert report.ok and report.entries_checked == 0  # a fresh store: no head, no entries

    append(store, chain_key, 10)
    report = verify(store, chain_key)
    assert report.ok, report.problems
    assert report.entries_checked == 10
    with store.sessions() as session:
        rows = session.execute(sa.text("SELECT seq, prev_hash, entry_hash, details FROM audit_log ORDER BY seq")).all()
        head = session.execute(sa.text("SELECT seq, entry_hash FROM audit_head")).one()
    assert [r.seq for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].entry_hash for i in range(1, 10))
    assert tuple(head) == (10, rows[-1].entry_hash)
    # Canonical JSON, stored as hashed: sorted keys, no spaces, Japanese kept as is.
    assert rows[0].details == '{"n":0,"note":"電話で本人確認","ticket":"T-0"}'


def test_rolled_back_append_leaves_no_trace(store: Store, chain_key: bytes):
    append(store, chain_key, 2)
    with pytest.raises(RuntimeError), store.transaction() as session:
        record(session, chain_key, "system", "cascade", None, {})
        raise RuntimeError("the act failed")
    append(store, chain_key, 1)
    report = verify(store, chain_key)
    assert report.ok and report.entries_checked == 3


def test_entries_newest_first_with_paging_and_filter(store: Store, chain_key: bytes):
    append(store, chain_key, 5)
    with store.sessions() as session:
        first = entries(session, limit=2)
        assert [e["seq"] for e in first] == [5, 4]
        assert [e["seq"] for e in entries(session, after_seq=first[-1]["seq"], limit=2)] == [3, 2]
        only = entries(session, case_reference="reg0001")
    assert [e["seq"] for e in only] == [2]
    assert only[0]["details"] == {"n": 1, "note": "電話で本人確認", "ticket": "T-1"}
    assert only[0]["actor"] == "operator:op1" and only[0]["at"].endswith("+00:00")


def test_a_wrong_key_is_named(store: Store, chain_key: bytes):
    append(store, chain_key, 3)
    assert problems(store, b"another key") == [(1, "key-mismatch")]


def test_edited_details_and_actor_are_found(store: Store, chain_key: bytes):
    append(store, chain_key, 8)
    details = '{"n":2,"note":"電話で本人確認","ticket":"T-999"}'
    execute(store, "UPDATE audit_log SET details = :d WHERE seq = 3", d=details)
    execute(store, "UPDATE audit_log SET actor = 'operator:mallory' WHERE seq = 6")
    assert problems(store, chain_key) == [(3, "edited"), (6, "edited")]


def test_edited_hash_is_found_once(store: Store, chain_key: bytes):
    append(store, chain_key, 5)
    execute(store, "UPDATE audit_log SET entry_hash = :h WHERE seq = 2", h="f" * 64)
    # Entry 3's broken link is a consequence of entry 2, not a second finding.
    assert problems(store, chain_key) == [(2, "edited")]


def test_deleted_middle_entry_is_found(store: Store, chain_key: bytes):
    append(store, chain_key, 8)
    execute(store, "DELETE FROM audit_log WHERE seq = 4")
    report = verify(store, chain_key)
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "deleted")]
    execute(store, "DELETE FROM audit_log WHERE seq IN (6, 7)")
    found = verify(store, chain_key).problems
    assert [(p.seq, p.kind) for p in found] == [(4, "deleted"), (6, "deleted")]
    assert "6-7" in found[1].detail


def test_deleted_last_entry_is_found_by_the_head(store: Store, chain_key: bytes):
    append(store, chain_key, 6)
    execute(store, "DELETE FROM audit_log WHERE seq = 6")
    assert problems(store, chain_key) == [(6, "truncated")]
    execute(store, "DELETE FROM audit_log")
    assert problems(store, chain_key) == [(1, "truncated")]


def test_swapped_entries_are_reordered(store: Store, chain_key: bytes):
    append(store, chain_key, 7)
    # Swap entries 3 and 5 (every column but the number), through a free number.
    execute(store, "UPDATE audit_log SET seq = 100 WHERE seq = 3")
    execute(store, "UPDATE audit_log SET seq = 3 WHERE seq = 5")
    execute(store, "UPDATE audit_log SET seq = 5 WHERE seq = 100")
    report = verify(store, chain_key)
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "reordered"), (5, "reordered")]
    assert "entry 5" in report.problems[0].detail and "entry 3" in report.problems[1].detail


def test_adjacent_swap_is_reordered(store: Store, chain_key: bytes):
    append(store, chain_key, 5)
    execute(store, "UPDATE audit_log SET seq = 100 WHERE seq = 1")
    execute(store, "UPDATE audit_log SET seq = 1 WHERE seq = 2")
    execute(store, "UPDATE audit_log SET seq = 2 WHERE seq = 100")
    assert problems(store, chain_key) == [(1, "reordered"), (2, "reordered")]


def test_edited_head_is_found(store: Store, chain_key: bytes):
    append(store, chain_key, 4)
    execute(store, "UPDATE audit_head SET entry_hash = :h", h="a" * 64)
    assert problems(store, chain_key) == [(4, "head-edited")]
    with store.sessions() as session:
        last = session.execute(sa.text("SELECT entry_hash FROM audit_log WHERE seq = 3")).scalar_one()
    execute(store, "UPDATE audit_head SET seq = 3, entry_hash = :h", h=last)  # rewound by one
    assert problems(store, chain_key) == [(3, "head-edited")]
    execute(store, "DELETE FROM audit_head")
    assert problems(store, chain_key) == [(4, "head-missing")]


def _run_cli(settings: ServiceSettings, *args: str, monkeypatch):
    monkeypatch.setenv("JPKI_DATABASE_URL", settings.resolved_database_url())
    monkeypatch.setenv("JPKI_DATA_KEY", DATA_KEY)
    return CliRunner().invoke(audit_app, ["verify", "--data", str(settings.data_dir), *args])


def test_cli_reports_intact_and_names_the_edited_entry(store: Store, chain_key: bytes, settings, monkeypatch):
    append(store, chain_key, 20)
    result = _run_cli(settings, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "audit trail intact: 20 entries" in result.output

    execute(store, "UPDATE audit_log SET action = 'nothing' WHERE seq = 17")
    result = _run_cli(settings, monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert "entry 17: edited" in result.output

    result = _run_cli(settings, "--json", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["ok"] is False and document["entries_checked"] == 20
    assert document["problems"] == [{"seq": 17, "kind": "edited", "detail": "its hash does not match its content"}]


def test_cli_exits_2_when_the_trail_cannot_be_read(tmp_path, monkeypatch):
    for name in ("JPKI_DATABASE_URL", "JPKI_DATA_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(audit_app, ["verify", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2, result.output
    assert "no service store in" in result.output  # a wrong --data: nothing is made there (issue 14, item 8)
    assert not (tmp_path / "empty").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "service.sqlite3").touch()  # a database file, but no tables in it
    result = CliRunner().invoke(audit_app, ["verify", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2, result.output
    assert "no key file" in result.output and "wrong --data folder" in result.output
    assert not (tmp_path / "empty" / "data-key").exists()  # a read-only command makes no key
    monkeypatch.setenv("JPKI_DATA_KEY", "00" * 32)
    monkeypatch.setenv("JPKI_PERSON_KEY", "11" * 32)
    result = CliRunner().invoke(audit_app, ["verify", "--data", str(tmp_path / "empty")])
    assert result.exit_code == 2, result.output
    assert "cannot read the audit trail" in result.output


def test_concurrent_appends_make_one_gap_free_chain(store: Store, chain_key: bytes):
    threads_count, per_thread = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def worker(number: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                with store.transaction() as session:
                    record(session, chain_key, f"operator:t{number}", "note", None, {"thread": number, "n": n})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    report = verify(store, chain_key)
    assert report.ok, report.problems
    assert report.entries_checked == threads_count * per_thread
    with store.sessions() as session:
        seqs = session.execute(sa.text("SELECT seq FROM audit_log ORDER BY seq")).scalars().all()
    assert seqs == list(range(1, threads_count * per_thread + 1))
