"""The inbox: every accepted webhook post, committed before its answer.

:func:`accept` writes one row (:func:`accept_many` several, in one statement: the group commit
of :mod:`gateway.webhooks.commit`). The row's unique (tenant, webhook-id)
IS the redelivery dedupe: a post and its id are recorded together or not at all, so a crash
can never leave an id marked seen whose post was not stored. A repeated id inserts nothing and
is answered as a duplicate. The drainer (:mod:`gateway.webhooks.drain`) ingests pending rows;
an ingested row keeps its id (and what it stored) but not its body, which is cleared (the
ingested records hold the data now; the inbox does not keep a second copy of personal data).
A row that cannot be ingested is ``dead`` with its reason, and is listed, never dropped.

Every query takes the tenant, except the drainer's choice of the next pending row
(:func:`next_pending`), which serves every tenant and returns only the row's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Sequence

from sqlalchemy import Connection, bindparam, delete, func, select, tuple_

from gateway.store.tables import webhook_inbox
from gateway.store.types import utcnow

STATES = ("pending", "done", "dead")
#: Ingested rows (and so their webhook-ids) are kept at least this long.
RETENTION_DAYS = 7


@dataclass(frozen=True)
class Accepted:
    """What :func:`accept` did: ``entry_id`` is the inbox row (the new one, or the one an
    earlier post with the same webhook-id made, then ``duplicate``)."""

    entry_id: int
    duplicate: bool
    state: str


@dataclass(frozen=True)
class InboxEntry:
    id: int
    tenant_id: str
    webhook_id: str
    topic: str
    format: str
    body: str
    received_at: datetime
    state: str
    attempts: int
    reason: str | None
    result: Any
    finished_at: datetime | None


def _entry(row: Any) -> InboxEntry:
    return InboxEntry(row.id, row.tenant_id, row.webhook_id, row.topic, row.format, row.body,
                      row.received_at, row.state, row.attempts, row.reason, row.result,
                      row.finished_at)


def accept(conn: Connection, tenant_id: str, webhook_id: str, topic: str, fmt: str,
           body: str, *, received_at: datetime | None = None) -> Accepted:
    """Store the post as pending, unless the tenant already has ``webhook_id``."""
    return accept_many(conn, [NewPost(tenant_id, webhook_id, topic, fmt, body,
                                      received_at or utcnow())])[0]


@dataclass(frozen=True)
class NewPost:
    """A post to store (see :func:`accept_many`)."""

    tenant_id: str
    webhook_id: str
    topic: str
    format: str
    body: str = field(repr=False)
    received_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return self.tenant_id, self.webhook_id


#: The columns :func:`accept_many` writes, in its statement's order.
_POST_COLUMNS = ("tenant_id", "webhook_id", "topic", "format", "body", "received_at")
#: The most posts one statement of :func:`accept_many` inserts (6 parameters each, far below
#: SQLite's and PostgreSQL's limits on a statement's parameters).
MAX_ROWS_A_STATEMENT = 500


@lru_cache(maxsize=64)
def _accept_many_sql(paramstyle: str, rows: int) -> str:
    """The multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING of ``rows`` posts, in the
    driver's own parameter style."""
    mark = "?" if paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(_POST_COLUMNS)) + ", 'pending', 0)"
    return (f"INSERT INTO {webhook_inbox.name} ({', '.join(_POST_COLUMNS)}, state, attempts) "
            f"VALUES {', '.join([row] * rows)} ON CONFLICT (tenant_id, webhook_id) DO NOTHING "
            "RETURNING id, tenant_id, webhook_id")


_TIME_BINDERS: dict[str, Any] = {}


def _time_binder(dialect: Any) -> Any:
    """``received_at``'s bind processing on ``dialect`` (UTCDateTime's, then the driver
    type's), taken from the column's type once per dialect."""
    found = _TIME_BINDERS.get(dialect.name)
    if found is None:
        column_type = webhook_inbox.c.received_at.type
        found = column_type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        _TIME_BINDERS[dialect.name] = found
    return found


