"""The CA's store under Alembic (ca_mock/migrations, ca_mock.db.migrate), and the one CRL publisher's table.

On both databases: an empty store is made at head and matches the models; a store made the old way (the
schema ``create_all`` made, which is revision 0001, with no version table; with or without the partition
tables) is taken over with its published CRLs moved into the one table and still served; concurrent
processes migrating one store take turns; concurrent publishers of one scope never share a CRL number.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography import x509

from ca_mock.certificates.schemas import IssueRequest
from ca_mock.certificates.service import change_status, issue_certificate
from ca_mock.certificates.status_rules import StatusAction
from ca_mock.crl.models import PublishedCRL
from ca_mock.crl.service import Publication, current_crl, publish
from ca_mock.db import VERSION_TABLE, Base, alembic_config, import_models, is_older_store, migrate
from ca_mock.settings import CASettings
from jpki_common.store import Store
from tests.helpers import issue_body

PARTITION_TABLES = ("certificate_partitions", "crl_partitions", "crl_partition_counters")


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _version(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _tables(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def _make_it_an_old_store(store: Store, drop: tuple[str, ...] = ()) -> None:
    """The schema create_all made before the migrations (revision 0001), no version table; ``drop``:
    tables a store made earlier still did not have."""
    command.downgrade(alembic_config(store.url), "0001")
    with store.engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
        for table in drop:
            connection.exec_driver_sql(f"DROP TABLE {table}")
    assert is_older_store(store.engine)


def test_an_empty_store_is_made_at_head_and_matches_the_models(store):
    assert _version(store) == _head() and not is_older_store(store.engine)
    migrate(store.url)  # a second start changes nothing
    assert _version(store) == _head()
    import_models()
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []
    assert "published_partition_crls" not in _tables(store)


@pytest.fixture
def published(store, ca_settings, hierarchy) -> dict[tuple[str, int | None, str], bytes]:
    """A revoked certificate in partition 0 of 'sign', and every CRL published: the stored DER by scope."""
    settings = ca_settings.model_copy(update={"crl_partition_size": 4})
    card = issue_certificate(store, settings, IssueRequest(**issue_body("card-signature", "card")))
    change_status(store, settings, card["serial"], StatusAction.REVOKE, "r", "keyCompromise")
    for name in ("root", "sign", "auth"):
        publish(store, settings, name, force=True)
    publish(store, settings, "sign", force=True, partition=0)
    with store.sessions() as session:
        return {(r.authority, r.partition, r.kind): r.der for r in session.scalars(sa.select(PublishedCRL))}


def test_a_store_made_the_old_way_keeps_its_crls_in_the_one_table(store, ca_settings, published):
    assert {scope for scope in published if scope[1] is not None} == {("sign", 0, "full"), ("sign", 0, "delta")}
    _make_it_an_old_store(store)
    with store.engine.connect() as connection:  # the old shape: two tables, the partition's rows apart
        old_whole = connection.execute(sa.text("SELECT authority, kind, der FROM published_crls")).all()
        old_parts = connection.execute(sa.text(
            "SELECT authority, partition, kind, der FROM published_partition_crls")).all()
    assert {(a, None, k): bytes(d) for a, k, d in old_whole} | {
        (a, p, k): bytes(d) for a, p, k, d in old_parts} == published

    migrate(store.url)
    assert _version(store) == _head() and "published_partition_crls" not in _tables(store)
    with store.sessions() as session:
        moved = {(r.authority, r.partition, r.kind): r.der for r in session.scalars(sa.select(PublishedCRL))}
    assert moved == published
    # Served as they were (nothing changed since, so nothing is published anew), by the one publisher.
    for (name, partition, kind), der in published.items():
        assert current_crl(store, ca_settings, name, kind, partition=partition).der == der
    crl = x509.load_der_x509_crl(current_crl(store, ca_settings, "sign", "full", partition=0).der)
    assert len(list(crl)) == 1
    # And publishing goes on in the one table: a new number for the partition, the others untouched.
    again = publish(store, ca_settings, "sign", force=True, partition=0)
    assert again is not None and again.number == crl.extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number + 1
    with store.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PublishedCRL)) == len(published)


def test_a_store_made_before_partitions_gets_their_tables(store, ca_settings, hierarchy):
    publish(store, ca_settings, "sign", force=True)
    _make_it_an_old_store(store, drop=("published_partition_crls", *PARTITION_TABLES))
    migrate(store.url)
    assert set(PARTITION_TABLES) <= _tables(store) and _version(store) == _head()
    card = issue_certificate(store, ca_settings, IssueRequest(**issue_body("card-signature", "card")))
    cert = x509.load_pem_x509_certificate(card["certificate_pem"].encode())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value.endswith("/crl/sign-p0.crl")
    assert current_crl(store, ca_settings, "sign", "full", partition=0).number == 1


@pytest.mark.parametrize("older", [False, True], ids=["empty", "older-store"])
def test_processes_migrating_one_store_at_once_take_turns(store, hierarchy, older):
    if older:
        _make_it_an_old_store(store)
    else:
        with store.engine.begin() as connection:  # empty it: every table and the version table gone
            metadata = sa.MetaData()
            metadata.reflect(connection)
            metadata.drop_all(connection)
    code = "import sys; from ca_mock.db import migrate; migrate(sys.argv[1])"
    processes = [subprocess.Popen([sys.executable, "-c", code, store.url], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    assert _version(store) == _head() and not is_older_store(store.engine)


def _at_once(count: int, action: Callable[[], Publication | None]) -> list[Publication | None]:
    results: list[Publication | None] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        results[index] = action()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("partition", [None, 0], ids=["whole-issuer", "partition"])
def test_concurrent_publishers_of_one_scope_never_share_a_number(store, ca_settings: CASettings, hierarchy,
                                                                 partition):
    issue_certificate(store, ca_settings, IssueRequest(**issue_body("card-signature", "card")))  # partition 0
    results = _at_once(6, lambda: publish(store, ca_settings, "sign", force=True, partition=partition))
    numbers = [r.number for r in results if r is not None]
    assert len(numbers) == 6 and len(set(numbers)) == 6, numbers
    with store.sessions() as session:
        rows = session.scalars(sa.select(PublishedCRL).where(
            PublishedCRL.authority == "sign", PublishedCRL.partition == partition)).all()
    assert sorted(r.kind for r in rows) == ["delta", "full"]  # one row per kind: the key held
    assert {r.number for r in rows} == {max(numbers)}  # the latest won
