"""Events: what happened to a tenant's data, each with its flat trigger item stored as JSON.

Events are append-only. ``seq`` orders them (newest first is ``seq`` descending); ``id`` is the
stable, unique id Zapier dedupes on.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, select

from gateway.model import EVENT_TYPES, Event
from gateway.store.tables import events
from gateway.store.types import new_id, utcnow

_BULK_COLUMNS = ("id", "tenant_id", "type", "subject_id", "item", "occurred_at", "source")


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


def append_events(conn: Connection, tenant_id: str,
                  planned: Iterable[tuple[str, str | None, Mapping[str, Any]]], *,
                  occurred_at: datetime, source: str | None) -> list[str]:
    """Write many events of one moment and source in the caller's transaction, fast.

    ``planned`` holds ``(type, subject_id, item)``; each item gets its event's id as ``id``.
    Returns the ids in order. PostgreSQL takes the rows by ``COPY``; SQLite by the driver's
    ``executemany``, with the values encoded by the columns' own SQLAlchemy types (so they read
    back through the table as any row does). :func:`append_event` writes through here too.
    """
    dialect = conn.dialect
    postgres = dialect.name == "postgresql"
    if postgres:  # COPY adapts an aware datetime itself, and jsonb reads the JSON text
        when, encode = events.c.occurred_at.type.process_bind_param(occurred_at, dialect), \
            json.dumps
    else:
        when = events.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)(
            occurred_at)
        encode = events.c.item.type.dialect_impl(dialect).bind_processor(dialect)
    rows, ids = [], []
    for type_, subject_id, item in planned:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        event_id = new_id("evt")
        stored = encode(_stored_item(event_id, item))
        rows.append((event_id, tenant_id, type_, subject_id, stored, when, source))
        ids.append(event_id)
    if not rows:
        return ids
    if postgres:
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(
            f"COPY events ({', '.join(_BULK_COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.exec_driver_sql(
            f"INSERT INTO events ({', '.join(_BULK_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_BULK_COLUMNS))})", rows)
    return ids


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
