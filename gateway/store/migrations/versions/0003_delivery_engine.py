"""delivery engine: record keys, sent markers and the indexes the worker reads

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

``deliveries.record_key``: the record's key at the service, which coalesces a pending row with
a newer version of the same record. ``deliveries.sent_at``: when the service accepted the
payload of a write that is not idempotent there (Rejoiner's convert), so a resend after a crash
is recognised. Indexes for coalescing, erasure (by subject), expired leases, and
the worker's choice and claim of due rows.
"""
import sqlalchemy as sa
from alembic import op

import gateway.store.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('sent_at', gateway.store.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index('ix_deliveries_tenant_id_connector_operation_record_key',
                              ['tenant_id', 'connector', 'operation', 'record_key'],
                              unique=False)
        batch_op.create_index('ix_deliveries_tenant_id_subject_id',
                              ['tenant_id', 'subject_id'], unique=False)
        batch_op.create_index('ix_deliveries_status_lease_expires_at',
                              ['status', 'lease_expires_at'], unique=False)
        batch_op.create_index('ix_deliveries_claim',
                              ['status', 'tenant_id', 'connector', 'operation', 'priority',
                               'id', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_claim')
        batch_op.drop_index('ix_deliveries_status_lease_expires_at')
        batch_op.drop_index('ix_deliveries_tenant_id_subject_id')
        batch_op.drop_index('ix_deliveries_tenant_id_connector_operation_record_key')
        batch_op.drop_column('sent_at')
        batch_op.drop_column('record_key')
