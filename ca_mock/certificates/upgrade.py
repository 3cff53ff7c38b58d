"""Bringing a certificates table made before the one-key-one-certificate rule up to the model.

The CA's store was made by ``create_all`` before it had migrations, and ``create_all`` makes missing
tables, never missing columns: a store made before ``public_key_sha256`` existed gets the column here,
once, filled from each certificate's own key, then its unique index. ``ca_mock.db.migrate`` runs this on
such a store before Alembic's first revision (which has the column) takes the store over.
"""
from __future__ import annotations

from typing import cast

from cryptography import x509
from sqlalchemy import Connection, Engine, Table, bindparam, inspect, select, text, update

from ca_mock.certificates.models import IssuedCertificate
from jpki_common import keys

_TABLE = cast(Table, IssuedCertificate.__table__)  # a declarative model's table is a Table
_COLUMN = _TABLE.c.public_key_sha256
_UNIQUE_INDEX = next(index for index in _TABLE.indexes if index.name == "ux_certificates_public_key_sha256")


def _has_column(connection_or_engine: Connection | Engine) -> bool:
    columns = inspect(connection_or_engine).get_columns(_TABLE.name)
    return _COLUMN.name in {column["name"] for column in columns}


def add_public_key_fingerprints(engine: Engine) -> None:
    """Add and fill ``public_key_sha256`` where it is missing (nothing to do on a store made since).

    The earliest certificate of each key gets the key's fingerprint, so that key is refused from now
    on; a later certificate of the same key, issued before the rule, keeps an empty value (the unique
    index allows any number of those) and stays as it was."""
    if _has_column(engine):
        return
    with engine.connect() as connection:
        connection.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE, so upgraders take turns
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"LOCK TABLE {_TABLE.name} IN ACCESS EXCLUSIVE MODE"))
            if _has_column(connection):
                return  # another process upgraded the store while this one waited
            column_type = _COLUMN.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {_TABLE.name} ADD COLUMN {_COLUMN.name} {column_type}"))
            first_of_key: dict[str, str] = {}
            rows = connection.execute(select(_TABLE.c.serial, _TABLE.c.der)
                                      .order_by(_TABLE.c.not_before, _TABLE.c.serial)
                                      .execution_options(stream_results=True))
            for serial, der in rows:
                fingerprint = keys.public_key_fingerprint(x509.load_der_x509_certificate(der).public_key())
                first_of_key.setdefault(fingerprint, serial)
            if first_of_key:
                connection.execute(
                    update(_TABLE).where(_TABLE.c.serial == bindparam("certified_serial"))
                    .values({_COLUMN.name: bindparam("fingerprint")}),
                    [{"certified_serial": serial, "fingerprint": fingerprint}
                     for fingerprint, serial in first_of_key.items()],
                )
            _UNIQUE_INDEX.create(connection)
