"""owner email

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Notices by e-mail (issue 15, item 4):

- ``registrations.email_sealed``: the owner's e-mail address for notices, sealed with AES-GCM under
  the holder-data key (``holder_data.seal_email``); null when the owner gave none.
- ``registrations.login_notices``: the owner asked to be told of each log-in with the phone's
  user-authentication certificate; false for every existing row.

Added and dropped in place on both databases (SQLite since 3.35), never by rebuilding ``registrations``.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('registrations', sa.Column('email_sealed', sa.Text(), nullable=True))
    op.add_column('registrations', sa.Column('login_notices', sa.Boolean(), server_default=sa.false(),
                                             nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute('ALTER TABLE registrations DROP COLUMN login_notices')
    op.execute('ALTER TABLE registrations DROP COLUMN email_sealed')
