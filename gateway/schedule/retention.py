"""Retention: what the gateway keeps only for a while, deleted per tenant.

- **dedupe keys**: :func:`gateway.store.dedupe.prune` for each of the tenant's scopes (its own
  age and size bounds; a scope's seeding marker is never dropped);
- **idempotency answers** older than :data:`gateway.store.idempotency.RETENTION` (24 hours:
  after that a key counts as absent anyway);
- **done deliveries** last updated more than ``done_retention_days`` ago (a process setting,
  ``GATEWAY_DONE_RETENTION_DAYS``). A done row is also what makes planning the same record
  version again a duplicate (its idempotency key), so the setting is kept well above any time
  in which the same version may be planned again. Pending, dead and cancelled rows are kept.

Every query names the tenant. Deletes go in chunks of :data:`CHUNK` rows, each in its own short
transaction, so retention never holds SQLite's writer for long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select

from gateway.model import utc
from gateway.store import db, dedupe, idempotency
from gateway.store.tables import dedupe_keys, deliveries, idempotency_keys
from gateway.store.types import utcnow

CHUNK = 1_000


def _prune_dedupe(engine: Engine, tenant_id: str, now: datetime) -> int:
    with engine.connect() as conn:
        scopes = list(conn.execute(select(dedupe_keys.c.scope).distinct()
                                   .where(dedupe_keys.c.tenant_id == tenant_id)).scalars())
    gone = 0
    for scope in scopes:
        with db.write_transaction(engine) as conn:
            gone += dedupe.prune(conn, tenant_id, scope, now=now)
    return gone


def _prune_idempotency(engine: Engine, tenant_id: str, now: datetime) -> int:
    t = idempotency_keys.c
    cutoff = now - idempotency.RETENTION
    gone = 0
    while True:
        with db.write_transaction(engine) as conn:
            keys = list(conn.execute(select(t.key).where(t.tenant_id == tenant_id,
                                                         t.created_at < cutoff)
                                     .limit(CHUNK)).scalars())
            if keys:
                gone += conn.execute(delete(idempotency_keys).where(
                    t.tenant_id == tenant_id, t.key.in_(keys))).rowcount
        if len(keys) < CHUNK:
            return gone


def _prune_done_deliveries(engine: Engine, tenant_id: str, cutoff: datetime) -> int:
    d = deliveries.c
    gone = 0
    while True:
        with db.write_transaction(engine) as conn:
            ids = list(conn.execute(select(d.id).where(d.tenant_id == tenant_id,
                                                       d.status == "done",
                                                       d.updated_at < cutoff)
                                    .order_by(d.id).limit(CHUNK)).scalars())
            if ids:
                gone += conn.execute(delete(deliveries).where(
                    d.tenant_id == tenant_id, d.id.in_(ids), d.status == "done")).rowcount
        if len(ids) < CHUNK:
            return gone


def run_retention(engine: Engine, tenant_id: str, *, now: datetime | None = None,
                  done_retention_days: float = 14.0) -> dict[str, Any]:
    """Delete the tenant's expired rows; how many of each kind went."""
    now = utc(now) or utcnow()
    return {
        "dedupe_keys": _prune_dedupe(engine, tenant_id, now),
        "idempotency_keys": _prune_idempotency(engine, tenant_id, now),
        "deliveries": _prune_done_deliveries(engine, tenant_id,
                                             now - timedelta(days=done_retention_days)),
    }
