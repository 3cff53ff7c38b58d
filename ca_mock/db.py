"""The CA's store: one SQLAlchemy engine, the declarative base and the UTC time type.

SQLite is the embedded default (WAL, so the HTTP server and the CLI can share the file);
PostgreSQL is supported through the same models. Status changes lock the certificate row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers itself).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import os
from pathlib import Path

from sqlalchemy import DateTime, Engine, create_engine, event, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator


class Base(DeclarativeBase):
    pass


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both databases (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the CA store")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect):  # type: ignore[override]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    """Now, to the second: certificates, CRLs and OCSP carry whole seconds."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _private_sqlite_file(url: str) -> None:
    """Create a SQLite file readable by its owner only (it holds keys): SQLite gives its WAL
    and shared-memory files the same mode."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed revocation survives a power cut, not only a process crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            # Let the "begin" hook below decide how each transaction starts.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            # Writers take the write lock up front (BEGIN IMMEDIATE) so that a read-then-write
            # never fails half-way with SQLITE_BUSY; readers stay DEFERRED and never wait.
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # At least as many connections as request threads (anyio's default, 40, in the CA; the service caps
    # its threads at JPKI_REQUEST_THREADS, 10), so a request never waits for a connection while holding a
    # thread; PostgreSQL's own limit is the one to watch (docs/scaling.md).
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=25)


def create_schema(engine: Engine) -> None:
    # Import the model modules so every table is registered on Base.metadata.
    from ca_mock.authorities import models as _a  # noqa: F401
    from ca_mock.certificates import models as _c  # noqa: F401
    from ca_mock.crl import models as _r  # noqa: F401
    from ca_mock.ocsp import models as _o  # noqa: F401
    from ca_mock.operations import models as _p  # noqa: F401

    Base.metadata.create_all(engine)


class DriverQuery:
    """A read defined with SQLAlchemy Core, compiled once, run on a pooled driver connection.

    For the two hot reads (an OCSP answer, a CRL's entries), SQLAlchemy's per-execution work
    costs far more than the query: ~230 us against ~20 us per OCSP look-up, most of a 1M-entry
    CRL's read time (docs/benchmarks.md). Results come back as the driver gives them.
    """

    def __init__(self, engine: Engine, statement) -> None:
        # Constants in the statement are bound parameters whose values the compiled form holds
        # (an IN over constants is not: it expands at execution; write it as ORed equalities).
        compiled = statement.compile(dialect=engine.dialect)
        self._engine = engine
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        # (_check=False: the caller's parameters have no value yet; they come with each run.)
        self._constants = dict(compiled.construct_params(_check=False))

    @contextmanager
    def _cursor(self, given: dict):
        params = {**self._constants, **given}
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(self._sql, tuple(params[k] for k in self._order) if self._order else params)
            yield cursor
            cursor.close()
            connection.rollback()  # end the driver's implicit read transaction, if it opened one
        finally:
            connection.close()  # back to the pool

    def rows(self, batch: int = 1000, **params) -> Iterator[tuple]:
        with self._cursor(params) as cursor:
            while chunk := cursor.fetchmany(batch):
                yield from chunk

    def first(self, **params) -> tuple | None:
        with self._cursor(params) as cursor:
            return cursor.fetchone()


class Store:
    """The engine plus a session factory; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A read-write transaction; commits on success, rolls back on any exception."""
        with self.engine.connect() as connection:
            connection.execution_options(write=True)
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                yield session

    def dispose(self) -> None:
        self.engine.dispose()
