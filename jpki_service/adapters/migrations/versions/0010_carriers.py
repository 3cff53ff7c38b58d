"""carriers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Reserved for issue 15 (carriers); filled in by the change that needs it.
"""
from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
