"""``rekindle-poll``: Rekindle's two polling triggers read on a schedule, as a backstop for the
transitions no update-customer answer carried (Rekindle's daily re-score moves statuses with
time alone; only its triggers tell).

One run reads ``customer-status`` and ``customer-returned`` (10 items each at most, as the
reference says: more happening between two polls than that is not seen), then, in one
transaction:

- **keys**: each item whose customer the gateway knows (by email, then by Rekindle's id) becomes
  a dedupe key (:mod:`gateway.pulls.echo`: customer and status; customer and ``returned_at``;
  never ``updated_at``) in the tenant's scope for that trigger. The scope's first poll seeds:
  it records every key and emits nothing, as Zapier does. Later polls act on unseen keys only.
- **events**: where the tenant's ``scoring_authority`` is ``rekindle``, an unseen key goes
  through :func:`gateway.scoring.apply_rekindle_answer` - the code Rekindle's answers take - so
  it becomes ``customer.status_changed`` / ``customer.returned`` and is planned for the routes
  (win-back, REST hooks) in the same transaction. A key whose value the customer already holds
  (an answer carried it before the scope knew it) writes no event and is counted ``skipped``.
- **comparison**: under the gateway's authority an unseen key only stores Rekindle's status and
  score beside the gateway's (``rekindle_status`` / ``rekindle_score``), and is counted
  ``compared`` (``disagreed`` when the gateway's own status differs). No event.
- **echoes**: what the gateway itself wrote and Rekindle answered was recorded under the same
  keys when the answer was applied (:func:`gateway.pulls.echo.record_answer`), so reading it
  back here is not news.

Customers the gateway does not know (written to Rekindle by something else) are counted
``unknown`` and skipped without a key: the gateway has no record to give the event to, and
once it knows them the poll takes their status then. Redacted customers are skipped too. An
item that cannot be read (a bad email, an unknown status) is skipped and logged without its
contents.

The route runs only while the tenant's ``rekindle-poll`` switch is on and it has a Rekindle
connection; otherwise a run reads nothing and says why (``note``).

The run's counts (:func:`poll_rekindle`) are the pulls' common ones - ``read``, ``changed``
(unseen keys that became events), ``sent``, ``failed``, ``dead`` (always 0 here: the events'
deliveries are the worker's), ``skipped`` - plus ``events`` (events written), ``compared``,
``disagreed``, ``unknown`` and ``seeded`` (keys a seeding poll recorded), and ``queued``:
per connector, the deliveries the events planned (a dry run's: what the real run would plan).

``python app.py sync rekindle-poll --tenant T`` runs it through :func:`pull_rekindle`, the
pull interface of :mod:`gateway.pulls.sync` (attached to the job as ``poll_rekindle.pull``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, func, select

from connectors.http import deadline_scope
from connectors.rekindle.mapping import MappingError, customer_from_wire
from gateway.pulls import echo
from gateway.relay import plan_deliveries
from gateway.relay.clients import ClientCache
from gateway.relay.routes_context import open_context
from gateway.schedule import jobs
from gateway.scoring.customer import apply_rekindle_answer
from gateway.scoring.rules import check_status
from gateway.store import dedupe
from gateway.store.events import lock_tenant_events
from gateway.store.tables import customer_external_ids, customers, deliveries

if TYPE_CHECKING:
    from gateway.runtime import Runtime

ROUTE = "rekindle-poll"
CONNECTOR = "rekindle"
COUNTS = ("read", "changed", "sent", "failed", "dead", "skipped", "events", "compared",
          "disagreed", "unknown", "seeded")

log = logging.getLogger("gateway.pulls")

Progress = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Item:
    """One trigger item, as much of it as the poll uses."""

    trigger: str
    email: str | None
    rekindle_id: str | None
    status: str | None
    engagement_score: int | None
    returned_at: datetime | None


@dataclass(frozen=True)
class _Known:
    """A gateway customer an item is about."""

    id: str
    redacted: bool
    gateway_status: str | None


def read_items(trigger: str, payload: Iterable[Mapping[str, Any]], currency: str,
               counts: dict[str, Any]) -> list[Item]:
    """The trigger's wire items as :class:`Item`; unreadable ones are counted skipped."""
    items = []
    for raw in payload:
        try:
            customer = customer_from_wire(raw, currency)
            check_status(customer.status)
        except (MappingError, ValueError, TypeError):
            counts["skipped"] += 1
            log.warning("rekindle-poll: a %s item that cannot be read was skipped", trigger)
            continue
        items.append(Item(trigger, customer.email, customer.external_ids.get(CONNECTOR),
                          customer.status, customer.engagement_score, customer.returned_at))
    return items


