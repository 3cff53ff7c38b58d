"""The store helpers every part shares: one SQLAlchemy engine per database per process, the aware
UTC time type, the store's health, and a fast path for hot reads.

SQLite is the embedded default (WAL, so a server and a CLI can share the file; BEGIN IMMEDIATE
writers); PostgreSQL is the production store, through the same models. Each part keeps its own
declarative base and migrations (``ca_mock.db``, ``jpki_service.adapters.db``).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, DateTime, Dialect, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator

from jpki_common.private_files import private_folder

if TYPE_CHECKING:  # Alembic is loaded by the commands that migrate, not by every process that opens a store
    from alembic.config import Config as AlembicConfig

log = logging.getLogger("jpki_common.store")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both databases (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the CA store")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """Now, to the second: certificates, CRLs and OCSP carry whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (absolute), or None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


def _create_private_sqlite_file(path: Path) -> None:
    """Create a missing SQLite file readable by its owner only (it holds keys; SQLite gives its WAL and
    shared-memory files the same mode). An existing file is never opened here: closing any descriptor of
    a file drops every POSIX lock this process holds on it, and another process would then believe it is
    the database's last user and delete the WAL under us (SQLite's "How To Corrupt", section 2.2)."""
    private_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)  # a file this call created: no connection of this process can hold a lock on it


# One engine per database per process (see _create_private_sqlite_file): every Store of a URL shares it,
# and the health of that database as this process sees it.
_ENGINES: dict[str, tuple[Engine, StoreHealth]] = {}
_ENGINES_LOCK = threading.Lock()


def _shared_engine(url: str) -> tuple[Engine, StoreHealth]:
    path = sqlite_path(url)
    key = f"sqlite:{path}" if path is not None else url
    with _ENGINES_LOCK:
        shared = _ENGINES.get(key)
        if shared is None:
            if path is not None:
                _create_private_sqlite_file(path)
            engine, health = _new_engine(url), StoreHealth(path)
            event.listen(engine, "connect", lambda _connection, _record: health.remember_file())
            event.listen(engine, "handle_error", lambda context: health.note(context.original_exception))
            shared = _ENGINES[key] = (engine, health)
        return shared


def make_engine(url: str) -> Engine:
    """The process's engine for ``url``, made on first use."""
    return _shared_engine(url)[0]


def close_every_engine() -> None:
    """Close the pooled connections of every engine this process made: on SQLite the last connection to
    close folds the WAL into the store file (``jpki-ca init`` then leaves one whole ``ca.sqlite3``)."""
    with _ENGINES_LOCK:
        for engine, _health in _ENGINES.values():
            engine.dispose()


def _forget_engines_after_fork() -> None:
    # A forked child must not share its parent's connections: it makes its own on first use.
    _ENGINES.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _new_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed revocation survives a power cut, not only a process crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            # Let the "begin" hook below decide how each transaction starts.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:  # pragma: no cover - trivial
            # Writers take the write lock up front (BEGIN IMMEDIATE) so that a read-then-write
            # never fails half-way with SQLITE_BUSY; readers stay DEFERRED and never wait.
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # At least as many connections as request threads (anyio's default, 40, in the CA; the service caps
    # its threads at JPKI_REQUEST_THREADS, 10), so a request never waits for a connection while holding a
    # thread; PostgreSQL's own limit is the one to watch (docs/scaling.md).
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=25)


# SQLite result codes that mean the store itself is unusable (not merely busy): corrupt, not a database,
# an I/O error, read-only, cannot open, disk full.
_UNUSABLE_SQLITE_ERRORS = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR", "SQLITE_READONLY",
                           "SQLITE_CANTOPEN", "SQLITE_FULL")


