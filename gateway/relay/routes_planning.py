"""Running the routes over events: :class:`RoutePlanner` turns events into outbox rows in the
caller's transaction (the transactional outbox), and the bulk form the tenant re-score uses.

``RoutePlanner.open`` reads the tenant's switches and connections once (one query); ``plan``
keeps only the events some active route takes (on, with a connected service, and accepting
the event), reads the records they are about in bulk, runs the planners and enqueues what they
plan in one :func:`gateway.relay.outbox.enqueue` call. A call with nothing to plan writes
nothing and reads nothing more.

The tenant re-score writes up to hundreds of thousands of status events in one transaction,
before it stores the new statuses. :func:`bulk_planning` gives it a :class:`BulkPlanning`: when
no active route takes status events it does nothing at all; otherwise it notes where the
tenant's events stand (under the tenant's event lock, so the seqs after it are this
transaction's) and, called once the statuses are stored, reads back only the events written
since, in chunks, and plans them - never holding more than a chunk in memory.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, func, select

from gateway.model import Event
from gateway.relay.outbox import EnqueueResult, enqueue
from gateway.relay.planned import PlannedDelivery
from gateway.relay.routes import ROUTES, Route
from gateway.relay.routes_context import PlanContext, open_context
from gateway.store.events import lock_tenant_events
from gateway.store.tables import events as events_table

#: Events read back and planned per round trip by :class:`BulkPlanning`.
CHUNK = 5_000


class RoutePlanner:
    """The tenant's active routes, ready to plan events (one per transaction and tenant)."""

    def __init__(self, conn: Connection, context: PlanContext) -> None:
        self.conn = conn
        self.context = context
        self.active: list[Route] = [route for route in ROUTES if route.active(context)]

    @classmethod
    def open(cls, conn: Connection, tenant_id: str, *,
             erased: Mapping[str, Any] | None = None) -> "RoutePlanner":
        return cls(conn, open_context(conn, tenant_id, erased))

    @property
    def tenant_id(self) -> str:
        return self.context.tenant_id

    def takes_any(self, event_types: Iterable[str]) -> bool:
        """Whether some active route takes events of any of these types."""
        wanted = set(event_types)
        return any(route.events & wanted for route in self.active)

    def planned_for(self, events: Sequence[Event]) -> list[PlannedDelivery]:
        """What the active routes plan for ``events`` (their side effects on the outbox, e.g.
        an erasure's cancellations, happen here too)."""
        work = [(event, route) for event in events for route in self.active
                if route.takes(event)]
        if not work:
            return []
        self.context.prefetch(self.conn, list({e.id: e for e, _ in work}.values()))
        planned: list[PlannedDelivery] = []
        for event, route in work:
            planned.extend(route.plan(self.conn, self.tenant_id, event, self.context))
        return planned

    def plan(self, events: Sequence[Event]) -> EnqueueResult:
        """Plan ``events`` and queue the deliveries in the caller's transaction."""
        planned = self.planned_for(events)
        if not planned:
            return EnqueueResult()
        return enqueue(self.conn, self.tenant_id, planned)


class BulkPlanning:
    """Planning for the events a bulk writer is about to write (see the module docstring)."""

    def __init__(self, planner: RoutePlanner | None, types: tuple[str, ...],
                 mark: int | None, chunk: int = CHUNK, *, routes: bool = True,
                 hooks: bool = False) -> None:
        self.planner, self.types, self.mark, self.chunk = planner, types, mark, chunk
        self.routes = routes and planner is not None  # some active route takes them
        self.hooks = hooks  # some REST-hook subscription takes them

    @property
    def needed(self) -> bool:
        return self.planner is not None

    def plan_written(self) -> int:
        """Plan the events of ``types`` written since the mark; how many deliveries were
        queued (0, at no cost, when no active route takes them)."""
        if self.planner is None:
            return 0
        conn, tenant_id = self.planner.conn, self.planner.tenant_id
        after, queued = self.mark or 0, 0
        while True:
            rows = conn.execute(
                select(events_table).where(events_table.c.tenant_id == tenant_id,
                                           events_table.c.seq > after,
                                           events_table.c.type.in_(self.types))
                .order_by(events_table.c.seq).limit(self.chunk)).all()
            if not rows:
                return queued
            after = rows[-1].seq
            written = [
                Event(id=row.id, tenant_id=tenant_id, type=row.type, subject_id=row.subject_id,
                      occurred_at=row.occurred_at, source=row.source, item=dict(row.item))
                for row in rows]
            if self.routes:
                result = self.planner.plan(written)
                queued += result.queued + result.coalesced
                self.planner.context.forget_records()
            if self.hooks:
                from gateway.hooks.planning import plan_hook_deliveries

                queued += plan_hook_deliveries(conn, tenant_id, written)


def bulk_planning(conn: Connection, tenant_id: str, types: Iterable[str], *,
                  chunk: int = CHUNK) -> BulkPlanning:
    """Prepare to plan the events of ``types`` the caller's transaction is about to write
    (read back ``chunk`` at a time)."""
    from gateway.hooks.store import active_for

    types = tuple(types)
    planner = RoutePlanner.open(conn, tenant_id)
    routes = planner.takes_any(types)
    hooks = bool(active_for(conn, tenant_id, set(types)))
    if not routes and not hooks:
        return BulkPlanning(None, types, None, chunk)
    lock_tenant_events(conn, tenant_id)
    mark = conn.execute(select(func.max(events_table.c.seq)).where(
        events_table.c.tenant_id == tenant_id)).scalar()
    return BulkPlanning(planner, types, mark, chunk, routes=routes, hooks=hooks)
