"""Events: what happened to a tenant's data, each with its flat trigger item stored as JSON.

Events are append-only. ``seq`` orders them (newest first is ``seq`` descending); ``id`` is the
stable, unique id Zapier dedupes on. Each event is written with the triggers it belongs to
(``event_triggers``, from the one table in :mod:`gateway.triggers`) and the customer it is
about (``customer_id``: the subject of ``customer.*`` events, the item's ``customer_id`` for
order, cart and consent events), so a trigger page is one index range and erasure finds every
event about a customer by index.

Why a cursor walk never misses an event (concurrent writers): within a tenant, ``seq`` order is
commit order. Every writer goes through :func:`append_events`, which first takes the tenant's
event lock (:func:`lock_tenant_events`) and only then allocates the seqs; the lock is held to
the end of the transaction. On PostgreSQL that is ``pg_advisory_xact_lock`` on the tenant, so a
transaction that allocates a smaller seq has committed (or rolled back) before any other
transaction of the tenant can allocate a larger one; on SQLite a writer holds the database's
one write lock from its first write to its commit, and the lock is taken by a write. Hence, in
any snapshot a reader takes, the tenant's visible events are exactly those up to some seq (bar
the gaps of rolled-back transactions, which never reappear): an event that commits later always
has a seq above every event already seen. A client that keeps the newest seq (id) it has seen
as a high-water mark and walks ``next_before`` pages down to it sees every event exactly once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, bindparam, func, select, text

from gateway.model import EVENT_TYPES, Event
from gateway.store.held import HeldWrites
from gateway.store.tables import event_triggers, events, tenants
from gateway.store.types import new_id, utcnow

_BULK_COLUMNS = ("seq", "id", "tenant_id", "type", "subject_id", "item", "occurred_at",
                 "source", "customer_id")
_TRIGGER_COLUMNS = ("tenant_id", '"trigger"', "seq", "status")  # TRIGGER is a keyword

#: The first key of the two-key advisory lock: this lock's namespace ("gw" "ev").
_LOCK_NAMESPACE = 0x67770576

#: The most items one trigger page holds.
MAX_PAGE = 100


def lock_tenant_events(conn: Connection, tenant_id: str) -> None:
    """Take the tenant's event lock for the rest of the transaction (see the module docstring).

    PostgreSQL: a transaction-scoped advisory lock on the tenant (re-entrant within the
    transaction). SQLite: a no-op write to the tenant's row, which takes the database's write
    lock now, so what the transaction reads from here on is what it writes over. Writers that
    write events take it first, before any row lock, so every such transaction of a tenant
    takes its locks in one order (this lock, then rows) and none can deadlock on it.
    """
    transaction = conn.get_transaction()
    held = conn.info.get(_HELD_KEY)
    if transaction is not None and held is not None and held[0] is transaction \
            and tenant_id in held[1]:
        return  # taken already in this transaction, outside any savepoint: held to its end
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_LOCK, {"ns": _LOCK_NAMESPACE, "tenant": tenant_id})
    else:
        conn.execute(_SQLITE_LOCK, {"tenant": tenant_id})
    if transaction is not None and not conn.in_nested_transaction():
        if held is None or held[0] is not transaction:
            held = conn.info[_HELD_KEY] = (transaction, set())
        held[1].add(tenant_id)


#: Where a connection remembers which tenants' event locks its current transaction holds
#: (a lock taken inside a savepoint is not remembered: rolling the savepoint back may drop it).
_HELD_KEY = "gateway.event_locks"
_PG_LOCK = text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))")
_SQLITE_LOCK = tenants.update().where(tenants.c.id == bindparam("tenant")).values(
    name=tenants.c.name)


def append_event(conn: Connection, tenant_id: str, type: str, subject_id: str | None,
                 item: Mapping[str, Any], *, occurred_at: datetime | None = None,
                 source: str | None = None) -> Event:
    """Write one event in the caller's transaction; the item gets the event's id as ``id``."""
    when = occurred_at or utcnow()
    [event_id] = append_events(conn, tenant_id, [(type, subject_id, item)], occurred_at=when,
                               source=source)
    return Event(id=event_id, tenant_id=tenant_id, type=type, subject_id=subject_id,
                 occurred_at=when, source=source, item=_stored_item(event_id, item))


def _stored_item(event_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": event_id, **{k: v for k, v in item.items() if k != "id"}}


def customer_of(type_: str, subject_id: str | None, item: Mapping[str, Any]) -> str | None:
    """The customer an event is about: the item's ``customer_id``, else the subject of a
    ``customer.*`` event; ``None`` for events about no customer (products, hooks)."""
    found = item.get("customer_id")
    if found:
        return str(found)
    return subject_id if type_.startswith("customer.") else None


def _allocate_seqs(conn: Connection, count: int) -> list[int]:
    """``count`` new seqs, ascending; the caller holds the tenant's event lock."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT nextval(pg_get_serial_sequence('events', 'seq')) "
            "FROM generate_series(1, :n)"), {"n": count}).scalars()
        return sorted(rows)
    # SQLite: this transaction holds the write lock, so the largest seq cannot move.
    top = conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one()
    return list(range(top + 1, top + 1 + count))


