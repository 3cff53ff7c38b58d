"""one table for every published CRL: published_crls keyed by (authority, partition, kind)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

The whole-issuer CRLs (published_crls) and the partitions' (published_partition_crls) were two tables
of the same shape but one column. Now one: ``partition`` NULL is the issuer's whole CRL. The rows of
both move over; each keeps its number, times and DER.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "authority, kind, number, base_number, this_update, next_update, entries, der"
_WHOLE_ISSUER = sa.text("partition IS NULL")


def _published(with_partition: bool) -> list[sa.schema.SchemaItem]:
    """The columns of a table of published CRLs; ``with_partition``: the new one (NULL: whole issuer)."""
    return [
        sa.Column('authority', sa.String(length=32), nullable=False),
        *([sa.Column('partition', sa.Integer(), nullable=True)] if with_partition else []),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=True),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entries', sa.Integer(), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name']),
    ]


def upgrade() -> None:
    """Upgrade schema."""
    # The old table keeps its primary key's name (PostgreSQL) until dropped: the new key has its own.
    op.rename_table('published_crls', 'published_crls_0001')
    op.create_table(
        'published_crls',
        sa.Column('id', sa.Integer(), nullable=False),
        *_published(with_partition=True),
        sa.PrimaryKeyConstraint('id', name='pk_published_crls'),
    )
    op.create_index('ux_published_crls_scope', 'published_crls', ['authority', 'partition', 'kind'], unique=True)
    op.create_index('ux_published_crls_issuer', 'published_crls', ['authority', 'kind'], unique=True,
                    sqlite_where=_WHOLE_ISSUER, postgresql_where=_WHOLE_ISSUER)
    op.execute(f"INSERT INTO published_crls (partition, {_COLUMNS}) "
               f"SELECT NULL, {_COLUMNS} FROM published_crls_0001")
    op.execute(f"INSERT INTO published_crls (partition, {_COLUMNS}) "
               f"SELECT partition, {_COLUMNS} FROM published_partition_crls")
    op.drop_table('published_crls_0001')
    op.drop_table('published_partition_crls')


def downgrade() -> None:
    """Downgrade schema."""
    op.rename_table('published_crls', 'published_crls_0002')
    op.create_table('published_crls', *_published(with_partition=False), sa.PrimaryKeyConstraint('authority', 'kind'))
    op.create_table('published_partition_crls', *_published(with_partition=False),
                    sa.Column('partition', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('authority', 'partition', 'kind'))
    op.execute(f"INSERT INTO published_crls ({_COLUMNS}) "
               f"SELECT {_COLUMNS} FROM published_crls_0002 WHERE partition IS NULL")
    op.execute(f"INSERT INTO published_partition_crls (partition, {_COLUMNS}) "
               f"SELECT partition, {_COLUMNS} FROM published_crls_0002 WHERE partition IS NOT NULL")
    op.drop_table('published_crls_0002')
