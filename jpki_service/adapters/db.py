"""The service's store: its own declarative base and Alembic migrations.

The engine setup (SQLite WAL with BEGIN IMMEDIATE writers, PostgreSQL pool) and the aware UTC
time type are the shared ones of :mod:`jpki_common.store`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import DeclarativeBase

from jpki_common.store import Store, UTCDateTime, migrations_config, utcnow

if TYPE_CHECKING:  # Alembic is loaded by the commands that migrate (serve, migrate), not by every store user
    from alembic.config import Config

__all__ = ["Base", "Store", "UTCDateTime", "utcnow", "migrate", "alembic_config"]


class Base(DeclarativeBase):
    pass


def alembic_config(database_url: str) -> Config:
    return migrations_config(Path(__file__).parent / "migrations", database_url)


def migrate(database_url: str) -> None:
    """Bring the database to the current schema (``jpki-service migrate``)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")
