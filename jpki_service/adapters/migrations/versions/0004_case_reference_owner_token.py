"""case reference and owner token

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Who may read a registration (issue 12, item 2):

- ``registrations.case_reference``: what staff, the audit trail and owner notices name a
  registration by; it unlocks nothing. Existing registrations get one here.
- ``registrations.owner_token_hash``: the SHA-256 of the owner token, the only thing besides a
  fresh device-key proof that reads a registration. Existing registrations have none until their
  phone asks for one with its device key (``POST /api/v1/registrations/{id}/owner-token``).
- ``owner_notifications.case_reference``: what a notice names the registration by (filled here for
  notices already queued).
- ``audit_log.registration_id`` becomes ``audit_log.case_reference``. The values are kept as they
  are (the chain's hashes cover them): entries written before this revision name the registration
  by its id.

"""
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As jpki_service.holder_data.new_case_reference at the time of writing (a migration never imports
# application code, which changes after it).
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _case_reference() -> str:
    code = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return "-".join(code[i:i + 4] for i in range(0, 12, 4))


def _add_required_text(table: str, column: str) -> None:
    """A NOT NULL column on a table with rows, without rebuilding the table (SQLite rebuilds a table to
    change a column, and cannot while other tables' foreign keys point at its rows): added with an
    empty default, filled by the caller, the default dropped where the database can (PostgreSQL)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column(column, sa.String(length=16), nullable=False, server_default=''))


def _drop_default(table: str, column: str) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column(table, column, server_default=None)


def _rename_audit_column(old: str, new: str) -> None:
    """Both databases rename a column in place (SQLite since 3.25): no rebuild of the chain's table."""
    op.drop_index(f'ix_audit_log_{old}', table_name='audit_log')
    op.execute(f'ALTER TABLE audit_log RENAME COLUMN {old} TO {new}')
    op.create_index(f'ix_audit_log_{new}', 'audit_log', [new], unique=False)


def upgrade() -> None:
    """Upgrade schema."""
    _add_required_text('registrations', 'case_reference')
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_token_hash', sa.String(length=64), nullable=True))
    registrations = sa.table('registrations', sa.column('id', sa.String), sa.column('case_reference', sa.String))
    connection = op.get_bind()
    for (registration_id,) in connection.execute(sa.select(registrations.c.id)).all():
        connection.execute(registrations.update().where(registrations.c.id == registration_id)
                           .values(case_reference=_case_reference()))
    _drop_default('registrations', 'case_reference')
    op.create_index('ix_registrations_case_reference', 'registrations', ['case_reference'], unique=True)

    _add_required_text('owner_notifications', 'case_reference')
    notifications = sa.table('owner_notifications', sa.column('registration_id', sa.String),
                             sa.column('case_reference', sa.String))
    connection.execute(notifications.update().values(case_reference=sa.select(registrations.c.case_reference).where(
        registrations.c.id == notifications.c.registration_id).scalar_subquery()))
    _drop_default('owner_notifications', 'case_reference')

    _rename_audit_column('registration_id', 'case_reference')


def downgrade() -> None:
    """Downgrade schema."""
    _rename_audit_column('case_reference', 'registration_id')
    op.drop_index('ix_registrations_case_reference', table_name='registrations')
    for table, column in (('owner_notifications', 'case_reference'), ('registrations', 'case_reference'),
                          ('registrations', 'owner_token_hash')):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column}')  # in place on both (SQLite since 3.35)
