"""Alembic environment of the lifecycle service (``jpki-service migrate``)."""
from __future__ import annotations

from alembic import context
from jpki_common.store import make_engine
from jpki_service.db import Base, import_models

import_models()
config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # The shared engine setup: SQLite files are created owner-only, as for the running service.
    connectable = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with connectable.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
