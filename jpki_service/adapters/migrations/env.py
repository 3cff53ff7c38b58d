"""Alembic environment of the lifecycle service (``jpki-service migrate``).

An entry point (Alembic runs it), so it may see every room's tables: it registers them all on
``Base.metadata``.
"""
from __future__ import annotations

from alembic import context

from jpki_common.store import make_engine
from jpki_service.adapters.db import Base
from jpki_service.approvals import models as _approvals  # noqa: F401
from jpki_service.audit import models as _audit  # noqa: F401  (each registers its tables)
from jpki_service.ca_commands import models as _ca_commands  # noqa: F401
from jpki_service.carriers import models as _carriers  # noqa: F401
from jpki_service.challenges import models as _challenges  # noqa: F401
from jpki_service.notifications import models as _notifications  # noqa: F401
from jpki_service.operators import models as _operators  # noqa: F401
from jpki_service.rate_limits import models as _rate_limits  # noqa: F401
from jpki_service.registrations import models as _registrations  # noqa: F401

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # The shared engine setup: SQLite files are created owner-only, as for the running service.
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL: run the service's migrations through "
                           "jpki_service.adapters.db.migrate(url)")
    connectable = make_engine(url)
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
