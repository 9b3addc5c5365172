"""Events: what happened to a tenant's data, each with its flat trigger item stored as JSON.

Events are append-only. ``seq`` orders them (newest first is ``seq`` descending); ``id`` is the
stable, unique id Zapier dedupes on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, select

from gateway.model import EVENT_TYPES, Event
from gateway.store.tables import events
from gateway.store.types import new_id, utcnow


def append_event(conn: Connection, tenant_id: str, type: str, subject_id: str | None,
                 item: Mapping[str, Any], *, occurred_at: datetime | None = None,
                 source: str | None = None) -> Event:
    """Write one event in the caller's transaction; the item gets the event's id as ``id``."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event_id = new_id("evt")
    when = occurred_at or utcnow()
    stored = {"id": event_id, **{k: v for k, v in item.items() if k != "id"}}
    conn.execute(events.insert().values(id=event_id, tenant_id=tenant_id, type=type,
                                        subject_id=subject_id, item=stored, occurred_at=when,
                                        source=source))
    return Event(id=event_id, tenant_id=tenant_id, type=type, subject_id=subject_id,
                 occurred_at=when, source=source, item=stored)


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
