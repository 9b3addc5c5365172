"""The relay: outbox, routes (which event goes where), retry policy, schedules.

Only the hook :func:`plan_deliveries` exists so far; the delivery issue fills it in.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Connection

from gateway.model import Event


def plan_deliveries(conn: Connection, tenant_id: str, events: Sequence[Event]) -> None:
    """Write, in the caller's transaction, the delivery rows the tenant's routes plan from
    ``events`` (a transactional outbox: a record is sent only if it was stored, and a stored
    record is never lost).

    :func:`gateway.ingest.ingest` calls this once, last, with every event it wrote (record
    events and re-score events alike). It does nothing yet: this is the one placeholder the
    ingest issue leaves, on purpose, for the delivery issue, which adds the routes here.
    """
    return None
