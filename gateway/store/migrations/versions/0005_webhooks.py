"""inbound webhooks: signing secrets and the inbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``webhook_secrets``: a tenant's Standard Webhooks secrets, encrypted at rest (current, and the
previous one for a day after a rotation). ``webhook_inbox``: every accepted post, unique per
(tenant, webhook-id), ingested just after the answer by the drainer (gateway/webhooks/drain.py).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gateway.store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_secrets',
        sa.Column('tenant_id', sa.String(length=40), nullable=False),
        sa.Column('current', sa.LargeBinary(), nullable=False),
        sa.Column('previous', sa.LargeBinary(), nullable=True),
        sa.Column('rotated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_webhook_secrets_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_webhook_secrets')),
    )
    op.create_table(
        'webhook_inbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=True, nullable=False),
        sa.Column('tenant_id', sa.String(length=40), nullable=False),
        sa.Column('webhook_id', sa.String(length=200), nullable=False),
        sa.Column('topic', sa.String(length=32), nullable=False),
        sa.Column('format', sa.String(length=32), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('received_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('result', sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
        sa.Column('finished_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_webhook_inbox_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_inbox')),
        sa.UniqueConstraint('tenant_id', 'webhook_id',
                            name=op.f('uq_webhook_inbox_tenant_id_webhook_id')),
    )
    op.create_index('ix_webhook_inbox_state_id', 'webhook_inbox', ['state', 'id'])
    op.create_index('ix_webhook_inbox_tenant_id_state_id', 'webhook_inbox',
                    ['tenant_id', 'state', 'id'])
    op.create_index('ix_webhook_inbox_tenant_id_received_at', 'webhook_inbox',
                    ['tenant_id', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_webhook_inbox_tenant_id_received_at', table_name='webhook_inbox')
    op.drop_index('ix_webhook_inbox_tenant_id_state_id', table_name='webhook_inbox')
    op.drop_index('ix_webhook_inbox_state_id', table_name='webhook_inbox')
    op.drop_table('webhook_inbox')
    op.drop_table('webhook_secrets')