def _insert_posts(conn: Connection, posts: Sequence[NewPost]) -> dict[tuple[str, str], int]:
    """Insert ``posts`` (as pending) where their webhook-id is new; the new rows' ids by key.

    The accept path's hot statement, so it is SQL built once per row count and executed as
    the driver's (:meth:`~sqlalchemy.engine.Connection.exec_driver_sql`: no compiling, no
    processing of each parameter set; its errors are still SQLAlchemy's)."""
    bind_time, made = _time_binder(conn.dialect), {}
    for start in range(0, len(posts), MAX_ROWS_A_STATEMENT):
        chunk = posts[start:start + MAX_ROWS_A_STATEMENT]
        values: list[Any] = []
        for p in chunk:
            values += (p.tenant_id, p.webhook_id, p.topic, p.format, p.body,
                       bind_time(p.received_at))
        rows = conn.exec_driver_sql(_accept_many_sql(conn.dialect.paramstyle, len(chunk)),
                                    tuple(values))
        for entry_id, tenant_id, webhook_id in rows:
            made[(tenant_id, webhook_id)] = int(entry_id)
    return made


def accept_many(conn: Connection, posts: Sequence[NewPost]) -> list[Accepted]:
    """:func:`accept` for several posts at once, in one INSERT (and one SELECT for those whose
    webhook-id was already stored); what became of each, in order. Of two posts in ``posts``
    with the same tenant and webhook-id, the first is stored and the second is its duplicate."""
    if not posts:
        return []
    made = _insert_posts(conn, posts)
    missing = {p.key for p in posts} - made.keys()
    earlier: dict[tuple[str, str], tuple[int, str]] = {}
    if missing:
        found = conn.execute(select(webhook_inbox.c.id, webhook_inbox.c.state,
                                    webhook_inbox.c.tenant_id, webhook_inbox.c.webhook_id)
                             .where(tuple_(webhook_inbox.c.tenant_id,
                                           webhook_inbox.c.webhook_id).in_(sorted(missing))))
        earlier = {(r.tenant_id, r.webhook_id): (int(r.id), r.state) for r in found}
    answers, first = [], set()
    for post in posts:
        if post.key in made:
            answers.append(Accepted(made[post.key], post.key in first, "pending"))
            first.add(post.key)
        else:
            entry_id, state = earlier[post.key]
            answers.append(Accepted(entry_id, True, state))
    return answers


def get_entry(conn: Connection, tenant_id: str, entry_id: int) -> InboxEntry | None:
    row = conn.execute(select(webhook_inbox).where(webhook_inbox.c.tenant_id == tenant_id,
                                                   webhook_inbox.c.id == entry_id)).first()
    return None if row is None else _entry(row)


def list_entries(conn: Connection, tenant_id: str, *, state: str | None = None,
                 limit: int = 100, before: int | None = None) -> list[InboxEntry]:
    """The tenant's entries, newest first (``before``: ids below it, to page back)."""
    query = select(webhook_inbox).where(webhook_inbox.c.tenant_id == tenant_id)
    if state is not None:
        query = query.where(webhook_inbox.c.state == state)
    if before is not None:
        query = query.where(webhook_inbox.c.id < before)
    rows = conn.execute(query.order_by(webhook_inbox.c.id.desc()).limit(limit))
    return [_entry(row) for row in rows]


def has_pending(conn: Connection) -> bool:
    """Whether any tenant has a pending row (a plain read; the drainer's idle check)."""
    return conn.execute(select(webhook_inbox.c.id).where(
        webhook_inbox.c.state == "pending").limit(1)).first() is not None


def newest_id(conn: Connection) -> int | None:
    """The newest row's id, of any tenant (a plain read: has anything arrived since?)."""
    return conn.execute(select(func.max(webhook_inbox.c.id))).scalar()


