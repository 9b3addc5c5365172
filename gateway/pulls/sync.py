"""Running one pull now, and delivering what it queued: the library side of ``python app.py
sync ROUTE --tenant T`` (the command is :mod:`gateway.pulls.sync_cli`; the demo calls
:func:`run_sync` directly).

:func:`run_sync` runs the route's pull (a job registered as a pull in
:data:`gateway.schedule.jobs.REGISTRY`) while a delivery worker restricted to the tenant sends
what the pull queues, page by page, so the walk and the sends overlap; once the walk is done it
keeps the worker going until every delivery the pull queued has settled (done, dead or
cancelled), or ``timeout`` seconds have passed. A dry run reads and diffs inside transactions
that are rolled back: nothing is stored, queued or sent, and its counts are what the real run
would queue.

The run is recorded in ``sync_runs`` (route = the pull's route, ``trigger: "sync"``) beside the
drains, with the six counts (``read``, ``changed``, ``sent``, ``failed``, ``dead``,
``skipped``), the duration and the counts per destination. A dry run records nothing.

What the counts mean: ``read`` records read from the source; ``changed`` those for which
something was queued (a destination's payload differed from the one it last acknowledged, or
an erasure); ``skipped`` the rest (the same at every destination, erased already, or
refused); ``sent`` / ``dead`` the deliveries the pull queued that ended done / dead;
``failed`` those still not delivered when the sync stopped waiting (retrying; only after a
``timeout``). For a dry run ``sent`` and the others are 0 and ``per_destination[c]["queued"]``
says how many deliveries to ``c`` the real run would queue (and send).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from sqlalchemy import func, or_, select

from gateway.hooks import HOOKS
from gateway.runtime import Runtime
from gateway.schedule import jobs
from gateway.schedule.runs import describe_error, record_run
from gateway.store.tables import deliveries, sync_runs
from gateway.store.types import utcnow

#: The six counts every summary carries, in the order the summary prints them.
COUNTS = ("read", "changed", "sent", "failed", "dead", "skipped")
#: How often the delivery wait looks at the outbox (seconds).
POLL_SECONDS = 0.2


class Progress(Protocol):
    """What :func:`run_sync` reports to while it runs (a terminal bar, plain lines, the
    demo's own). ``total_hint`` is the number of records the last run read (None the first
    time): the walk's length is not known before it ends. An object that also has
    ``set_eta(seconds)`` is told the time left the services' limits allow."""

    def update(self, *, read: int, sent: int, total_hint: int | None) -> None: ...


class UnknownRoute(LookupError):
    """The route is not a registered pull."""


class UnknownTenant(LookupError):
    """No such tenant."""


@dataclass
class SyncSummary:
    """What a sync did (see the module docstring for the counts)."""

    route: str
    tenant_id: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    per_destination: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0
    settled: bool = True
    error: str | None = None

    @property
    def dead(self) -> int:
        return int(self.counts.get("dead", 0))

    def as_dict(self) -> dict[str, Any]:
        return {"route": self.route, "tenant_id": self.tenant_id, "dry_run": self.dry_run,
                **{name: int(self.counts.get(name, 0)) for name in COUNTS},
                "per_destination": {c: dict(v) for c, v in self.per_destination.items()},
                "duration_seconds": round(self.duration_seconds, 3),
                "settled": self.settled,
                **({"examples": self.examples} if self.dry_run else {}),
                **({"error": self.error} if self.error else {})}


@dataclass(frozen=True)
class Marks:
    """Where a pull's outbox rows are: every row inserted after ``first_id`` (the highest
    delivery id before the pull began), and the pending rows it coalesced into, which carry
    its ``version`` at the end of their idempotency key."""

    first_id: int
    version: str


