"""audit anchors

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

RFC 3161 anchors of the audit chain's head (issue 13, item 5).

"""
from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""


def downgrade() -> None:
    """Downgrade schema."""
