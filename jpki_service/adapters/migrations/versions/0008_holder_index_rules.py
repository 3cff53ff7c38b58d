"""holder index rules

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Era dates and spoken addresses (issue 14, items 3 and 4): the blind index of name + birth date +
address now spells an address's block numbers in the hyphen form (千代田一丁目1番 as 千代田1-1).

- ``registrations.holder_index_rules``: the rules a row's ``holder_index`` was made under. Rows
  with an index get 1 here, the rules they were made under. A migration gets only the database
  URL, never the data key, so it cannot recompute an index: the service does at its start, from the
  sealed signature certificate (``registrations/service.py``, ``reindex_holders``), and until then
  the call-centre search looks under both rules.

Added and dropped in place on both databases (SQLite since 3.35), never by rebuilding ``registrations``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('registrations', sa.Column('holder_index_rules', sa.Integer(), nullable=True))
    registrations = sa.table('registrations', sa.column('holder_index', sa.String),
                             sa.column('holder_index_rules', sa.Integer))
    op.execute(registrations.update().where(registrations.c.holder_index.is_not(None))
               .values(holder_index_rules=1))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute('ALTER TABLE registrations DROP COLUMN holder_index_rules')