def _known(conn: Connection, tenant_id: str, items: Sequence[Item]) -> dict[int, _Known]:
    """The gateway customer of each item (by position), by email and then by Rekindle's id."""
    emails = sorted({i.email for i in items if i.email})
    by_email: dict[str, _Known] = {}
    if emails:
        for row in conn.execute(select(customers.c.id, customers.c.email,
                                       customers.c.redacted_at, customers.c.gateway_status)
                                .where(customers.c.tenant_id == tenant_id,
                                       customers.c.email.in_(emails))):
            by_email[row.email] = _Known(row.id, row.redacted_at is not None, row.gateway_status)
    missing = sorted({i.rekindle_id for i in items
                      if i.rekindle_id and (not i.email or i.email not in by_email)})
    by_rekindle: dict[str, _Known] = {}
    if missing:
        query = (select(customer_external_ids.c.external_id, customers.c.id,
                        customers.c.redacted_at, customers.c.gateway_status)
                 .join(customers, customers.c.id == customer_external_ids.c.customer_id)
                 .where(customer_external_ids.c.tenant_id == tenant_id,
                        customer_external_ids.c.service == CONNECTOR,
                        customer_external_ids.c.external_id.in_(missing),
                        customers.c.tenant_id == tenant_id))
        for row in conn.execute(query):
            by_rekindle[row.external_id] = _Known(row.id, row.redacted_at is not None,
                                                  row.gateway_status)
    found = {}
    for position, item in enumerate(items):
        known = by_email.get(item.email or "") or by_rekindle.get(item.rekindle_id or "")
        if known is not None:
            found[position] = known
    return found


def _key(item: Item, customer_id: str) -> str | None:
    if item.trigger == echo.STATUS_TRIGGER:
        return echo.status_key(customer_id, item.status) if item.status else None
    return echo.returned_key(customer_id, item.returned_at) if item.returned_at else None


def apply_items(conn: Connection, tenant_id: str, trigger: str, items: Sequence[Item], *,
                authority: str, at: datetime, counts: dict[str, Any]) -> None:
    """Record one trigger's items as keys and act on the unseen ones (module docstring), in
    the caller's transaction, which holds the tenant's event lock already."""
    scope = echo.STATUS_SCOPE if trigger == echo.STATUS_TRIGGER else echo.RETURNED_SCOPE
    known = _known(conn, tenant_id, items)
    keyed: list[tuple[str, Item, _Known]] = []
    for position, item in enumerate(items):
        customer = known.get(position)
        if customer is None:
            counts["unknown"] += 1
            continue
        key = _key(item, customer.id)
        if customer.redacted or key is None:
            counts["skipped"] += 1
            continue
        keyed.append((key, item, customer))
    seeding = not echo.is_seeded(conn, tenant_id, scope)
    unseen = set(dedupe.unseen(conn, tenant_id, scope, [key for key, _, _ in keyed]))
    if seeding:
        counts["seeded"] += len({key for key, _, _ in keyed})
    for key, item, customer in keyed:
        if key not in unseen:
            continue
        unseen.discard(key)  # an item listed twice acts once
        if item.status is not None:
            echo.retire_other_statuses(conn, tenant_id, customer.id, item.status)
        returned = trigger == echo.RETURNED_TRIGGER
        written = apply_rekindle_answer(
            conn, tenant_id, customer.id, status=item.status,
            engagement_score=item.engagement_score, returned=returned, at=at,
            returned_at=item.returned_at if returned else None)
        if authority != "rekindle":
            counts["compared"] += 1
            if customer.gateway_status != item.status:
                counts["disagreed"] += 1
        elif written:
            counts["changed"] += 1
            counts["events"] += len(written)
            plan_deliveries(conn, tenant_id, written)
        else:
            counts["skipped"] += 1


