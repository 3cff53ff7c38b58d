"""carriers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

The carrier's lost-phone report (issue 15, item 2; docs/carriers.md):

- ``carriers``: one row per carrier: its name, its OAuth2 client id, its client secret as an argon2id
  hash, disabled or not.
- ``carrier_tokens``: the access tokens it obtained, as SHA-256 hashes, until they expire.
- ``carrier_reports``: one row per (carrier, case number): the kind and how many registrations it put on
  hold. Never the subscriber's items.

New tables only, on both databases.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('carriers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_report_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('carrier_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('carrier_id', sa.Integer(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['carrier_id'], ['carriers.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    op.create_index(op.f('ix_carrier_tokens_carrier_id'), 'carrier_tokens', ['carrier_id'], unique=False)
    op.create_index(op.f('ix_carrier_tokens_expires_at'), 'carrier_tokens', ['expires_at'], unique=False)
    op.create_table('carrier_reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('carrier_id', sa.Integer(), nullable=False),
    sa.Column('case_number', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('suspended', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['carrier_id'], ['carriers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('carrier_id', 'case_number')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('carrier_reports')
    op.drop_index(op.f('ix_carrier_tokens_expires_at'), table_name='carrier_tokens')
    op.drop_index(op.f('ix_carrier_tokens_carrier_id'), table_name='carrier_tokens')
    op.drop_table('carrier_tokens')
    op.drop_table('carriers')
