"""The gateway's tables (SQLAlchemy Core). Every row but a tenant's own belongs to one tenant.

Migrations in ``gateway/store/migrations`` create these; a change here needs a migration.
Money is stored as integer minor units beside its ISO 4217 currency.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store.types import BigId, Json, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def _tenant() -> Column:
    return Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False)


def _stamps() -> list[Column]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("settings", Json, nullable=False, default=dict),  # only the keys set explicitly
    *_stamps(),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    _tenant(),
    Column("prefix", String(24), nullable=False, unique=True),  # public, for lookup
    Column("key_hash", String(64), nullable=False),  # SHA-256 hex of the whole key
    Column("scope", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Index(None, "tenant_id"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(40), primary_key=True),
    _tenant(),
    Column("email", String(320)),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("phone", String(32)),
    Column("language", String(35)),
    Column("timezone", String(64)),
    Column("address", Json),
    Column("birthdate", Date),
    Column("gender", String(16)),
    Column("tags", Json, nullable=False, default=list),
    Column("metadata", Json, nullable=False, default=dict),
    # Consent: NULL is "not known".
    Column("consent_email", Boolean),
    Column("consent_sms", Boolean),
    Column("consent_whatsapp", Boolean),
    Column("consent_push", Boolean),
    Column("consent_gdpr", Boolean),
    Column("opted_in_at", UTCDateTime()),
    Column("unsubscribed_at", UTCDateTime()),
    # Aggregates the gateway computes from its own orders (base currency only).
    Column("order_count", Integer),
    Column("ltv_minor", BigInteger),
    Column("ltv_currency", String(3)),
    Column("first_order_at", UTCDateTime()),
    Column("last_order_at", UTCDateTime()),
    Column("typical_gap_days", Integer),
    # Aggregates a source reported (stand in where the gateway holds no orders).
    Column("reported_order_count", Integer),
    Column("reported_ltv_minor", BigInteger),
    Column("reported_ltv_currency", String(3)),
    Column("reported_first_order_at", UTCDateTime()),
    Column("reported_last_order_at", UTCDateTime()),
    Column("reported_cohort", String(7)),
    Column("acquisition_source", String(100)),
    # RFM, as computed by the gateway (or reported by RCI where marked by rfm_source).
    Column("recency_score", Integer),
    Column("frequency_score", Integer),
    Column("monetary_score", Integer),
    Column("rfm", Integer),
    Column("grade", String(1)),
    Column("segments", Json, nullable=False, default=list),
    Column("rfm_source", String(16)),
    # Engagement: the authority's values are in status/engagement_score; the gateway's own and
    # Rekindle's are kept side by side for comparison.
    Column("status", String(16)),
    Column("engagement_score", Integer),
    Column("status_changed_at", UTCDateTime()),
    Column("gateway_status", String(16)),
    Column("gateway_score", Integer),
    Column("rekindle_status", String(16)),
    Column("rekindle_score", Integer),
    Column("winback_started_at", UTCDateTime()),
    Column("winback_status", String(16)),  # the status when the win-back message started
    Column("returned_at", UTCDateTime()),
    Column("redacted_at", UTCDateTime()),
    Column("source", String(32)),
    *_stamps(),
    UniqueConstraint("tenant_id", "email"),
    Index(None, "tenant_id", "status"),
    Index(None, "tenant_id", "updated_at"),
)

customer_external_ids = Table(
    "customer_external_ids",
    metadata,
    _tenant(),
    Column("customer_id", String(40), ForeignKey("customers.id", ondelete="CASCADE"),
           nullable=False),
    Column("service", String(32), nullable=False),
    Column("external_id", String(200), nullable=False),
    UniqueConstraint("tenant_id", "service", "external_id"),
    UniqueConstraint("tenant_id", "service", "customer_id"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(40), primary_key=True),
    _tenant(),
    Column("external_id", String(200), nullable=False),  # the shop's order id
    Column("customer_id", String(40), ForeignKey("customers.id"), nullable=False),
    Column("placed_at", UTCDateTime(), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("source", String(32)),
    *_stamps(),
    UniqueConstraint("tenant_id", "external_id"),
    Index(None, "tenant_id", "customer_id", "placed_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(40), ForeignKey("orders.id", ondelete="CASCADE"),
           primary_key=True),
    Column("line_no", Integer, primary_key=True),
    _tenant(),
    Column("product_id", String(200)),
    Column("sku", String(200)),
    Column("name", String(500)),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("original_price_minor", BigInteger),
    Column("size", String(100)),
    Column("colour", String(100)),
    Column("brand", String(200)),
    Column("gift", Boolean, nullable=False, default=False),
)

products = Table(
    "products",
    metadata,
    _tenant(),
    Column("id", String(200), nullable=False),  # the shop's product id
    Column("name", String(500)),
    Column("taxonomy", Json, nullable=False, default=list),
    Column("offline_exclusive", Boolean, nullable=False, default=False),
    *_stamps(),
    UniqueConstraint("tenant_id", "id"),
)

variants = Table(
    "variants",
    metadata,
    _tenant(),
    Column("product_id", String(200), nullable=False),
    Column("id", String(200), nullable=False),
    Column("sku", String(200), nullable=False),
    Column("name", String(500)),
    Column("price_minor", BigInteger),
    Column("sale_price_minor", BigInteger),
    Column("currency", String(3)),
    Column("available", Boolean, nullable=False, default=True),
    Column("stock", Integer),
    Column("image", Text),
    Column("size", String(100)),
    Column("language", String(35)),
    Column("brand", String(200)),
    UniqueConstraint("tenant_id", "product_id", "id"),
    Index(None, "tenant_id", "sku"),
)

events = Table(
    "events",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),  # newest first = seq desc
    Column("id", String(40), nullable=False, unique=True),
    _tenant(),
    Column("type", String(40), nullable=False),
    Column("subject_id", String(200)),
    Column("item", Json, nullable=False),  # the flat trigger item, served as is
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("source", String(32)),
    # The customer the event is about (orders' events included): erasure finds them here.
    Column("customer_id", String(40)),
    Index(None, "tenant_id", "type", "seq"),
    Index(None, "tenant_id", "seq"),
    Index(None, "tenant_id", "customer_id"),
)

# Which trigger(s) an event belongs to, written with the event: a trigger page is one range of
# (tenant_id, trigger, seq), or of (tenant_id, trigger, status, seq) when narrowed by status.
# The ``events`` trigger (every event) reads the events table's own (tenant_id, seq) index.
event_triggers = Table(
    "event_triggers",
    metadata,
    Column("tenant_id", String(40), nullable=False),
    Column("trigger", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),  # events.seq
    Column("status", String(16)),  # customer-status: the status entered
    PrimaryKeyConstraint("tenant_id", "trigger", "seq"),
    Index(None, "tenant_id", "trigger", "status", "seq"),
)

# Idempotency-Key answers of the actions (gateway/store/idempotency.py).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    _tenant(),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # SHA-256 of method, path and body
    Column("state", String(16), nullable=False),  # running, done
    Column("token", String(40), nullable=False),  # the current claim's, for fencing
    Column("status_code", Integer),
    Column("response_body", Text),  # the answer's text, replayed as is
    Column("response_headers", Json),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("locked_until", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime()),
    UniqueConstraint("tenant_id", "key"),
    Index(None, "created_at"),
)

# Erased customers: hashes (never the plain values) of the email and of each external id, so a
# later import of that customer is refused (gateway/store/erasure.py).
tombstones = Table(
    "tombstones",
    metadata,
    _tenant(),
    Column("kind", String(16), nullable=False),  # email, external
    Column("hash", String(64), nullable=False),  # SHA-256 hex
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "kind", "hash"),
)

# Converted carts already recorded, so a resent conversion writes no second cart.converted.
cart_conversions = Table(
    "cart_conversions",
    metadata,
    _tenant(),
    Column("key", String(200), nullable=False),  # the order number, else a content hash
    Column("customer_id", String(40), nullable=False),
    Column("order_number", String(200)),
    Column("value_minor", BigInteger),
    Column("currency", String(3)),
    Column("converted_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "key"),
    Index(None, "tenant_id", "customer_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    _tenant(),
    Column("connector", String(32), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("subject_id", String(200)),  # e.g. the customer the payload is about
    Column("payload", Json, nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("priority", Integer, nullable=False, default=0),  # lower goes first
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempt", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_token", String(40)),
    Column("lease_expires_at", UTCDateTime()),
    Column("last_error", Text),
    *_stamps(),
    UniqueConstraint("tenant_id", "idempotency_key"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "tenant_id", "connector", "status"),
)

# The delivery engine's additions (migration 0003, gateway/relay/): ``record_key`` is the
# record's key at the service (an order id, an email), which coalesces a pending row with a newer
# version of the same record; ``sent_at`` is when the service accepted the row's payload, kept
# for writes that are not idempotent at the service (Rejoiner's convert), so that a resend after
# a crash between the send and its completion is recognised and not sent again.
deliveries.append_column(Column("record_key", String(200)))
deliveries.append_column(Column("sent_at", UTCDateTime()))
Index("ix_deliveries_tenant_id_connector_operation_record_key", deliveries.c.tenant_id,
      deliveries.c.connector, deliveries.c.operation, deliveries.c.record_key)
Index("ix_deliveries_tenant_id_subject_id", deliveries.c.tenant_id, deliveries.c.subject_id)
Index("ix_deliveries_status_lease_expires_at", deliveries.c.status,
      deliveries.c.lease_expires_at)
# What a worker reads to choose and claim: due rows per group and priority, oldest first.
Index("ix_deliveries_claim", deliveries.c.status, deliveries.c.tenant_id,
      deliveries.c.connector, deliveries.c.operation, deliveries.c.priority, deliveries.c.id,
      deliveries.c.next_attempt_at)

schedules = Table(
    "schedules",
    metadata,
    _tenant(),
    Column("route", String(64), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("next_run_at", UTCDateTime(), nullable=False),
    Column("last_run_at", UTCDateTime()),
    Column("lease_owner", String(100)),
    Column("lease_token", String(40)),
    Column("lease_expires_at", UTCDateTime()),
    UniqueConstraint("tenant_id", "route"),
    Index(None, "enabled", "next_run_at"),
)

dedupe_keys = Table(
    "dedupe_keys",
    metadata,
    _tenant(),
    Column("scope", String(100), nullable=False),  # e.g. "rekindle:customer-status"
    Column("key", String(200), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant_id", "scope", "key"),
    Index(None, "tenant_id", "scope", "seen_at"),
)

connections = Table(
    "connections",
    metadata,
    Column("id", String(40), primary_key=True),
    _tenant(),
    Column("connector", String(32), nullable=False),
    Column("name", String(100), nullable=False),
    Column("base_url", Text, nullable=False),
    Column("credentials", LargeBinary, nullable=False),  # MultiFernet token of a JSON object
    Column("options", Json, nullable=False, default=dict),
    *_stamps(),
    UniqueConstraint("tenant_id", "connector", "name"),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    _tenant(),
    Column("route", String(64), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(16), nullable=False),  # running, ok, failed
    Column("counts", Json, nullable=False, default=dict),
    Column("error", Text),
    Index(None, "tenant_id", "route", "started_at"),
)

# REST-hook subscriptions (migration 0004, gateway/hooks/): a Zapier subscribe. ``secret`` is the
# signing secret as a Fernet token (like connection credentials); ``failing_since`` is when the
# target's current run of failures began (cleared by a success), which disables it after days.
hook_subscriptions = Table(
    "hook_subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    _tenant(),
    Column("event", String(64), nullable=False),
    Column("target_url", Text, nullable=False),
    Column("filter", Json, nullable=False, default=dict),
    Column("secret", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False, default="active"),  # active, disabled
    Column("failing_since", UTCDateTime()),
    Column("last_error", Text),
    *_stamps(),
    Index(None, "tenant_id", "event", "status"),
)

# Inbound webhooks (migration 0004, gateway/webhooks/). A tenant's signing secrets, encrypted
# with the credential vault: the current one, and for a day after a rotation the previous one.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("tenant_id", String(40), ForeignKey("tenants.id"), primary_key=True),
    Column("current", LargeBinary, nullable=False),  # MultiFernet token of {"secret": ...}
    Column("previous", LargeBinary),
    Column("rotated_at", UTCDateTime()),
    *_stamps(),
)

# Accepted posts: one row per (tenant, webhook-id), written in one small transaction before the
# 202, so the webhook-id's dedupe is this unique constraint. ``state``: pending (not ingested
# yet), done (ingested; ``body`` cleared, ``result`` holds what was stored), dead (``reason``).
webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    _tenant(),
    Column("webhook_id", String(200), nullable=False),
    Column("topic", String(32), nullable=False),
    Column("format", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", Text),
    Column("result", Json),
    Column("finished_at", UTCDateTime()),
    UniqueConstraint("tenant_id", "webhook_id"),
    Index(None, "state", "id"),
    Index(None, "tenant_id", "state", "id"),
    Index(None, "tenant_id", "received_at"),
)

# The pulls' per-destination diff (migration 0006, gateway/pulls/acknowledged.py): the SHA-256 of
# the last payload each destination acknowledged for a record (a customer's profile write), by
# the record's key there; ``customer_id`` lets an erasure forget them all.
acknowledged_payloads = Table(
    "acknowledged_payloads",
    metadata,
    _tenant(),
    Column("connector", String(32), nullable=False),
    Column("record_key", String(200), nullable=False),
    Column("customer_id", String(200)),
    Column("digest", String(64), nullable=False),
    Column("acknowledged_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("tenant_id", "connector", "record_key"),
    Index(None, "tenant_id", "customer_id"),
)
