"""Alembic environment of the mock CA's store (``ca_mock.db.migrate``).

Every CA process runs the migrations at start (``jpki-ca`` commands, each server worker), so the
whole run is one transaction that takes the database's write lock first: ``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL. A second process waits, then finds the
store at head and does nothing.
"""
from __future__ import annotations

from alembic import context

from ca_mock.db import VERSION_TABLE, Base, import_models
from jpki_common.store import make_engine

import_models()
config = context.config
target_metadata = Base.metadata
# Any fixed number, the same in every CA process: the key of PostgreSQL's advisory lock.
_MIGRATION_LOCK = 0x4A504B49_4341  # "JPKICA"


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # The shared engine: SQLite files are created owner-only, as for the running CA.
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL: run the CA's migrations through ca_mock.db.migrate(url)")
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE, so migrating processes take turns
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            # The transaction is ours (alembic sees it and opens none): all revisions or none.
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              version_table=VERSION_TABLE, transactional_ddl=True)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
