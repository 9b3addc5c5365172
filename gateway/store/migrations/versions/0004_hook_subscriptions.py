"""REST-hook subscriptions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

``hook_subscriptions``: a Zapier REST-hook subscribe (event type, target URL, optional filter),
its signing secret encrypted (a Fernet token), and its failure run (``failing_since``).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gateway.store.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'hook_subscriptions',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('tenant_id', sa.String(length=40), nullable=False),
        sa.Column('event', sa.String(length=64), nullable=False),
        sa.Column('target_url', sa.Text(), nullable=False),
        sa.Column('filter', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                 'postgresql'), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('failing_since', gateway.store.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_hook_subscriptions_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hook_subscriptions')),
    )
    op.create_index('ix_hook_subscriptions_tenant_id_event_status', 'hook_subscriptions',
                    ['tenant_id', 'event', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_hook_subscriptions_tenant_id_event_status',
                  table_name='hook_subscriptions')
    op.drop_table('hook_subscriptions')
