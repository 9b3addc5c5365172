"""the pulls' per-destination diff: acknowledged payload hashes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09

``acknowledged_payloads``: per (tenant, connector, record key) the SHA-256 of the last payload
that destination acknowledged (gateway/pulls/acknowledged.py), and the customer it is about.
"""
import sqlalchemy as sa
from alembic import op

import gateway.store.types

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'acknowledged_payloads',
        sa.Column('tenant_id', sa.String(length=40), nullable=False),
        sa.Column('connector', sa.String(length=32), nullable=False),
        sa.Column('record_key', sa.String(length=200), nullable=False),
        sa.Column('customer_id', sa.String(length=200), nullable=True),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('acknowledged_at', gateway.store.types.UTCDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'],
                                name=op.f('fk_acknowledged_payloads_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('tenant_id', 'connector', 'record_key',
                                name=op.f('pk_acknowledged_payloads')),
    )
    op.create_index('ix_acknowledged_payloads_tenant_id_customer_id', 'acknowledged_payloads',
                    ['tenant_id', 'customer_id'])


def downgrade() -> None:
    op.drop_index('ix_acknowledged_payloads_tenant_id_customer_id',
                  table_name='acknowledged_payloads')
    op.drop_table('acknowledged_payloads')
