"""The tick: one short APScheduler 3 interval job per worker process that runs the schedule rows.

APScheduler 3 cannot share a job store between processes and never tells a job its fire time,
so it schedules nothing here but the tick itself (one interval job, ``max_instances=1``,
``coalesce=True``, every ``tick_seconds`` and up to half of that later, at random, so that
processes share the due rows). Each tick:

1. **syncs** the schedule rows of the tenants that are new or whose row changed since this
   process last looked (``tenants.updated_at``, which every settings change moves), of every
   tenant when the registry changed, and of every tenant every ``resync_seconds`` anyway: a
   tenant or a setting added by any process is picked up at the next tick;
2. **claims** due rows (:func:`gateway.schedule.store.claim_due`) for its free run threads and
   hands each to one. A run thread runs its job, records it in ``sync_runs``, finishes the row
   (next slot) or, when the job raised, releases it to retry after ``retry_seconds`` (or at its
   next slot, if sooner), then claims the next due row itself, until none is due. So the tick
   stays short whatever the jobs take, and a backlog drains at the threads' pace, not one row
   per tick.

**Leases and long runs.** A row is claimed for ``lease_seconds`` (the process setting; longer
where the job asks for it, e.g. the re-score). While a job runs, a heartbeat thread renews its
lease every ``heartbeat_seconds`` (a third of the lease), fenced by the token, so a job may
outlive its first lease without another process running the same slot. If the process dies
(SIGKILL) the heartbeat stops with it; once the lease has passed, another process claims the
row and runs that slot again (a run is at-least-once: jobs are written to be repeatable). If a
renewal finds the lease taken over (this process stalled past it), the run is logged as having
lost its lease and its finish changes nothing. On SQLite a job that holds the database's writer
(the re-score) blocks renewals until it commits; its lease is therefore long enough for the
whole pass (:data:`gateway.schedule.jobs.RESCORE_LEASE_SECONDS`).

**Where it runs.** ``python app.py worker`` and the embedded ``serve`` call :func:`run_ticker`.
It never runs inside a gunicorn worker (a scheduler per gunicorn worker would run every tick
once per worker, and gunicorn may kill a worker at any time): :meth:`Ticker.start` refuses when
gunicorn set ``SERVER_SOFTWARE`` in the environment (its arbiter does, for every worker it
forks) or the program is gunicorn (:func:`inside_gunicorn`).

**Stopping.** :meth:`Ticker.shutdown` stops the tick, lets the runs in progress finish (each
then finishes its row) and claims nothing more; jobs can watch
:attr:`~gateway.schedule.jobs.ScheduleRun.stopping` to end a long run early.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import select

from gateway import logs
from gateway.runtime import Runtime
from gateway.schedule import jobs, slots, store
from gateway.schedule.runs import describe_error, record_run
from gateway.store import db
from gateway.store.tables import tenants
from gateway.store.tenants import get_settings
from gateway.store.types import utcnow

log = logging.getLogger("gateway.schedule")

#: How long after a failed run it is tried again (seconds), unless its next slot is sooner.
RETRY_SECONDS = 300.0
#: How often every tenant's rows are synced, changed or not (seconds).
RESYNC_SECONDS = 600.0
#: The APScheduler job's id: the only job this process's scheduler holds.
TICK_JOB_ID = "gateway-schedule-tick"


class TickerRefused(RuntimeError):
    """The ticker would not start here (inside a gunicorn worker)."""


def inside_gunicorn(environ: Mapping[str, str] | None = None,
                    argv: Sequence[str] | None = None) -> bool:
    """True in a process gunicorn started (its arbiter sets ``SERVER_SOFTWARE=gunicorn/X`` in
    the environment its workers inherit) or when the program itself is gunicorn."""
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    if "gunicorn" in environ.get("SERVER_SOFTWARE", "").lower():
        return True
    return bool(argv) and "gunicorn" in Path(argv[0] or "").name.lower()


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _jsonable(counts: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(counts), default=str))


class Ticker:
    """Runs the schedule rows of the routes in ``registry`` (the process's by default).

    ``clock`` (an aware UTC datetime) is injectable for tests; timings default to the process
    settings (``tick_seconds``, ``lease_seconds``)."""

    def __init__(self, runtime: Runtime, owner: str | None = None, *,
                 registry: jobs.Registry | None = None, threads: int = 2,
                 clock: Callable[[], datetime] = utcnow, tick_seconds: float | None = None,
                 lease_seconds: float | None = None, heartbeat_seconds: float | None = None,
                 retry_seconds: float = RETRY_SECONDS,
                 resync_seconds: float = RESYNC_SECONDS) -> None:
        if threads < 1:
            raise ValueError("a ticker needs at least one run thread")
        self.runtime = runtime
        self.owner = owner or default_owner()
        self.registry = registry if registry is not None else jobs.REGISTRY
        self.threads = threads
        self.clock = clock
        self.tick_seconds = tick_seconds or runtime.settings.tick_seconds
        self.lease_seconds = lease_seconds or runtime.settings.lease_seconds
        self.heartbeat_seconds = heartbeat_seconds or self.lease_seconds / 3
        self.retry_seconds = retry_seconds
        self.resync_seconds = resync_seconds
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="schedule-run")
        self._active = 0  # run threads at work (claimed or running)
        self._running: dict[tuple[str, str], store.ClaimedSchedule] = {}
        self._seen: dict[str, Any] = {}  # tenant id -> updated_at when last synced
        self._synced_version: int | None = None
        self._last_full_sync = float("-inf")
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._scheduler: Any = None

    # ------------------------------------------------------------------------------ the tick

    def tick(self) -> list[Future]:
        """Sync changed tenants, claim due rows for the free run threads and start them; the
        futures of the run threads started (each runs until nothing is due)."""
        if self.stopping.is_set():
            return []
        self.sync()
        with self._lock:
            free = self.threads - self._active
            self._active += free
        claimed: list[store.ClaimedSchedule] = []
        try:
            claimed = self._claim(free) if free else []
        finally:
            with self._lock:
                self._active -= free - len(claimed)
        if claimed:
            self._ensure_heartbeat()
        return [self._pool.submit(self._work, row) for row in claimed]

    def run_due(self, timeout: float | None = None) -> None:
        """One tick, waiting for its run threads to end (tests and one-off runs)."""
        for future in self.tick():
            future.result(timeout=timeout)

    def sync(self) -> int:
        """Sync the rows of new and changed tenants (all of them when due); how many tenants
        were synced."""
        now = self.clock()
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(select(tenants.c.id, tenants.c.updated_at)).all()
        version = self.registry.version
        full = (version != self._synced_version
                or time.monotonic() - self._last_full_sync >= self.resync_seconds)
        synced, failed = 0, False
        for tenant_id, updated_at in rows:
            if not full and self._seen.get(tenant_id) == updated_at:
                continue
            try:
                self._sync_tenant(tenant_id, now)
            except Exception as exc:  # one tenant's trouble must not stop the others
                failed = True
                log.warning("schedules of tenant %s not synced: %s", tenant_id,
                            describe_error(exc, self.runtime.settings))
                continue
            self._seen[tenant_id] = updated_at
            synced += 1
        if full and not failed:
            self._synced_version, self._last_full_sync = version, time.monotonic()
        return synced

    def _sync_tenant(self, tenant_id: str, now: datetime) -> None:
        engine = self.runtime.engine
        with engine.connect() as conn:
            plan = store.plan_sync(conn, tenant_id, get_settings(conn, tenant_id),
                                   registry=self.registry, now=now)
        if plan:  # take the writer only when there is something to write
            with db.write_transaction(engine) as conn:
                store.sync_schedules(conn, tenant_id, get_settings(conn, tenant_id),
                                     registry=self.registry, now=now)

    def _claim(self, limit: int) -> list[store.ClaimedSchedule]:
        return store.claim_due(self.runtime.engine, self.owner, self.clock(), self.lease_seconds,
                               limit, routes=self.registry.routes,
                               route_leases=self.registry.leases())

    # ------------------------------------------------------------------------------ the runs

    def _work(self, row: store.ClaimedSchedule | None) -> None:
        """Run ``row``, then claim and run due rows one by one until none is due."""
        try:
            while row is not None:
                self._run_one(row)
                if self.stopping.is_set():
                    return
                try:
                    found = self._claim(1)
                except Exception as exc:
                    log.warning("claiming schedules failed: %s",
                                describe_error(exc, self.runtime.settings))
                    return
                row = found[0] if found else None
        finally:
            with self._lock:
                self._active -= 1

    def _lease_of(self, route: str) -> float:
        job = self.registry.get(route)
        return max(self.lease_seconds, job.lease_seconds if job else 0.0)

    def _run_one(self, row: store.ClaimedSchedule) -> None:
        job = self.registry.get(row.route)
        key = (row.tenant_id, row.route)
        with self._lock:
            self._running[key] = row
        started = self.clock()
        status, counts, error = "ok", {}, None
        context = jobs.set_current_run(jobs.ScheduleRun(
            row.tenant_id, row.route, row.slot, row.owner, row.token, self.stopping))
        try:
            if job is None:
                raise LookupError(f"no job for route {row.route!r} in this process")
            counts = _jsonable(job.run(self.runtime, row.tenant_id, started) or {})
        except Exception as exc:
            status, error = "failed", describe_error(exc, self.runtime.settings)
        finally:
            jobs.reset_current_run(context)
            with self._lock:
                self._running.pop(key, None)
        ended = self.clock()
        logs.event(log, "schedule.run",
                   f"schedule {row.route} of tenant {row.tenant_id} (slot "
                   f"{row.slot.isoformat()}) " + (f"failed: {error}" if error else "ran"),
                   level=logging.WARNING if error else logging.INFO, tenant_id=row.tenant_id,
                   route=row.route, slot=row.slot.isoformat(), status=status,
                   seconds=round((ended - started).total_seconds(), 3), counts=counts,
                   error=error)
        try:
            record_run(self.runtime.engine, tenant_id=row.tenant_id, route=row.route,
                       started_at=started, finished_at=ended, status=status,
                       counts={**counts, "slot": row.slot.isoformat(), "worker": self.owner},
                       error=error)
        except Exception as exc:
            log.warning("run of schedule %s of tenant %s not recorded: %s", row.route,
                        row.tenant_id, describe_error(exc, self.runtime.settings))
        try:
            self._settle(row, job, ok=status == "ok", ended=ended)
        except Exception as exc:  # the lease runs out and another process runs the slot
            log.warning("schedule %s of tenant %s not settled: %s", row.route, row.tenant_id,
                        describe_error(exc, self.runtime.settings))

    def _settle(self, row: store.ClaimedSchedule, job: jobs.Job | None, *, ok: bool,
                ended: datetime) -> None:
        anchor = job.anchor_seconds if job else None
        engine = self.runtime.engine
        if ok:
            owned = store.finish(engine, row, row.token, ended, anchor_seconds=anchor) is not None
        else:
            offset = slots.offset_seconds(row.tenant_id, row.route, row.interval_seconds, anchor)
            retry_at = min(ended + timedelta(seconds=self.retry_seconds),
                           slots.next_slot_after(ended, row.interval_seconds, offset))
            owned = store.release(engine, row, row.token, ended, retry_at)
        if not owned:
            log.warning("schedule %s of tenant %s: the lease of slot %s was taken over while "
                        "it ran", row.route, row.tenant_id, row.slot.isoformat())

    # ------------------------------------------------------------------------ the heartbeat

    def renew_leases(self) -> int:
        """Renew the leases of the runs in progress; how many are still ours."""
        with self._lock:
            running = list(self._running.values())
        owned = 0
        for row in running:
            try:
                if store.renew(self.runtime.engine, row, row.token, self.clock(),
                               self._lease_of(row.route)) is not None:
                    owned += 1
                else:
                    log.warning("schedule %s of tenant %s lost its lease while running",
                                row.route, row.tenant_id)
            except Exception as exc:  # e.g. SQLite's writer held by the job itself
                log.info("lease of schedule %s of tenant %s not renewed this time: %s",
                         row.route, row.tenant_id, describe_error(exc, self.runtime.settings))
        return owned

    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is not None:
                return
            self._heartbeat = threading.Thread(target=self._beat, name="schedule-heartbeat",
                                               daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(self.heartbeat_seconds):
            self.renew_leases()

    # --------------------------------------------------------------------- start and stop

    @property
    def scheduler(self) -> Any:
        """The APScheduler ``BackgroundScheduler`` (None before :meth:`start`)."""
        return self._scheduler

    def start(self) -> None:
        """Start ticking in the background: an APScheduler 3 ``BackgroundScheduler`` holding
        one interval job, the tick. Raises :class:`TickerRefused` inside gunicorn."""
        if inside_gunicorn():
            raise TickerRefused(
                "the schedule ticker does not run inside gunicorn (each worker would run every "
                "schedule): run `python app.py worker` beside the API instead")
        from apscheduler.executors.pool import ThreadPoolExecutor as TickExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        executor_log = logging.getLogger("apscheduler.executors.default")
        if executor_log.level == logging.NOTSET:  # two INFO lines a tick, unless asked for
            executor_log.setLevel(logging.WARNING)
        scheduler = BackgroundScheduler(timezone=timezone.utc,
                                        executors={"default": TickExecutor(1)})
        # Each tick comes up to half a tick late at random: processes started together would
        # otherwise keep their phases, and the one that ticks first after a slot falls due
        # would claim every slot while the others found nothing due.
        scheduler.add_job(self._tick_logged, "interval", seconds=self.tick_seconds,
                          jitter=self.tick_seconds / 2, id=TICK_JOB_ID, max_instances=1,
                          coalesce=True,
                          misfire_grace_time=None, next_run_time=datetime.now(timezone.utc))
        scheduler.start()
        self._scheduler = scheduler
        log.info("schedule ticker %s started (tick %gs, lease %gs, %d run threads)",
                 self.owner, self.tick_seconds, self.lease_seconds, self.threads)

    def _tick_logged(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # the database may be away for a while; tick again later
            log.warning("schedule tick failed: %s", describe_error(exc, self.runtime.settings))

    def shutdown(self, wait: bool = True) -> None:
        """Stop ticking and claiming. With ``wait``, the runs in progress finish (and settle
        their rows) first; without, they are left to their leases (for a process about to
        exit)."""
        self.stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
        self._pool.shutdown(wait=wait)
        self._heartbeat_stop.set()
        if wait and self._heartbeat is not None:
            self._heartbeat.join(timeout=30)
        log.info("schedule ticker %s stopped", self.owner)


def run_ticker(runtime: Runtime, stop_event: threading.Event, **options: Any) -> None:
    """Run a :class:`Ticker` (``options`` are its keyword arguments) until ``stop_event`` is
    set, then shut it down, letting the runs in progress finish. For ``python app.py worker``
    and the embedded ``serve`` (in a thread of their own)."""
    ticker = Ticker(runtime, **options)
    ticker.start()
    try:
        while not stop_event.wait(0.5):
            pass
    finally:
        ticker.shutdown(wait=True)