def next_pending(conn: Connection) -> tuple[int, str] | None:
    """The oldest pending row of any tenant, locked for this transaction on PostgreSQL
    (``FOR UPDATE SKIP LOCKED``: two drainers never take the same row); on SQLite the caller's
    transaction holds the write lock already (``BEGIN IMMEDIATE``). Returns (id, tenant)."""
    query = (select(webhook_inbox.c.id, webhook_inbox.c.tenant_id)
             .where(webhook_inbox.c.state == "pending").order_by(webhook_inbox.c.id).limit(1))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    return None if row is None else (int(row.id), row.tenant_id)


def next_pending_batch(conn: Connection, limit: int) -> tuple[str, list[InboxEntry]] | None:
    """The oldest pending row (as :func:`next_pending`) and up to ``limit - 1`` more pending
    rows of the same tenant after it, oldest first, locked likewise: (tenant, entries). One
    tenant a batch, so a drainer takes tenants' event locks one at a time, never two at once."""
    first = next_pending(conn)
    if first is None:
        return None
    entry_id, tenant_id = first
    query = (select(webhook_inbox).where(webhook_inbox.c.tenant_id == tenant_id,
                                         webhook_inbox.c.state == "pending",
                                         webhook_inbox.c.id >= entry_id)
             .order_by(webhook_inbox.c.id).limit(max(1, limit)))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return tenant_id, [_entry(row) for row in conn.execute(query)]


_DONE_MANY = webhook_inbox.update().where(
    webhook_inbox.c.tenant_id == bindparam("tenant"),
    webhook_inbox.c.id == bindparam("entry")).values(
    state="done", body="", result=bindparam("stored", type_=webhook_inbox.c.result.type),
    reason=None, finished_at=bindparam("finished", type_=webhook_inbox.c.finished_at.type),
    attempts=webhook_inbox.c.attempts + 1)


def mark_done_many(conn: Connection, tenant_id: str, done: Sequence[tuple[int, Any]], *,
                   now: datetime | None = None) -> None:
    """Ingested, for several of the tenant's entries ``(entry_id, result)`` in one
    executemany: each body is cleared, what was stored kept."""
    if done:
        finished = now or utcnow()
        conn.execute(_DONE_MANY, [{"tenant": tenant_id, "entry": entry_id, "stored": result,
                                   "finished": finished} for entry_id, result in done])


def mark_done(conn: Connection, tenant_id: str, entry_id: int, result: Any, *,
              now: datetime | None = None) -> None:
    """Ingested: the body is cleared, what was stored kept."""
    mark_done_many(conn, tenant_id, [(entry_id, result)], now=now)


def mark_failed(conn: Connection, tenant_id: str, entry_id: int, reason: str, *,
                dead: bool, now: datetime | None = None) -> bool:
    """Record a failed attempt on a pending row: ``dead`` with its reason, or still pending.
    False when the row was no longer pending (another drainer finished it)."""
    values: dict[str, Any] = {"reason": reason, "attempts": webhook_inbox.c.attempts + 1}
    if dead:
        values.update(state="dead", finished_at=now or utcnow())
    done = conn.execute(webhook_inbox.update().where(
        webhook_inbox.c.tenant_id == tenant_id, webhook_inbox.c.id == entry_id,
        webhook_inbox.c.state == "pending").values(**values))
    return done.rowcount == 1


def prune(conn: Connection, tenant_id: str, *, now: datetime | None = None,
          retention_days: int = RETENTION_DAYS) -> int:
    """Delete the tenant's ingested rows received more than ``retention_days`` ago (their
    webhook-ids are forgotten then); pending and dead rows are kept. Returns the count."""
    if retention_days < RETENTION_DAYS:
        raise ValueError(f"webhook-ids are kept at least {RETENTION_DAYS} days")
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    done = conn.execute(delete(webhook_inbox).where(
        webhook_inbox.c.tenant_id == tenant_id, webhook_inbox.c.state == "done",
        webhook_inbox.c.received_at < cutoff))
    return done.rowcount
