"""The ``rci-customers`` pull: walk Repeat Customer Insights in full and bring every
destination up to date, sending each only what it would see differently.

The walk (:meth:`connectors.rci.client.RciClient.customers`, a generator holding one page) is
taken :data:`PAGE` records at a time; each chunk is one transaction:

1. :func:`gateway.ingest.ingest` stores the customers in RCI's format (profiles, reported
   aggregates, RFM as RCI reports it), writes the events real changes call for (with source
   :data:`PULL_SOURCE`) and plans what the event routes take from them: consent changes,
   win-back transitions of the re-score, and for a customer with ``redacted_at`` the erasure
   route (tombstone; Replenit delete, Rejoiner unsubscribe, the Rekindle item). The
   ``customers`` route leaves this source's customer events alone (see
   :data:`gateway.relay.routes.PULL_SOURCES`): profiles are this pull's to plan.
2. Every live customer read gets its profile write planned at each connected destination that
   may hold it (:func:`gateway.relay.routes_planners.profile_writes`: consent basis for
   Replenit, email and name for Rekindle, ``gw:`` tags and the ``gateway`` metadata key for
   Rejoiner), and :func:`gateway.pulls.acknowledged.changed` keeps only the writes whose
   payload differs from the one that destination acknowledged last. So a second walk with
   nothing changed sends nothing, a customer whose RFM moved reaches only Rejoiner (the one
   destination whose payload holds it), and a destination connected later gets everyone.
3. The kept writes are queued (the outbox), versioned by this walk and chunk, so planning
   them again in this walk is a duplicate while a later walk always queues.

Memory holds one chunk. The walk stops between chunks when the process is stopping (the next
slot carries on). A chunk that a record makes invalid (an email another customer holds, given
with this customer's RCI id) is stored record by record; the refused ones count as skipped.

A dry run does the same in transactions that are rolled back: nothing is stored, queued or
sent, and what it counts is what the real run would queue (and so send).

Respects the tenant's ``rci-customers`` switch and needs an RCI connection; writes go only to
connected destinations.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import Connection, select

from connectors.rci.mapping import customer_from_wire
from gateway.ingest import PayloadInvalid, ingest
from gateway.model import Event
from gateway.pulls import acknowledged
from gateway.pulls.sync import COUNTS, Marks, PullResult, max_delivery_id
from gateway.relay.clients import ClientCache, ConnectionUnavailable
from gateway.relay.outbox import enqueue
from gateway.relay.payloads import PayloadError, load
from gateway.relay.planned import PlannedDelivery
from gateway.relay.routes_context import PlanContext, open_context
from gateway.relay.routes_planners import profile_writes
from gateway.runtime import Runtime
from gateway.schedule import jobs
from gateway.store import db
from gateway.store.records import CREATED, UNCHANGED, UPDATED
from gateway.store.tables import deliveries
from gateway.store.types import new_id

log = logging.getLogger("gateway.pulls")

ROUTE = "rci-customers"
#: The ``source`` of what this pull stores and the events it writes.
PULL_SOURCE = "rci-customers"
#: Records stored, planned and committed together.
PAGE = 100
_CHUNK = 500

Progress = Callable[[int, dict], None]


class PullError(RuntimeError):
    """The pull cannot run (no usable RCI connection); the message says why, never a
    secret."""


class _Rollback(Exception):
    """Ends a dry run's transaction without committing it."""


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def _stopping() -> bool:
    run = jobs.current_run()
    return run is not None and run.stopping.is_set()


# ------------------------------------------------------------------------ one chunk


