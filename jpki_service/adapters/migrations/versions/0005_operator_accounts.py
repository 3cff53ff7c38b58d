"""operator accounts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Operator accounts (issue 13, items 1 and 2):

- ``operators.must_change_password``: set by ``jpki-service operator reset-password``; a session of the
  account can only change the password until it is changed.
- ``operators.last_login_at``: shown by ``jpki-service operator list``.
- ``operators.failed_logins`` and ``operators.locked_until`` go: sign-ins are throttled (counters in
  ``attempt_counters``), never locked. Locks in force are dropped with them.
- ``operator_sources``: the addresses (HMACs of them) each account signed in from, where the right
  password is throttled only by that address's own failures.

Columns are added and dropped in place on both databases (SQLite since 3.35), never by rebuilding
``operators``, which ``operator_sessions`` references.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('operators', sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                         server_default=sa.false()))
    op.add_column('operators', sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True))
    for column in ('failed_logins', 'locked_until'):
        op.execute(f'ALTER TABLE operators DROP COLUMN {column}')
    op.create_table('operator_sources',
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], ),
    sa.PrimaryKeyConstraint('operator_id', 'source_hash')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('operator_sources')
    op.add_column('operators', sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('operators', sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
    for column in ('must_change_password', 'last_login_at'):
        op.execute(f'ALTER TABLE operators DROP COLUMN {column}')
