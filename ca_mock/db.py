"""The CA's store: its declarative base and its schema. The engine, the UTC time type and the
store's health are the shared ones of :mod:`jpki_common.store`.

Status changes lock the certificate row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers itself).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import DeclarativeBase

from jpki_common.store import make_engine, migrations_config


class Base(DeclarativeBase):
    pass


VERSION_TABLE = "ca_alembic_version"  # not alembic_version: the service's store may share the database


def import_models() -> None:
    """Register every table on ``Base.metadata`` (for Alembic)."""
    from ca_mock.authorities import models as _a  # noqa: F401
    from ca_mock.certificates import models as _c  # noqa: F401
    from ca_mock.crl import models as _r  # noqa: F401
    from ca_mock.ocsp import models as _o  # noqa: F401
    from ca_mock.operations import models as _p  # noqa: F401


def alembic_config(database_url: str) -> Config:
    return migrations_config(Path(__file__).parent / "migrations", database_url)


def is_older_store(engine: Engine) -> bool:
    """A store made before the CA had migrations (by ``create_all``): its tables, no version table."""
    tables = set(inspect(engine).get_table_names())
    return "certificates" in tables and VERSION_TABLE not in tables


def migrate(database_url: str) -> None:
    """Bring the CA's store to the current schema: made if empty, upgraded if older (every CA start).

    A store made before the migrations first gets the one column ``create_all`` never added
    (``public_key_sha256``), then revision 0001 makes the tables it lacks (0001 is the schema of those
    days) and the later revisions run as on any store."""
    from ca_mock.certificates.upgrade import add_public_key_fingerprints

    if is_older_store(make_engine(database_url)):
        add_public_key_fingerprints(make_engine(database_url))
    command.upgrade(alembic_config(database_url), "head")
