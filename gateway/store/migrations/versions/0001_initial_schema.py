"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gateway.store.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('prefix', sa.String(length=24), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('connections',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('connector', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('base_url', sa.Text(), nullable=False),
    sa.Column('credentials', sa.LargeBinary(), nullable=False),
    sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_connections_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections')),
    sa.UniqueConstraint('tenant_id', 'connector', 'name', name=op.f('uq_connections_tenant_id_connector_name'))
    )
    op.create_table('customers',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('language', sa.String(length=35), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('address', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('birthdate', sa.Date(), nullable=True),
    sa.Column('gender', sa.String(length=16), nullable=True),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('consent_email', sa.Boolean(), nullable=True),
    sa.Column('consent_sms', sa.Boolean(), nullable=True),
    sa.Column('consent_whatsapp', sa.Boolean(), nullable=True),
    sa.Column('consent_push', sa.Boolean(), nullable=True),
    sa.Column('consent_gdpr', sa.Boolean(), nullable=True),
    sa.Column('opted_in_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('unsubscribed_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('order_count', sa.Integer(), nullable=True),
    sa.Column('ltv_minor', sa.BigInteger(), nullable=True),
    sa.Column('ltv_currency', sa.String(length=3), nullable=True),
    sa.Column('first_order_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_order_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('typical_gap_days', sa.Integer(), nullable=True),
    sa.Column('reported_order_count', sa.Integer(), nullable=True),
    sa.Column('reported_ltv_minor', sa.BigInteger(), nullable=True),
    sa.Column('reported_ltv_currency', sa.String(length=3), nullable=True),
    sa.Column('reported_first_order_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reported_last_order_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reported_cohort', sa.String(length=7), nullable=True),
    sa.Column('acquisition_source', sa.String(length=100), nullable=True),
    sa.Column('recency_score', sa.Integer(), nullable=True),
    sa.Column('frequency_score', sa.Integer(), nullable=True),
    sa.Column('monetary_score', sa.Integer(), nullable=True),
    sa.Column('rfm', sa.Integer(), nullable=True),
    sa.Column('grade', sa.String(length=1), nullable=True),
    sa.Column('segments', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('rfm_source', sa.String(length=16), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('engagement_score', sa.Integer(), nullable=True),
    sa.Column('status_changed_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('gateway_status', sa.String(length=16), nullable=True),
    sa.Column('gateway_score', sa.Integer(), nullable=True),
    sa.Column('rekindle_status', sa.String(length=16), nullable=True),
    sa.Column('rekindle_score', sa.Integer(), nullable=True),
    sa.Column('winback_started_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('winback_status', sa.String(length=16), nullable=True),
    sa.Column('returned_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redacted_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=True),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_customers_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('tenant_id', 'email', name=op.f('uq_customers_tenant_id_email'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customers_tenant_id_status'), ['tenant_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_customers_tenant_id_updated_at'), ['tenant_id', 'updated_at'], unique=False)

    op.create_table('dedupe_keys',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('scope', sa.String(length=100), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('seen_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_dedupe_keys_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'scope', 'key', name=op.f('uq_dedupe_keys_tenant_id_scope_key'))
    )
    with op.batch_alter_table('dedupe_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dedupe_keys_tenant_id_scope_seen_at'), ['tenant_id', 'scope', 'seen_at'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('connector', sa.String(length=32), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('lease_expires_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_deliveries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_deliveries_tenant_id_idempotency_key'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_status_next_attempt_at'), ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_tenant_id_connector_status'), ['tenant_id', 'connector', 'status'], unique=False)

    op.create_table('events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('subject_id', sa.String(length=200), nullable=True),
    sa.Column('item', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_events')),
    sa.UniqueConstraint('id', name=op.f('uq_events_id'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_tenant_id_seq'), ['tenant_id', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_tenant_id_type_seq'), ['tenant_id', 'type', 'seq'], unique=False)

    op.create_table('products',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('taxonomy', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('offline_exclusive', sa.Boolean(), nullable=False),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_products_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_products_tenant_id_id'))
    )
    op.create_table('schedules',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('interval_seconds', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('next_run_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('lease_expires_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_schedules_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'route', name=op.f('uq_schedules_tenant_id_route'))
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedules_enabled_next_run_at'), ['enabled', 'next_run_at'], unique=False)

    op.create_table('sync_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('started_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_sync_runs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs'))
    )
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_runs_tenant_id_route_started_at'), ['tenant_id', 'route', 'started_at'], unique=False)

    op.create_table('variants',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('product_id', sa.String(length=200), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('price_minor', sa.BigInteger(), nullable=True),
    sa.Column('sale_price_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('available', sa.Boolean(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('image', sa.Text(), nullable=True),
    sa.Column('size', sa.String(length=100), nullable=True),
    sa.Column('language', sa.String(length=35), nullable=True),
    sa.Column('brand', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_variants_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'product_id', 'id', name=op.f('uq_variants_tenant_id_product_id_id'))
    )
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_variants_tenant_id_sku'), ['tenant_id', 'sku'], unique=False)

    op.create_table('customer_external_ids',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_external_ids_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_customer_external_ids_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'service', 'customer_id', name=op.f('uq_customer_external_ids_tenant_id_service_customer_id')),
    sa.UniqueConstraint('tenant_id', 'service', 'external_id', name=op.f('uq_customer_external_ids_tenant_id_service_external_id'))
    )
    op.create_table('orders',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('placed_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cancelled', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=True),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_orders_customer_id_customers')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_orders_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('tenant_id', 'external_id', name=op.f('uq_orders_tenant_id_external_id'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_tenant_id_customer_id_placed_at'), ['tenant_id', 'customer_id', 'placed_at'], unique=False)

    op.create_table('order_lines',
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('product_id', sa.String(length=200), nullable=True),
    sa.Column('sku', sa.String(length=200), nullable=True),
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('original_price_minor', sa.BigInteger(), nullable=True),
    sa.Column('size', sa.String(length=100), nullable=True),
    sa.Column('colour', sa.String(length=100), nullable=True),
    sa.Column('brand', sa.String(length=200), nullable=True),
    sa.Column('gift', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_lines_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_order_lines_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('order_id', 'line_no', name=op.f('pk_order_lines'))
    )


def downgrade() -> None:
    op.drop_table('order_lines')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_tenant_id_customer_id_placed_at'))

    op.drop_table('orders')
    op.drop_table('customer_external_ids')
    with op.batch_alter_table('variants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_variants_tenant_id_sku'))

    op.drop_table('variants')
    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_runs_tenant_id_route_started_at'))

    op.drop_table('sync_runs')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedules_enabled_next_run_at'))

    op.drop_table('schedules')
    op.drop_table('products')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_tenant_id_type_seq'))
        batch_op.drop_index(batch_op.f('ix_events_tenant_id_seq'))

    op.drop_table('events')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_tenant_id_connector_status'))
        batch_op.drop_index(batch_op.f('ix_deliveries_status_next_attempt_at'))

    op.drop_table('deliveries')
    with op.batch_alter_table('dedupe_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dedupe_keys_tenant_id_scope_seen_at'))

    op.drop_table('dedupe_keys')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_tenant_id_updated_at'))
        batch_op.drop_index(batch_op.f('ix_customers_tenant_id_status'))

    op.drop_table('customers')
    op.drop_table('connections')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant_id'))

    op.drop_table('api_keys')
    op.drop_table('tenants')
