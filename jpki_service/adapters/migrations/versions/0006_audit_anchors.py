"""audit anchors

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

RFC 3161 anchors of the audit chain's head (issue 13, item 5).

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('audit_anchors',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('gen_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stamped', sa.LargeBinary(), nullable=False),
    sa.Column('token', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_anchors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_anchors_seq'), ['seq'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('audit_anchors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_anchors_seq'))

    op.drop_table('audit_anchors')
