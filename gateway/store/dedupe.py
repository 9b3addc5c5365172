"""One table of dedupe keys for every scope, bounded in size and age.

The first poll of a scope seeds (records every key, emits nothing), as Zapier does; later polls
return only keys not seen before.

How it stays correct:

- **New is decided by the insert itself.** Keys go in with ``INSERT ... ON CONFLICT DO NOTHING
  RETURNING key``: a key is new exactly when this call's insert created its row. Two pollers of
  one scope at once cannot both emit a key (on PostgreSQL the second insert waits for the first
  transaction and then finds the row; SQLite has one writer at a time).
- **The first poll is decided the same way.** A marker row (the empty key) is inserted with
  ``ON CONFLICT DO NOTHING``; the poll whose insert created it, in a scope that held no keys,
  seeds. A concurrent second first-poll finds the marker and emits only what the seeder did not
  record.
- **Seen again means fresh again.** Every key listed by a poll has its ``seen_at`` moved to now,
  so the age bound drops only keys that stopped appearing, never ones still being listed.
- **Bounds never wipe a scope.** Keys older than :data:`MAX_AGE` go; beyond
  :data:`MAX_KEYS_PER_SCOPE`, the oldest go first, and the keys of the current poll are never
  among them (a poll listing more keys than the bound keeps all of its own). The marker is never
  pruned, so a scope never silently re-seeds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import Connection, and_, delete, func, select, update

from gateway.store.tables import dedupe_keys
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for

MAX_AGE = timedelta(days=30)
MAX_KEYS_PER_SCOPE = 10_000
MARKER = ""  # the row that says a scope has been seeded; never pruned
_CHUNK = 1_000  # rows per statement: well inside SQLite's bound-variable limit

_T = dedupe_keys
_INDEX = ["tenant_id", "scope", "key"]


def _scope(tenant_id: str, scope: str):  # noqa: ANN202 - a SQL expression
    return and_(_T.c.tenant_id == tenant_id, _T.c.scope == scope)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _insert_new(conn: Connection, tenant_id: str, scope: str, keys: Sequence[str],
                now: datetime) -> set[str]:
    """Insert ``keys``; returns those whose row this call created."""
    created: set[str] = set()
    for chunk in _chunks(keys):
        stmt = insert_for(conn, _T).values(
            [{"tenant_id": tenant_id, "scope": scope, "key": k, "seen_at": now} for k in chunk])
        stmt = stmt.on_conflict_do_nothing(index_elements=_INDEX).returning(_T.c.key)
        created.update(conn.execute(stmt).scalars())
    return created


def _refresh(conn: Connection, tenant_id: str, scope: str, keys: Sequence[str],
             now: datetime) -> None:
    for chunk in _chunks(keys):
        conn.execute(update(_T).where(_scope(tenant_id, scope), _T.c.key.in_(list(chunk)),
                                      _T.c.seen_at < now).values(seen_at=now))


def _claim_first_poll(conn: Connection, tenant_id: str, scope: str, now: datetime) -> bool:
    """True when this call seeds the scope: it created the marker and the scope held no keys."""
    stmt = insert_for(conn, _T).values(tenant_id=tenant_id, scope=scope, key=MARKER,
                                       seen_at=now)
    stmt = stmt.on_conflict_do_nothing(index_elements=_INDEX).returning(_T.c.key)
    if conn.execute(stmt).first() is None:
        return False
    # A scope recorded before markers existed holds keys but no marker: it is not new.
    held = conn.execute(select(_T.c.key).where(_scope(tenant_id, scope), _T.c.key != MARKER)
                        .limit(1)).first()
    return held is None


def unseen(conn: Connection, tenant_id: str, scope: str, keys: Iterable[str]) -> list[str]:
    """Record ``keys`` and return those not seen before in this scope, in the order given (all
    of them count as seen from now on). On a scope's first use nothing is returned: the first
    poll seeds. Runs in the caller's transaction; see the module docstring for why concurrent
    pollers never both emit a key."""
    keys = [k for k in dict.fromkeys(keys) if k != MARKER]
    now = utcnow()
    first = _claim_first_poll(conn, tenant_id, scope, now)
    created = _insert_new(conn, tenant_id, scope, keys, now) if keys else set()
    known = [k for k in keys if k not in created]
    if known:
        _refresh(conn, tenant_id, scope, known, now)
    if created:
        prune(conn, tenant_id, scope, now=now)  # the scope only grows when keys are added
    return [] if first else [k for k in keys if k in created]


def prune(conn: Connection, tenant_id: str, scope: str, *, now: datetime | None = None) -> int:
    """Drop keys not seen for MAX_AGE, then the oldest beyond MAX_KEYS_PER_SCOPE, never a key
    seen at ``now`` (the current poll's) and never the marker. Returns how many went."""
    now = now or utcnow()
    gone = conn.execute(delete(_T).where(_scope(tenant_id, scope), _T.c.key != MARKER,
                                         _T.c.seen_at < now - MAX_AGE)).rowcount
    held = conn.execute(select(func.count()).select_from(_T).where(
        _scope(tenant_id, scope), _T.c.key != MARKER)).scalar_one()
    excess = held - MAX_KEYS_PER_SCOPE
    if excess > 0:
        oldest = (select(_T.c.key).where(_scope(tenant_id, scope), _T.c.key != MARKER,
                                         _T.c.seen_at < now)
                  .order_by(_T.c.seen_at, _T.c.key).limit(excess))
        victims = list(conn.execute(oldest).scalars())
        for chunk in _chunks(victims):
            gone += conn.execute(delete(_T).where(_scope(tenant_id, scope),
                                                  _T.c.key.in_(list(chunk)))).rowcount
    return gone
