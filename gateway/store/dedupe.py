"""One table of dedupe keys for every scope, bounded in size and age.

The first poll of a scope seeds (records every key, emits nothing), as Zapier does; later polls
return only keys not seen before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Iterable

from sqlalchemy import Connection, delete, select

from gateway.store.tables import dedupe_keys
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for

MAX_AGE = timedelta(days=30)
MAX_KEYS_PER_SCOPE = 10_000


def unseen(conn: Connection, tenant_id: str, scope: str, keys: Iterable[str]) -> list[str]:
    """Record ``keys`` and return those not seen before in this scope (all of them count as
    seen from now on). On a scope's first use nothing is returned: the first poll seeds."""
    keys = list(dict.fromkeys(keys))
    table = dedupe_keys
    first = conn.execute(select(table.c.key).where(
        table.c.tenant_id == tenant_id, table.c.scope == scope).limit(1)).first() is None
    known = set()
    if keys:
        known = set(conn.execute(select(table.c.key).where(
            table.c.tenant_id == tenant_id, table.c.scope == scope,
            table.c.key.in_(keys))).scalars())
    new = [k for k in keys if k not in known]
    now = utcnow()
    if new:
        stmt = insert_for(conn, table).values(
            [{"tenant_id": tenant_id, "scope": scope, "key": k, "seen_at": now} for k in new])
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "scope", "key"]))
        prune(conn, tenant_id, scope)  # the scope only grows when keys are added
    elif first:
        # An empty first poll still seeds the scope, so the next one emits.
        stmt = insert_for(conn, table).values(tenant_id=tenant_id, scope=scope, key="",
                                              seen_at=now)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "scope", "key"]))
    return [] if first else new


def prune(conn: Connection, tenant_id: str, scope: str) -> None:
    """Drop keys older than MAX_AGE, and the oldest beyond MAX_KEYS_PER_SCOPE."""
    table = dedupe_keys
    conn.execute(delete(table).where(table.c.tenant_id == tenant_id, table.c.scope == scope,
                                     table.c.seen_at < utcnow() - MAX_AGE, table.c.key != ""))
    cutoff = conn.execute(select(table.c.seen_at).where(
        table.c.tenant_id == tenant_id, table.c.scope == scope
    ).order_by(table.c.seen_at.desc()).offset(MAX_KEYS_PER_SCOPE).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delete(table).where(table.c.tenant_id == tenant_id,
                                         table.c.scope == scope, table.c.seen_at <= cutoff,
                                         table.c.key != ""))
