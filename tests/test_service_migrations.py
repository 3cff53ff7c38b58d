"""The service's schema under Alembic (jpki_service/adapters/migrations), on both databases.

An empty database is made at head and matches the models; a database at revision 0003 holding a
registration, a queued notice and an audit entry is upgraded: the registration gets a case
reference (and no owner token until its phone proves its device key), the notice names the same
case reference, the audit entry keeps what it recorded (the chain still verifies); and back down. A
database at 0007 gets the rules its blind indexes were made under.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from jpki_service import holder_data
from jpki_service.adapters.db import Base, alembic_config, migrate
from jpki_service.approvals import models as _approvals  # noqa: F401
from jpki_service.audit import models as _audit  # noqa: F401  (each registers its tables, as the env does)
from jpki_service.ca_commands import models as _ca_commands  # noqa: F401
from jpki_service.carriers import models as _carriers  # noqa: F401
from jpki_service.challenges import models as _challenges  # noqa: F401
from jpki_service.notifications import models as _notifications  # noqa: F401
from jpki_service.operators import models as _operators  # noqa: F401
from jpki_service.rate_limits import models as _rate_limits  # noqa: F401
from jpki_service.registrations import models as _registrations  # noqa: F401


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_an_empty_database_is_made_at_head_and_matches_the_models(service_database_url):
    migrate(service_database_url)
    head = ScriptDirectory.from_config(alembic_config(service_database_url)).get_current_head()
    assert _revision(service_database_url) == head
    engine = sa.create_engine(service_database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name == "alembic_version")] == []


def test_registrations_of_revision_0003_get_case_references_and_notices_name_them(service_database_url):
    command.upgrade(alembic_config(service_database_url), "0003")
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    engine = sa.create_engine(service_database_url)
    try:
        with engine.begin() as connection:
            for registration_id in ("a" * 32, "b" * 32):
                connection.execute(sa.text(
                    "INSERT INTO registrations (id, state, person_key, card_serial, device_model, "
                    "device_public_key_pem, created_at, updated_at) VALUES (:id, 'active', 'k', 's', 'm', 'p', "
                    ":now, :now)"), {"id": registration_id, "now": now})
            connection.execute(sa.text(
                "INSERT INTO owner_notifications (registration_id, event, actor, created_at, state, attempts, "
                "next_attempt_at) VALUES (:id, 'suspended', 'operator', :now, 'pending', 0, :now)"),
                {"id": "a" * 32, "now": now})
            connection.execute(sa.text(
                "INSERT INTO audit_log (seq, at, actor, action, registration_id, details, prev_hash, entry_hash) "
                "VALUES (1, :now, 'operator:hana', 'suspend', :id, '{}', :zero, :zero)"),
                {"id": "a" * 32, "now": now, "zero": "0" * 64})

        migrate(service_database_url)

        with engine.connect() as connection:
            references = dict(connection.execute(sa.text("SELECT id, case_reference FROM registrations")).all())
            tokens = connection.execute(sa.text("SELECT owner_token_hash FROM registrations")).scalars().all()
            notice = connection.execute(sa.text("SELECT case_reference FROM owner_notifications")).scalar_one()
            audited = connection.execute(sa.text("SELECT case_reference FROM audit_log")).scalar_one()
        assert len(set(references.values())) == 2
        for reference in references.values():
            assert holder_data.normalise_case_reference(reference) == reference  # the stored, spoken form
        assert tokens == [None, None]  # until the phone proves its device key (POST .../owner-token)
        assert notice == references["a" * 32]
        assert audited == "a" * 32  # kept as recorded: the chain's hash covers it

        command.downgrade(alembic_config(service_database_url), "0003")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("registrations")}
            audit_columns = {c["name"] for c in sa.inspect(connection).get_columns("audit_log")}
        assert "case_reference" not in columns and "owner_token_hash" not in columns
        assert "registration_id" in audit_columns
    finally:
        engine.dispose()


def test_indexes_of_revision_0007_are_marked_as_made_under_the_first_rules(service_database_url):
    """0008 records the rules a blind index was made under: 1 for every index made before it (the service
    recomputes them at its start, registrations.service.reindex_holders), none where there is no index."""
    command.upgrade(alembic_config(service_database_url), "0007")
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    engine = sa.create_engine(service_database_url)
    try:
        with engine.begin() as connection:
            for registration_id, reference, index in (("a" * 32, "AAAA-AAAA-AAAA", "i" * 64),
                                                      ("b" * 32, "BBBB-BBBB-BBBB", None)):
                connection.execute(sa.text(
                    "INSERT INTO registrations (id, case_reference, state, person_key, card_serial, device_model, "
                    "device_public_key_pem, holder_index, created_at, updated_at) VALUES (:id, :reference, "
                    "'active', 'k', 's', 'm', 'p', :index, :now, :now)"),
                    {"id": registration_id, "reference": reference, "index": index, "now": now})

        migrate(service_database_url)

        with engine.connect() as connection:
            rules = dict(connection.execute(sa.text("SELECT id, holder_index_rules FROM registrations")).all())
            kept = connection.execute(sa.text("SELECT holder_index FROM registrations WHERE id = :id"),
                                      {"id": "a" * 32}).scalar_one()
        assert rules == {"a" * 32: 1, "b" * 32: None} and kept == "i" * 64

        command.downgrade(alembic_config(service_database_url), "0007")
        with engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("registrations")}
        assert "holder_index_rules" not in columns and "holder_index" in columns
    finally:
        engine.dispose()