class StoreHealth:
    """Whether this process's database is usable, for ``/healthz``.

    A SQLite store is unusable when its file is gone or was replaced since this process opened it, when a
    file of it (the database, its WAL or shared memory) was deleted while this process holds it open (its
    later commits would vanish at restart), when a statement failed with a SQLite error that says the store
    itself is broken, or when the integrity check failed. Busy databases and an unreachable PostgreSQL are
    not recorded: they pass, and a health probe's own read reports them while they last.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file when first opened
        self._failure: str | None = None

    def remember_file(self) -> None:
        if self.path is not None and self._identity is None:
            status = os.stat(self.path)
            self._identity = (status.st_dev, status.st_ino)

    def note(self, error: BaseException | None) -> None:
        """Record ``error`` if it says the store is broken (called for every failed statement)."""
        error = getattr(error, "orig", None) or error  # SQLAlchemy's wrapper: the driver's error inside
        name = getattr(error, "sqlite_errorname", "") or ""
        if name.startswith(_UNUSABLE_SQLITE_ERRORS) and self._failure is None:
            self._failure = f"a statement failed with {name}: {error}"
            log.error("the store %s is unusable: %s", self.path, self._failure)

    def check_integrity(self, engine: Engine) -> None:
        """SQLite's ``PRAGMA quick_check`` (O(size): run at start, not per probe)."""
        if self.path is None:
            return
        with engine.connect() as connection:
            result = connection.exec_driver_sql("PRAGMA quick_check").scalars().all()
        if result != ["ok"] and self._failure is None:
            self._failure = f"the integrity check failed: {'; '.join(map(str, result[:3]))}"
            log.error("the store %s is unusable: %s", self.path, self._failure)

    def problem(self) -> str | None:
        """Why the store is unusable, or None."""
        if self._failure is not None or self.path is None:
            return self._failure
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return f"the store file {self.path} is gone"
        if self._identity is not None and (status.st_dev, status.st_ino) != self._identity:
            return f"the store file {self.path} was replaced by another file while open"
        deleted = _deleted_while_open(self.path)
        if deleted:
            return (f"{', '.join(deleted)} deleted while this process holds it open: "
                    "commits would be lost at restart (was the file opened outside SQLite?)")
        return None


def _deleted_while_open(path: Path) -> list[str]:
    """This process's open descriptors of ``path`` and its -wal/-shm whose file was deleted (Linux /proc)."""
    folder = Path("/proc/self/fd")
    if not folder.is_dir():
        return []
    deleted = []
    for descriptor in folder.iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(path)) and target.endswith(" (deleted)"):
            deleted.append(target.removesuffix(" (deleted)"))
    return sorted(set(deleted))


class DriverQuery:
    """A read defined with SQLAlchemy Core, compiled once, run on a pooled driver connection.

    For the two hot reads (an OCSP answer, a CRL's entries), SQLAlchemy's per-execution work
    costs far more than the query: ~230 us against ~20 us per OCSP look-up, most of a 1M-entry
    CRL's read time (docs/benchmarks-history.md). Results come back as the driver gives them.
    """

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        # Constants in the statement are bound parameters whose values the compiled form holds
        # (an IN over constants is not: it expands at execution; write it as ORed equalities).
        # A SELECT compiles to an SQLCompiler, which knows its parameters' order and values.
        compiled = cast(SQLCompiler, statement.compile(dialect=engine.dialect))
        self._engine = engine
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        # (_check=False: the caller's parameters have no value yet; they come with each run.)
        self._constants: dict[str, Any] = dict(compiled.construct_params(_check=False))

    @contextmanager
    def _cursor(self, given: dict[str, Any]) -> Iterator[Any]:
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

    def rows(self, batch: int = 1000, **params: Any) -> Iterator[tuple[Any, ...]]:
        with self._cursor(params) as cursor:
            while chunk := cursor.fetchmany(batch):
                yield from chunk

    def first(self, **params: Any) -> tuple[Any, ...] | None:
        with self._cursor(params) as cursor:
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row


class Store:
    """The engine plus a session factory; one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine, self.health = _shared_engine(url)
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

    def problem(self) -> str | None:
        """Why the store is not usable, or None: the recorded state and a read made now (``/healthz``)."""
        recorded = self.health.problem()
        if recorded is not None:
            return recorded
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except DBAPIError as exc:
            return f"the store cannot be read: {exc.orig.__class__.__name__}: {exc.orig}"
        return None

    def dispose(self) -> None:
        self.engine.dispose()


def migrations_config(migrations: Path, database_url: str) -> AlembicConfig:
    """The Alembic configuration of one part's migrations folder for one database (no alembic.ini)."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))  # ConfigParser interpolation
    return config
