"""approvals

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Pending approvals of the two-person rule (issue 13, item 4).

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('approvals',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('registration_id', sa.String(length=32), nullable=False),
    sa.Column('case_reference', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('request_json', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['registration_id'], ['registrations.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_approvals_registration_id', 'approvals', ['registration_id'], unique=False)
    op.create_index('ix_approvals_state', 'approvals', ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_approvals_state', table_name='approvals')
    op.drop_index('ix_approvals_registration_id', table_name='approvals')
    op.drop_table('approvals')