def append_events(conn: Connection, tenant_id: str,
                  planned: Iterable[tuple[str, str | None, Mapping[str, Any]]], *,
                  occurred_at: datetime, source: str | None) -> list[str]:
    """Write many events of one moment and source in the caller's transaction, fast.

    ``planned`` holds ``(type, subject_id, item)``; each item gets its event's id as ``id``.
    Returns the ids in order (their seqs ascend in that order). Takes the tenant's event lock
    first (:func:`lock_tenant_events`), then allocates the seqs, and writes each event's
    trigger memberships (:func:`gateway.triggers.triggers_for`) and customer beside it.
    PostgreSQL takes the rows by ``COPY``; SQLite by the driver's ``executemany``, with the
    values encoded by the columns' own SQLAlchemy types (so they read back through the table as
    any row does). :func:`append_event` writes through here too.

    While :data:`HELD_EVENTS` holds them (the webhook drainer's batch of posts), the rows are
    kept instead and written together, their seqs allocated in the order they were appended
    (the tenant's event lock is taken as ever at each append, so the seqs ascend as they
    would have). Only for a transaction that reads no event it wrote before writing the held
    ones (an erasure scrubs them: ``HELD_EVENTS.write`` first).
    """
    # gateway.triggers imports the scoring package, which imports this module: import late.
    from gateway.triggers import TRIGGERS, triggers_for

    planned = list(planned)
    for type_, _, _ in planned:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
    if not planned:
        return []
    dialect = conn.dialect
    if dialect.name == "postgresql":  # COPY adapts an aware datetime itself; jsonb reads JSON
        when, encode = events.c.occurred_at.type.process_bind_param(occurred_at, dialect), \
            json.dumps
    else:
        when = events.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)(
            occurred_at)
        encode = events.c.item.type.dialect_impl(dialect).bind_processor(dialect)
    lock_tenant_events(conn, tenant_id)
    rows: list[_PendingEvent] = []
    ids = []
    for type_, subject_id, item in planned:
        event_id = new_id("evt")
        stored = _stored_item(event_id, item)
        memberships = tuple((name, TRIGGERS[name].status_of(item))
                            for name in triggers_for(type_, item) if TRIGGERS[name].indexed)
        rows.append(((event_id, tenant_id, type_, subject_id, encode(stored), when, source,
                      customer_of(type_, subject_id, item)), memberships))
        ids.append(event_id)
    held = HELD_EVENTS.rows(conn)
    if held is not None:
        held.extend(rows)
    else:
        _write_rows(conn, rows)
    return ids


#: One event row before its seq: the ``_BULK_COLUMNS`` after ``seq``, and its trigger
#: memberships as ``(trigger, status)``.
_PendingEvent = tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]