class _Chunk:
    """One chunk of the walk, stored and planned in one transaction."""

    def __init__(self, conn: Connection, tenant_id: str, now: datetime, version: str,
                 result: PullResult) -> None:
        self.conn, self.tenant_id, self.now = conn, tenant_id, now
        self.version, self.result = version, result
        #: RCI's own RFM figures of each customer read (see :func:`reported_scores`).
        self.reported: dict[str, dict[str, Any]] = {}

    def run(self, resources: list[dict[str, Any]]) -> None:
        mark = int(self.conn.execute(select(deliveries.c.id).order_by(
            deliveries.c.id.desc()).limit(1)).scalar() or 0)
        customer_ids, changed = self._store(resources)
        context = open_context(self.conn, self.tenant_id)
        context.load_customers(self.conn, customer_ids)
        planned = self._profile_writes(context, customer_ids)
        contexts = {c: acknowledged.plan_context(context.settings, context.connected.get(c))
                    for c in acknowledged.WIRE}
        kept, dropped = acknowledged.changed(self.conn, self.tenant_id, planned, contexts)
        for connector, count in dropped.items():
            self.result.add(connector, "unchanged", count)
        if kept:
            enqueue(self.conn, self.tenant_id, kept, now=self.now)
        queued = self._queued(mark, [*customer_ids, *changed])
        changed.update(row.subject_id for row in queued if row.subject_id)
        for row in queued:
            self.result.add(row.connector, "queued")
            if self.result.dry_run:
                self._example(row, context)
        counts = self.result.counts
        counts["read"] += len(resources)
        counts["changed"] += len(changed)
        counts["skipped"] += len(resources) - len(changed)

    def _store(self, resources: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
        """Ingest the chunk: the live customers read and the customers erased now. A chunk
        a record spoils raises :class:`PayloadInvalid` (the caller stores it again record
        by record)."""
        ingested = ingest(self.conn, self.tenant_id, "customers", "rci", resources,
                          source=PULL_SOURCE, now=self.now)
        customer_ids: list[str] = []
        erased: set[str] = set()
        for resource, summary in zip(resources, ingested.records):
            if summary.kind == "customer" and summary.customer_id \
                    and summary.outcome in (CREATED, UPDATED, UNCHANGED):
                customer_ids.append(summary.customer_id)
                self.reported[summary.customer_id] = reported_scores(resource)
            elif summary.kind == "erasure" and summary.outcome in ("erased", "tombstoned"):
                erased.add(summary.customer_id or f"tombstone:{len(erased)}")
        counts = self.result.counts
        counts["erased"] = counts.get("erased", 0) + len(erased)
        return list(dict.fromkeys(customer_ids)), erased

    def _profile_writes(self, context: PlanContext,
                        customer_ids: list[str]) -> list[PlannedDelivery]:
        # The walk's version of each record: one per chunk (see the module docstring).
        walk = Event(id=self.version, tenant_id=self.tenant_id, type="customer.updated",
                     subject_id=None, occurred_at=self.now, source=PULL_SOURCE)
        planned: list[PlannedDelivery] = []
        for customer_id in customer_ids:
            customer = context.customer(self.conn, customer_id)
            if customer is None or customer.redacted_at is not None:
                continue
            customer = dataclasses.replace(customer, **self.reported.get(customer_id, {}))
            planned.extend(profile_writes(self.conn, walk, customer, context))
        return planned

    def _queued(self, mark: int, subjects: list[str]) -> list[Any]:
        """The outbox rows this chunk queued: inserted now, or pending rows its writes went
        into (they carry its version)."""
        d = deliveries.c
        found = []
        suffix = ":" + self.version
        wanted = [s for s in dict.fromkeys(subjects) if s and not s.startswith("tombstone:")]
        for start in range(0, len(wanted), _CHUNK):
            for row in self.conn.execute(
                    select(d.id, d.connector, d.operation, d.subject_id, d.idempotency_key,
                           d.payload)
                    .where(d.tenant_id == self.tenant_id,
                           d.subject_id.in_(wanted[start:start + _CHUNK]),
                           (d.id > mark) | (d.status == "pending"))):
                if row.id > mark or row.idempotency_key.endswith(suffix):
                    found.append(row)
        return found

    def _example(self, row: Any, context: PlanContext) -> None:
        kind = f"{row.connector} {row.operation}"
        examples = self.result.examples
        if kind in examples:
            return
        try:
            record = load(row.payload)
        except PayloadError:
            return
        payload = acknowledged.wire_payload(
            row.connector, record,
            acknowledged.plan_context(context.settings, context.connected.get(row.connector)))
        if payload is None:
            payload = row.payload.get("data") if isinstance(row.payload, dict) else None
        examples[kind] = json.loads(json.dumps(masked(payload), default=str))


#: The RFM figures RCI reports, as the pull's profile writes carry them.
SCORE_FIELDS = ("recency_score", "frequency_score", "monetary_score", "rfm", "grade",
                "segments")


def reported_scores(resource: dict[str, Any]) -> dict[str, Any]:
    """RCI's RFM of a customer resource (the fields it reports): the pull's profile writes
    carry RFM as RCI reports it (Rejoiner's ``gw:`` tags and ``gateway`` key), over the
    gateway's own scores of the stored customer."""
    reported = customer_from_wire(resource)
    values = {name: getattr(reported, name) for name in SCORE_FIELDS}
    return {k: v for k, v in values.items() if v is not None and v != []} | (
        {"segments": list(reported.segments)} if reported.rfm is not None else {})


# ------------------------------------------------------------------------ PII out of examples

#: Field names whose values are personal data in any of the destinations' payloads.
PII_FIELDS = frozenset({
    "email", "Email", "name", "Name", "first_name", "last_name", "Surname", "surname",
    "phone", "Phone", "address", "address1", "address2", "address3", "city", "state",
    "postal_code", "country", "birthdate", "customerId", "customer_email", "line1", "line2",
    "line3", "region", "rci_invalid_email"})


def _mask(value: Any) -> Any:
    if isinstance(value, str) and value:
        if "@" in value:
            return value[0] + "***@***"
        return value[0] + "***"
    return value


def masked(payload: Any) -> Any:
    """``payload`` with personal values masked (first character and ``***``): an example
    shows the shape of what is sent, not whom."""
    if isinstance(payload, dict):
        return {k: (_mask(v) if k in PII_FIELDS and not isinstance(v, (dict, list))
                    else masked(v)) for k, v in payload.items()}
    if isinstance(payload, list):
        return [masked(v) for v in payload]
    if isinstance(payload, str) and "@" in payload:  # an email as the whole payload
        return _mask(payload)
    return payload


# ------------------------------------------------------------------------ the pull


def _rci_client(runtime: Runtime, tenant_id: str) -> tuple[Any, ClientCache]:
    cache = ClientCache(runtime)
    try:
        return cache.get(tenant_id, "rci").client, cache
    except ConnectionUnavailable as exc:
        cache.close()
        raise PullError(str(exc)) from None


def pull_rci_customers(runtime: Runtime, tenant_id: str, now: datetime, *,
                       dry_run: bool = False, progress: Progress | None = None) -> PullResult:
    """Walk RCI for the tenant (see the module docstring). ``progress(read, queued)`` is
    called after each chunk. :class:`PullError` when there is no usable RCI connection."""
    base = new_id("pull")
    result = PullResult(Marks(max_delivery_id(runtime), base), dry_run=dry_run)
    with runtime.engine.connect() as conn:
        context = open_context(conn, tenant_id)
    if not context.route_on(ROUTE):
        result.note = f"the {ROUTE} route is off for this tenant"
        return result
    if not context.is_connected("rci"):
        result.note = "the tenant has no rci connection"
        return result
    client, cache = _rci_client(runtime, tenant_id)
    try:
        for number, resources in enumerate(_chunks(client.customers(), PAGE)):
            _run_chunk(runtime, tenant_id, now, f"{base}.{number}", resources, result)
            if progress is not None:
                progress(result.counts["read"], result.queued)
            if _stopping():
                result.note = "stopped early: the process is stopping"
                break
    finally:
        cache.close()
    return result


def _run_chunk(runtime: Runtime, tenant_id: str, now: datetime, version: str,
               resources: list[dict[str, Any]], result: PullResult) -> None:
    """Store and plan one chunk in one transaction (rolled back in a dry run); a chunk one
    record spoils is stored record by record, and the refused records are skipped."""
    try:
        _transaction(runtime, tenant_id, now, version, resources, result)
        return
    except PayloadInvalid:
        if len(resources) == 1:
            raise
    for resource in resources:
        try:
            _transaction(runtime, tenant_id, now, version, [resource], result)
        except PayloadInvalid as exc:
            for name in ("read", "skipped", "invalid"):
                result.counts[name] = result.counts.get(name, 0) + 1
            log.info("rci-customers: tenant %s: a record was refused: %s", tenant_id,
                     exc.message)


def _transaction(runtime: Runtime, tenant_id: str, now: datetime, version: str,
                 resources: list[dict[str, Any]], result: PullResult) -> None:
    # The counts change only once the chunk's work is done (a chunk tried again record by
    # record must not count twice).
    trial = PullResult(result.marks, dry_run=result.dry_run, examples=result.examples)
    try:
        with db.write_transaction(runtime.engine) as conn:
            _Chunk(conn, tenant_id, now, version, trial).run(resources)
            if result.dry_run:
                raise _Rollback
    except _Rollback:
        pass
    result.merge(trial)


def rci_customers_job(runtime: Runtime, tenant_id: str, now: datetime) -> dict[str, Any]:
    """The schedule's job: the walk; its counts (``sent``/``dead`` as delivered so far)."""
    from gateway.pulls.sync import outcome_counts

    started = time.monotonic()
    result = pull_rci_customers(runtime, tenant_id, now)
    if result.note is None:
        for connector, statuses in outcome_counts(runtime, tenant_id, result.marks).items():
            result.counts["sent"] += statuses.get("done", 0)
            result.counts["dead"] += statuses.get("dead", 0)
            result.add(connector, "sent", statuses.get("done", 0))
    return result.as_counts(started)


#: ``python app.py sync`` finds the pull behind the job here.
rci_customers_job.pull = pull_rci_customers  # type: ignore[attr-defined]

if jobs.REGISTRY.get(ROUTE) is None:
    jobs.register(ROUTE, rci_customers_job)

__all__ = ["COUNTS", "PULL_SOURCE", "ROUTE", "PullError", "masked", "pull_rci_customers",
           "rci_customers_job"]