def _note(counts: dict[str, Any], text: str, progress: Progress | None) -> dict[str, Any]:
    counts["note"] = text
    if progress is not None:
        progress(dict(counts))
    return counts


def poll_rekindle(runtime: "Runtime", tenant_id: str, now: datetime, *, dry_run: bool = False,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Poll the tenant's Rekindle triggers once (the module docstring says what a run does);
    the run's counts.

    ``dry_run`` reads and diffs exactly as a run does, then rolls everything back: no key is
    recorded, no event written, and the counts are what a real run at this moment would give.
    ``progress`` is called with the counts so far after each trigger is read and at the end.
    A connector error (Rekindle unreachable, a refused key) is raised: the run failed.
    ``now`` is the run's time (the schedule's): the events' ``occurred_at``.
    """
    counts: dict[str, Any] = {name: 0 for name in COUNTS}
    counts["queued"] = {}
    with runtime.engine.connect() as conn:
        context = open_context(conn, tenant_id)
    if not context.route_on(ROUTE):
        return _note(counts, "the tenant's rekindle-poll route is off", progress)
    if not context.is_connected(CONNECTOR):
        return _note(counts, "the tenant has no Rekindle connection", progress)
    authority = context.settings.scoring_authority
    read: list[tuple[str, list[Item]]] = []
    clients = ClientCache(runtime)
    try:
        destination = clients.get(tenant_id, CONNECTOR)
        client, currency = destination.client, destination.client.currency
        with deadline_scope(time.time() + runtime.settings.lease_seconds):
            for trigger, fetch in ((echo.STATUS_TRIGGER, client.customer_status_wire),
                                   (echo.RETURNED_TRIGGER, client.customer_returned_wire)):
                payload = fetch()
                counts["read"] += len(payload)
                read.append((trigger, read_items(trigger, payload, currency, counts)))
                if progress is not None:
                    progress(dict(counts))
    finally:
        clients.close()
    with runtime.engine.connect() as conn:
        transaction = conn.begin()
        try:
            lock_tenant_events(conn, tenant_id)  # before any key's row: the answers' order
            first = _last_delivery(conn, tenant_id)
            for trigger, items in read:
                apply_items(conn, tenant_id, trigger, items, authority=authority, at=now,
                            counts=counts)
            counts["queued"] = _planned_since(conn, tenant_id, first)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    if progress is not None:
        progress(dict(counts))
    return counts


def _last_delivery(conn: Connection, tenant_id: str) -> int:
    return int(conn.execute(select(func.max(deliveries.c.id)).where(
        deliveries.c.tenant_id == tenant_id)).scalar() or 0)


def _planned_since(conn: Connection, tenant_id: str, first: int) -> dict[str, int]:
    """Per connector, the tenant's delivery rows after ``first`` (those this transaction
    planned: it holds the tenant's event lock, which every planner takes)."""
    d = deliveries.c
    return {connector: int(n) for connector, n in conn.execute(
        select(d.connector, func.count()).where(d.tenant_id == tenant_id, d.id > first)
        .group_by(d.connector).order_by(d.connector))}


def pull_rekindle(runtime: "Runtime", tenant_id: str, now: datetime, *, dry_run: bool = False,
                  progress: Callable[..., None] | None = None) -> Any:
    """:func:`poll_rekindle` as a pull of :mod:`gateway.pulls.sync` (its ``PullResult``;
    ``progress(read, queued)``), so ``sync rekindle-poll`` has its dry run, progress and the
    deliveries the events planned."""
    from gateway.pulls.sync import Marks, PullResult, max_delivery_id

    marks = Marks(max_delivery_id(runtime), f"{ROUTE}-{time.time_ns()}")
    report = None if progress is None else (lambda c: progress(c["read"], {}))
    counts = poll_rekindle(runtime, tenant_id, now, dry_run=dry_run, progress=report)
    result = PullResult(marks, dry_run=dry_run, note=counts.get("note"))
    for name in result.counts:
        result.counts[name] = int(counts.get(name, 0))
    for connector, n in counts.get("queued", {}).items():
        result.add(connector, "queued", n)
    return result


poll_rekindle.pull = pull_rekindle  # type: ignore[attr-defined]
jobs.register(ROUTE, poll_rekindle, replace=True)