def _write_rows(conn: Connection, pending: list[_PendingEvent]) -> None:
    """Allocate the seqs of ``pending`` (in order) and write the events and memberships."""
    seqs = _allocate_seqs(conn, len(pending))
    rows, memberships = [], []
    for seq, (row, triggers) in zip(seqs, pending):
        rows.append((seq, *row))
        tenant_id = row[1]
        memberships.extend((tenant_id, name, seq, status) for name, status in triggers)
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor:
            with cursor.copy(f"COPY events ({', '.join(_BULK_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if memberships:
                with cursor.copy(f"COPY event_triggers ({', '.join(_TRIGGER_COLUMNS)}) "
                                 "FROM STDIN") as copy:
                    for row in memberships:
                        copy.write_row(row)
    else:
        conn.exec_driver_sql(
            f"INSERT INTO events ({', '.join(_BULK_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_BULK_COLUMNS))})", rows)
        if memberships:
            conn.exec_driver_sql(
                f"INSERT INTO event_triggers ({', '.join(_TRIGGER_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_TRIGGER_COLUMNS))})", memberships)


#: The events :func:`append_events` holds back inside ``HELD_EVENTS.holding(conn)``: one seq
#: allocation and one ``COPY`` / ``executemany`` for many small appends.
HELD_EVENTS = HeldWrites("events", _write_rows)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def list_trigger_page(conn: Connection, tenant_id: str, trigger: str, *,
                      status: str | None = None, types: Sequence[str] | None = None,
                      before: int | None = None,
                      limit: int = MAX_PAGE) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a trigger's items, newest first, and the cursor of the next (older) page.

    Returns ``(items, next_before)``: ``items`` are the stored items as written (for
    ``events``, with the event's ``type``, ``subject_id``, ``occurred_at`` and ``source``
    added); ``next_before`` is the seq to pass as ``before`` for the next page, ``None`` when
    this page is the last. ``before`` (exclusive) pages further back; ``limit`` is 1 to 100.
    A page is one index range read: ``event_triggers`` by (tenant, trigger[, status], seq), or
    the events table by (tenant[, type], seq) for ``events``, joined to the events by primary
    key. ``status`` narrows ``customer-status`` (one of ``at_risk``, ``lapsed``, ``lost``);
    ``types`` narrows ``events`` (any canonical event types; for other triggers they filter the
    range). See the module docstring for why walking the cursor is safe under concurrent
    writers. Raises ``KeyError`` for an unknown trigger and ``ValueError`` for a status,
    type or limit the trigger does not take.
    """
    from gateway.triggers import get_trigger

    spec = get_trigger(trigger)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}")
    if status is not None and (spec.statuses is None or status not in spec.statuses):
        allowed = ", ".join(spec.statuses) if spec.statuses else "none"
        raise ValueError(f"status {status!r} does not narrow {trigger}; statuses: {allowed}")
    types = list(dict.fromkeys(types or ()))
    unknown = [t for t in types if t not in spec.event_types]
    if unknown:
        raise ValueError(f"{trigger} serves no events of type {', '.join(unknown)}; types: "
                         f"{', '.join(sorted(spec.event_types))}")
    if spec.indexed:
        t = event_triggers
        page = select(t.c.seq).where(t.c.tenant_id == tenant_id, t.c.trigger == trigger)
        if status is not None:
            page = page.where(t.c.status == status)
        if before is not None:
            page = page.where(t.c.seq < before)
        if types:  # a filter on the events of the range (not itself an index range)
            page = page.where(t.c.seq.in_(select(events.c.seq).where(
                events.c.tenant_id == tenant_id, events.c.seq == t.c.seq,
                events.c.type.in_(types))))
        # The range first (its LIMIT inside), then the page's events by primary key: a join
        # left to the planner may walk the events backwards from the newest instead.
        page = page.order_by(t.c.seq.desc()).limit(limit + 1).subquery()
        stmt = (select(events.c.seq, events.c.item)
                .select_from(page.join(events, events.c.seq == page.c.seq))
                .where(events.c.tenant_id == tenant_id)
                .order_by(events.c.seq.desc()))
        rows = conn.execute(stmt).all()
        items = [dict(row.item) for row in rows[:limit]]
    else:
        stmt = select(events.c.seq, events.c.item, events.c.type, events.c.subject_id,
                      events.c.occurred_at, events.c.source).where(
            events.c.tenant_id == tenant_id)
        if types:
            stmt = stmt.where(events.c.type.in_(types))
        if before is not None:
            stmt = stmt.where(events.c.seq < before)
        rows = conn.execute(stmt.order_by(events.c.seq.desc()).limit(limit + 1)).all()
        items = [{**row.item, "type": row.type, "subject_id": row.subject_id,
                  "occurred_at": _iso(row.occurred_at), "source": row.source}
                 for row in rows[:limit]]
    next_before = rows[limit - 1].seq if len(rows) > limit else None
    return items, next_before


def list_events(conn: Connection, tenant_id: str, *, types: Sequence[str] | None = None,
                subject_id: str | None = None, before_seq: int | None = None,
                limit: int = 100) -> list[tuple[int, Event]]:
    """Newest first, as ``(seq, event)``; ``before_seq`` pages further back."""
    stmt = select(events).where(events.c.tenant_id == tenant_id)
    if types:
        stmt = stmt.where(events.c.type.in_(list(types)))
    if subject_id is not None:
        stmt = stmt.where(events.c.subject_id == subject_id)
    if before_seq is not None:
        stmt = stmt.where(events.c.seq < before_seq)
    rows = conn.execute(stmt.order_by(events.c.seq.desc()).limit(limit))
    return [(row.seq, Event(id=row.id, tenant_id=row.tenant_id, type=row.type,
                            subject_id=row.subject_id, occurred_at=row.occurred_at,
                            source=row.source, item=dict(row.item))) for row in rows]
