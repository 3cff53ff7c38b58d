"""The privacy scan: where a holder's items could lie in the service's store, and a search for them.

What it looks for, per holder: the name (whole and each part), the address (whole and without its
number), the owner's e-mail address if given (whole and its local part), the date of birth as ISO
(1990-01-02) and as a certificate writes it (19900102); each as UTF-8, as a DER UTF8String (tag 0x0C,
length, bytes) and as a JSON ``\\uXXXX`` escape. Every base64 run (a PEM body, a JSON-escaped PEM, a
base64 field) is decoded at each alignment and searched too: a certificate stored in clear is base64,
and its subjectAltName holds the items in DER. The gender (one digit) cannot be searched meaningfully.

Database files are read by another process (``cat``), never opened in the test process: closing any
descriptor of a file drops every POSIX lock this process holds on it, a store's included.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}(?:(?:\r?\n|\\r\\n|\\n)[A-Za-z0-9+/]{4,})*={0,2}")


@dataclass(frozen=True)
class Holder:
    name: str
    birth: str  # YYYY-MM-DD
    address: str
    email: str | None = None  # the notice address the owner gave (sealed at rest, never in clear)


def needles(holders: Iterable[Holder]) -> dict[bytes, str]:
    """Every byte form of every holder's items, each with what it is."""
    found: dict[bytes, str] = {}
    for holder in holders:
        items = {f"name {holder.name!r}": holder.name, f"address {holder.address!r}": holder.address,
                 f"birth date {holder.birth}": holder.birth, f"birth date {holder.birth} as YYYYMMDD":
                     holder.birth.replace("-", "")}
        items.update({f"name part {part!r}": part for part in holder.name.split()})
        if holder.email:
            items[f"e-mail {holder.email!r}"] = holder.email
            items[f"e-mail's local part {holder.email.partition('@')[0]!r}"] = holder.email.partition("@")[0]
        street = re.sub(r"[0-9０-９\-‐－ー丁目番地号 ]+$", "", holder.address)
        if street and street != holder.address:
            items[f"address without its number {street!r}"] = street
        for label, item in items.items():
            raw = item.encode()
            found[raw] = label
            found[bytes([0x0C, len(raw)]) + raw] = f"{label} (DER UTF8String)"
            escaped = json.dumps(item)[1:-1].encode()
            if escaped != raw:
                found[escaped] = f"{label} (JSON escape)"
    return found


def _decoded_runs(blob: bytes) -> Iterator[bytes]:
    for run in _BASE64_RUN.finditer(blob):
        text = re.sub(rb"\\r|\\n|\s", b"", run.group()).rstrip(b"=")
        for skip in range(4):
            part = text[skip:]
            part = part[:len(part) - len(part) % 4]
            if part:
                try:
                    yield base64.b64decode(part)
                except (binascii.Error, ValueError):
                    continue


def findings(where: str, blob: bytes, holder_needles: dict[bytes, str]) -> list[str]:
    """What of the holders' items ``blob`` holds, in clear or inside base64 (each: what, where, around)."""
    out = []
    for layer, data in [("", blob), *((" (inside base64)", d) for d in _decoded_runs(blob))]:
        for needle, label in holder_needles.items():
            at = data.find(needle)
            if at >= 0:
                around = data[max(0, at - 40):at + len(needle) + 40]
                out.append(f"{label} in {where}{layer}: {around!r}")
    return out


def read_file(path: Path) -> bytes:
    """A file's bytes, read by another process (see the module)."""
    if not path.is_file():
        return b""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True, timeout=60).stdout


_SQLITE_DUMP = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
out = sys.stdout.buffer
for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
    for row in db.execute(f'SELECT * FROM "{table}"'):
        for value in row:
            if isinstance(value, str):
                out.write(value.encode() + b"\\n")
            elif isinstance(value, bytes):
                out.write(value + b"\\n")
db.close()
"""


def sqlite_values(database: Path) -> bytes:
    """Every text and blob value of every table of a SQLite database, read by another process."""
    return subprocess.run([sys.executable, "-c", _SQLITE_DUMP, str(database)], capture_output=True, check=True,
                          timeout=120).stdout


def postgresql_values(url: str) -> dict[str, bytes]:
    """Every text, JSON and bytea value of every table in the database's schema, per column."""
    engine = sa.create_engine(url)
    values: dict[str, bytes] = {}
    try:
        with engine.connect() as connection:
            columns = connection.execute(sa.text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND data_type IN "
                "('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY', 'USER-DEFINED')"
                " ORDER BY table_name, column_name")).all()
            for table, column, kind in columns:
                expression = f'"{column}"' if kind == "bytea" else f'"{column}"::text'
                rows = connection.execute(sa.text(f'SELECT {expression} FROM "{table}"')).scalars().all()
                values[f"PostgreSQL {table}.{column}"] = b"\n".join(
                    bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in rows if v is not None)
    finally:
        engine.dispose()
    return values


def service_sources(database_url: str, data_dir: Path, logs: Iterable[Path]) -> dict[str, bytes]:
    """What the lifecycle service keeps: its database (SQLite: the file, -wal, -shm, -journal and every
    table's values; PostgreSQL: every table's values), every file in its data folder (notices, keys) and
    its logs. The CA's store is not the service's: as the CA it holds the certificates by design."""
    sources: dict[str, bytes] = {}
    if database_url.startswith("sqlite"):
        database = Path(database_url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm", "-journal"):
            sources[f"{database.name}{suffix}"] = read_file(Path(f"{database}{suffix}"))
        if database.is_file():
            sources[f"{database.name} tables"] = sqlite_values(database)
    else:
        sources.update(postgresql_values(database_url))
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        sources[f"service data {path.relative_to(data_dir)}"] = read_file(path)
    for log in logs:
        sources[f"log {log.name}"] = read_file(log)
    return sources


def scan(sources: dict[str, bytes], holders: Iterable[Holder]) -> list[str]:
    holder_needles = needles(holders)
    return [finding for where, blob in sources.items() for finding in findings(where, blob, holder_needles)]