@dataclass
class PullResult:
    """What a pull did: the six counts (``sent``/``failed``/``dead`` as far as known when the
    walk ended), per destination what it queued (``queued``) and found unchanged
    (``unchanged``), a dry run's example payloads, and where its rows are (:class:`Marks`)."""

    marks: Marks
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    per_destination: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    note: str | None = None  # why nothing ran (the route is off, the source not connected)

    @property
    def queued(self) -> dict[str, int]:
        return {c: per.get("queued", 0) for c, per in self.per_destination.items()}

    def merge(self, other: "PullResult") -> None:
        """Add ``other``'s counts to these (a chunk's, once it committed)."""
        for name, value in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        for connector, per in other.per_destination.items():
            for name, value in per.items():
                self.add(connector, name, value)
        self.examples.update(other.examples)

    def add(self, connector: str, name: str, value: int = 1) -> None:
        per = self.per_destination.setdefault(connector, {"queued": 0, "unchanged": 0})
        per[name] = per.get(name, 0) + value

    def as_counts(self, started: float) -> dict[str, Any]:
        """The counts a scheduled run records (the ticker adds slot and worker)."""
        return {**{k: int(self.counts.get(k, 0)) for k in COUNTS},
                "duration_seconds": round(time.monotonic() - started, 3),
                "trigger": "schedule",
                "connectors": {c: dict(v) for c, v in self.per_destination.items()},
                **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class Pull:
    """A registered pull: ``run(runtime, tenant_id, now, *, dry_run, progress) ->
    PullResult`` (``progress(read, queued)`` is called as it goes)."""

    route: str
    run: Callable[..., PullResult]
    dry_run: bool = True


#: The built-in schedule jobs that are not pulls.
NOT_PULLS = frozenset({jobs.RESCORE, jobs.RETENTION})


def load_pulls() -> None:
    """Import the pull modules, so their jobs are registered."""
    from gateway.pulls import register_jobs

    register_jobs()


def pull_routes() -> list[str]:
    """The routes registered as pulls (every registered job but the re-score and retention)."""
    load_pulls()
    return [job.route for job in jobs.REGISTRY if job.route not in NOT_PULLS]


def max_delivery_id(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.max(deliveries.c.id))).scalar() or 0)


def _plain_job(job: jobs.Job) -> Callable[..., PullResult]:
    """A pull job without the pull interface: run it, read its counts, find its rows by id."""

    def run(runtime: Runtime, tenant_id: str, now: datetime, *, dry_run: bool = False,
            progress: Callable[..., None] | None = None) -> PullResult:
        marks = Marks(max_delivery_id(runtime), f"none-{time.time_ns()}")
        counts = dict(job.run(runtime, tenant_id, now) or {})
        result = PullResult(marks)
        for name in COUNTS:
            value = counts.get(name)
            if isinstance(value, int):
                result.counts[name] = value
        for connector, per in outcome_counts(runtime, tenant_id, marks).items():
            result.add(connector, "queued", sum(per.values()))
        return result

    return run


def find_pull(route: str) -> Pull:
    """The pull registered for ``route``; :class:`UnknownRoute` otherwise."""
    load_pulls()
    job = jobs.REGISTRY.get(route)
    if job is None or route in NOT_PULLS:
        raise UnknownRoute(f"unknown pull route {route!r}; pulls: "
                           f"{', '.join(pull_routes()) or 'none'}")
    fn = getattr(job.run, "pull", None)
    if fn is not None:
        return Pull(route, fn)
    return Pull(route, _plain_job(job), dry_run=False)


def last_read(runtime: Runtime, tenant_id: str, route: str) -> int | None:
    """How many records the tenant's last recorded run of ``route`` read (a length hint)."""
    with runtime.engine.connect() as conn:
        row = conn.execute(select(sync_runs.c.counts).where(
            sync_runs.c.tenant_id == tenant_id, sync_runs.c.route == route,
            sync_runs.c.status == "ok").order_by(sync_runs.c.id.desc()).limit(1)).first()
    if row is None or not isinstance(row.counts, dict):
        return None
    read = row.counts.get("read")
    return int(read) if isinstance(read, int) and read > 0 else None


# ------------------------------------------------------------------------ the pull's rows


def _ours(tenant_id: str, marks: Any) -> Any:
    """The outbox rows a pull queued: inserted after its first mark, or carrying its version
    (a pending row it coalesced into). REST-hook posts its events planned are not among them:
    the hook sender of ``serve`` / ``worker`` pushes those, not the sync's own worker."""
    d = deliveries.c
    return ((d.tenant_id == tenant_id) & (d.connector != HOOKS)
            & or_(d.id > marks.first_id, d.idempotency_key.like(f"%:{marks.version}")))


def outcome_counts(runtime: Runtime, tenant_id: str, marks: Any) -> dict[str, dict[str, int]]:
    """Per connector, how many of the pull's rows are in each status."""
    d = deliveries.c
    found: dict[str, dict[str, int]] = {}
    with runtime.engine.connect() as conn:
        for connector, status, count in conn.execute(
                select(d.connector, d.status, func.count()).where(_ours(tenant_id, marks))
                .group_by(d.connector, d.status)):
            found.setdefault(connector, {})[status] = count
    return found


def unsettled(runtime: Runtime, tenant_id: str, marks: Any) -> int:
    d = deliveries.c
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            d.tenant_id == tenant_id, d.status.in_(("pending", "in_flight")),
            _ours(tenant_id, marks))).scalar() or 0)


# ------------------------------------------------------------------------ running


class _SentCounter:
    """The worker's observer: deliveries completed so far (for the progress display)."""

    def __init__(self) -> None:
        self.sent = 0
        self.by_connector: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, batch: Any, outcome: Any) -> None:
        with self._lock:
            self.sent += len(outcome.done)
            self.by_connector[batch.connector] = (self.by_connector.get(batch.connector, 0)
                                                  + len(outcome.done))


