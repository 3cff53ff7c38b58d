"""initial schema: the CA's store as create_all made it before the migrations (public_key_sha256 included)

Revision ID: 0001
Revises:
Create Date: 2026-12-07

A store made before the migrations holds some or all of these tables, in this shape (ca_mock.db.migrate
first adds the one column create_all never added, certificates.public_key_sha256): this revision makes
the tables it lacks and leaves the others as they are. On an empty store it makes them all.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create_missing(name: str, *columns: sa.schema.SchemaItem,
                    indexes: Sequence[tuple[str, list[str], bool]] = ()) -> None:
    """Create table ``name`` and its indexes, unless an older store already has it."""
    if name in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(name, *columns)
    for index, index_columns, unique in indexes:
        op.create_index(index, name, index_columns, unique=unique)


def upgrade() -> None:
    """Upgrade schema."""
    _create_missing(
        'authorities',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('parent', sa.String(length=32), nullable=True),
        sa.Column('certificate_der', sa.LargeBinary(), nullable=False),
        sa.Column('private_key_pem', sa.LargeBinary(), nullable=False),
        sa.Column('crl_number', sa.Integer(), nullable=False),
        sa.Column('crl_dirty', sa.Boolean(), nullable=False),
        sa.Column('delta_base_number', sa.Integer(), nullable=True),
        sa.Column('delta_base_time', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['parent'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('name'),
    )
    _create_missing(
        'ca_meta',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    _create_missing(
        'operations',
        sa.Column('operation_id', sa.String(length=128), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('result', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('operation_id'),
    )
    _create_missing(
        'certificates',
        sa.Column('serial', sa.String(length=40), nullable=False),
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('profile', sa.String(length=32), nullable=False),
        sa.Column('card_serial', sa.String(length=40), nullable=True),
        sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
        sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('invalidity_date', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('crl_entry_der', sa.LargeBinary(), nullable=True),
        sa.Column('public_key_sha256', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('serial'),
        indexes=[
            ('ix_certificates_authority_changed', ['authority', 'status_changed_at'], False),
            ('ix_certificates_authority_status', ['authority', 'status'], False),
            ('ix_certificates_card_serial', ['card_serial'], False),
            ('ux_certificates_public_key_sha256', ['public_key_sha256'], True),
        ],
    )
    _create_missing(
        'crl_partition_counters',
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('open_partition', sa.Integer(), nullable=False),
        sa.Column('assigned', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('authority'),
    )
    _create_missing(
        'crl_partitions',
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('partition', sa.Integer(), nullable=False),
        sa.Column('crl_number', sa.Integer(), nullable=False),
        sa.Column('dirty', sa.Boolean(), nullable=False),
        sa.Column('delta_base_number', sa.Integer(), nullable=True),
        sa.Column('delta_base_time', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('authority', 'partition'),
    )
    _create_missing(
        'published_crls',
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=True),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entries', sa.Integer(), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('authority', 'kind'),
    )
    _create_missing(
        'published_partition_crls',
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('partition', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('base_number', sa.Integer(), nullable=True),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entries', sa.Integer(), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['authority'], ['authorities.name'], ),
        sa.PrimaryKeyConstraint('authority', 'partition', 'kind'),
    )
    _create_missing(
        'certificate_partitions',
        sa.Column('serial', sa.String(length=40), nullable=False),
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('partition', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['serial'], ['certificates.serial'], ),
        sa.PrimaryKeyConstraint('serial'),
        indexes=[
            ('ix_certificate_partitions_authority_partition', ['authority', 'partition'], False),
        ],
    )
    _create_missing(
        'certificate_status_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('serial', sa.String(length=40), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('operation_id', sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(['serial'], ['certificates.serial'], ),
        sa.PrimaryKeyConstraint('id'),
        indexes=[
            ('ix_certificate_status_events_serial', ['serial'], False),
        ],
    )
    _create_missing(
        'ocsp_responses',
        sa.Column('serial', sa.String(length=40), nullable=False),
        sa.Column('hash_algorithm', sa.String(length=8), nullable=False),
        sa.Column('authority', sa.String(length=32), nullable=False),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('der', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['serial'], ['certificates.serial'], ),
        sa.PrimaryKeyConstraint('serial', 'hash_algorithm'),
        indexes=[
            ('ix_ocsp_responses_next_update', ['next_update'], False),
        ],
    )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('ocsp_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocsp_responses_next_update'))

    op.drop_table('ocsp_responses')
    with op.batch_alter_table('certificate_status_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_status_events_serial'))

    op.drop_table('certificate_status_events')
    with op.batch_alter_table('certificate_partitions', schema=None) as batch_op:
        batch_op.drop_index('ix_certificate_partitions_authority_partition')

    op.drop_table('certificate_partitions')
    op.drop_table('published_partition_crls')
    op.drop_table('published_crls')
    op.drop_table('crl_partitions')
    op.drop_table('crl_partition_counters')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ux_certificates_public_key_sha256')
        batch_op.drop_index(batch_op.f('ix_certificates_card_serial'))
        batch_op.drop_index('ix_certificates_authority_status')
        batch_op.drop_index('ix_certificates_authority_changed')

    op.drop_table('certificates')
    op.drop_table('operations')
    op.drop_table('ca_meta')
    op.drop_table('authorities')
