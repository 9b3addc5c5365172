"""trigger memberships, events.customer_id, idempotency keys, tombstones, cart conversions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Existing events get their ``customer_id`` and their trigger memberships from what they hold
(the same rules as ``gateway.triggers``), so pages and erasure cover them too.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import gateway.store.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

# (trigger, event types, statuses or None): the rules of gateway.triggers at this revision.
_MEMBERSHIP = (
    ('customer-status', ('customer.status_changed',), ('at_risk', 'lapsed', 'lost')),
    ('customer-returned', ('customer.returned',), None),
    ('new-customer', ('customer.created',), None),
    ('new-order', ('order.placed',), None),
    ('consent-changed', ('customer.unsubscribed', 'customer.opted_in'), None),
)


def _field(dialect: str, name: str) -> str:
    if dialect == 'postgresql':
        return f"(item ->> '{name}')"
    return f"json_extract(item, '$.{name}')"


def _backfill() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    customer = _field(dialect, 'customer_id')
    bind.execute(sa.text(
        f"UPDATE events SET customer_id = COALESCE({customer}, "
        "CASE WHEN type LIKE 'customer.%' THEN subject_id END)"))
    status = _field(dialect, 'status')
    for trigger, types, statuses in _MEMBERSHIP:
        type_list = ', '.join(f"'{t}'" for t in types)
        where = f"type IN ({type_list})"
        if statuses:
            where += f" AND {status} IN ({', '.join(repr(s) for s in statuses)})"
        bind.execute(sa.text(
            "INSERT INTO event_triggers (tenant_id, \"trigger\", seq, status) "
            f"SELECT tenant_id, '{trigger}', seq, "
            f"{status if statuses else 'NULL'} FROM events WHERE {where}"))


def upgrade() -> None:
    op.create_table('event_triggers',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'trigger', 'seq', name=op.f('pk_event_triggers'))
    )
    with op.batch_alter_table('event_triggers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_triggers_tenant_id_trigger_status_seq'), ['tenant_id', 'trigger', 'status', 'seq'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('response_headers', _JSON, nullable=True),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', gateway.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_idempotency_keys_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_idempotency_keys_tenant_id_key'))
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)

    op.create_table('tombstones',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tombstones_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'kind', 'hash', name=op.f('uq_tombstones_tenant_id_kind_hash'))
    )
    op.create_table('cart_conversions',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=False),
    sa.Column('order_number', sa.String(length=200), nullable=True),
    sa.Column('value_minor', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('converted_at', gateway.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_cart_conversions_tenant_id_tenants')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_cart_conversions_tenant_id_key'))
    )
    with op.batch_alter_table('cart_conversions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cart_conversions_tenant_id_customer_id'), ['tenant_id', 'customer_id'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f('ix_events_tenant_id_customer_id'), ['tenant_id', 'customer_id'], unique=False)

    _backfill()


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_tenant_id_customer_id'))
        batch_op.drop_column('customer_id')

    with op.batch_alter_table('cart_conversions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cart_conversions_tenant_id_customer_id'))

    op.drop_table('cart_conversions')
    op.drop_table('tombstones')
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))

    op.drop_table('idempotency_keys')
    with op.batch_alter_table('event_triggers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_triggers_tenant_id_trigger_status_seq'))

    op.drop_table('event_triggers')