def _check_tenant(runtime: Runtime, tenant_id: str) -> None:
    from gateway.store.tables import tenants

    with runtime.engine.connect() as conn:
        if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
            raise UnknownTenant(f"unknown tenant {tenant_id!r}")


def run_sync(runtime: Runtime, tenant_id: str, route: str, *, dry_run: bool = False,
             progress: Progress | None = None, timeout: float | None = None) -> SyncSummary:
    """Run ``route``'s pull for the tenant now and deliver what it queued (see the module
    docstring). :class:`UnknownRoute` / :class:`UnknownTenant` before anything runs."""
    pull = find_pull(route)
    _check_tenant(runtime, tenant_id)
    if dry_run and not pull.dry_run:
        raise UnknownRoute(f"the {route} pull has no dry run")
    from gateway.pulls.progress import Estimator

    started = utcnow()
    clock = time.monotonic()
    summary = SyncSummary(route=route, tenant_id=tenant_id, dry_run=dry_run)
    hint = last_read(runtime, tenant_id, route)
    counter = _SentCounter()
    estimator = Estimator.for_tenant(runtime, tenant_id)
    worker = thread = None
    stop = threading.Event()
    if not dry_run:
        from gateway.relay.worker import Worker

        worker = Worker(runtime, observer=counter, tenant_id=tenant_id)
        thread = threading.Thread(target=worker.run_forever, args=(stop,),
                                  name="sync-delivery", daemon=True)
        thread.start()

    def report(read: int, queued: dict[str, int]) -> None:
        if progress is None:
            return
        progress.update(read=read, sent=counter.sent, total_hint=hint)
        set_eta = getattr(progress, "set_eta", None)
        if set_eta is not None:
            set_eta(estimator.seconds_left(read=read, total_hint=hint, queued=queued,
                                           sent=counter.by_connector))

    try:
        try:
            result = pull.run(runtime, tenant_id, utcnow(), dry_run=dry_run, progress=report)
        except Exception as exc:
            summary.error = describe_error(exc, runtime.settings)
            raise
        summary.counts.update({k: int(result.counts.get(k, 0)) for k in COUNTS})
        summary.per_destination = {c: dict(v) for c, v in result.per_destination.items()}
        summary.examples = dict(result.examples)
        if not dry_run:
            summary.settled = _wait_settled(runtime, tenant_id, result.marks, timeout, clock,
                                            lambda: report(result.counts.get("read", 0),
                                                           result.queued))
            _final_counts(runtime, tenant_id, result.marks, summary)
    finally:
        stop.set()
        if worker is not None:
            worker.stop()
            thread.join(timeout=60)
        summary.duration_seconds = time.monotonic() - clock
        if progress is not None and summary.error is None:
            report(summary.counts.get("read", 0), {})
        if not dry_run:
            _record(runtime, summary, started)
    return summary


def _wait_settled(runtime: Runtime, tenant_id: str, marks: Any, timeout: float | None,
                  clock: float, tick: Callable[[], None]) -> bool:
    while unsettled(runtime, tenant_id, marks):
        if timeout is not None and time.monotonic() - clock > timeout:
            return False
        tick()
        time.sleep(POLL_SECONDS)
    return True


def _final_counts(runtime: Runtime, tenant_id: str, marks: Any, summary: SyncSummary) -> None:
    outcomes = outcome_counts(runtime, tenant_id, marks)
    totals = dict.fromkeys(("sent", "failed", "dead"), 0)
    for connector, statuses in outcomes.items():
        per = summary.per_destination.setdefault(connector, {})
        per["sent"] = statuses.get("done", 0)
        per["dead"] = statuses.get("dead", 0)
        per["failed"] = statuses.get("pending", 0) + statuses.get("in_flight", 0)
        per["cancelled"] = statuses.get("cancelled", 0)
        for name in totals:
            totals[name] += per[name]
    summary.counts.update(totals)


def _record(runtime: Runtime, summary: SyncSummary, started: datetime) -> None:
    counts = {**{k: int(summary.counts.get(k, 0)) for k in COUNTS},
              "duration_seconds": round(summary.duration_seconds, 3), "trigger": "sync",
              "settled": summary.settled,
              "connectors": {c: dict(v) for c, v in summary.per_destination.items()}}
    try:
        record_run(runtime.engine, tenant_id=summary.tenant_id, route=summary.route,
                   started_at=started, finished_at=datetime.now(timezone.utc),
                   status="failed" if summary.error else "ok", counts=counts,
                   error=summary.error)
    except Exception:  # the run happened; a lost row is not worth a traceback
        import logging

        logging.getLogger("gateway.pulls").warning("the sync run was not recorded",
                                                   exc_info=True)
