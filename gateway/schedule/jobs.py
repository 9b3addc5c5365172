"""What a schedule runs: a registry from route to job, and the built-in jobs.

A job is ``fn(runtime, tenant_id, now) -> counts`` (a JSON-able mapping, recorded in
``sync_runs``). It runs in one of the ticker's threads under the schedule's lease; a job that
wants to know its slot, or whether the process is stopping (to end a long walk early and let
the next slot carry on), reads :func:`current_run`.

Built in:

- ``rescore``: :func:`gateway.scoring.rescore.rescore_tenant`, every
  ``pull_interval_minutes["rescore"]`` (default 1440), with its slots anchored at **03:00 UTC**
  (off-peak: on SQLite the pass holds the database's single writer while it runs). Its lease is
  at least :data:`RESCORE_LEASE_SECONDS`, because on SQLite the lease cannot be renewed while
  the pass itself holds the writer (see :mod:`gateway.schedule.ticker`).
- ``retention``: :func:`gateway.schedule.retention.run_retention`, hourly, spread per tenant.

The pulls (``rci-customers``, ``rekindle-poll``) are registered by their module with
:func:`register`; their interval is the tenant's ``pull_interval_minutes[route]``.

A process syncs and claims only the routes it has registered, so processes with different
registries (an older release, a test job) leave each other's rows alone.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from gateway.tenant_settings import TenantSettings

if TYPE_CHECKING:
    from gateway.runtime import Runtime

JobFunction = Callable[["Runtime", str, datetime], Mapping[str, Any]]
IntervalOf = Callable[[TenantSettings], "int | None"]

RESCORE = "rescore"
RETENTION = "retention"
#: When the re-score's slots fall: 03:00 UTC, seconds after midnight.
RESCORE_ANCHOR_SECONDS = 3 * 3600
#: The re-score's shortest lease (seconds): longer than a pass is expected to take.
RESCORE_LEASE_SECONDS = 1800.0
RETENTION_INTERVAL_SECONDS = 3600


def pull_interval(route: str) -> IntervalOf:
    """The interval of ``route`` from the tenant's ``pull_interval_minutes`` (seconds); None
    (no schedule) when the tenant has no interval for it."""

    def interval(settings: TenantSettings) -> int | None:
        minutes = (settings.pull_interval_minutes or {}).get(route)
        return int(minutes) * 60 if minutes else None

    return interval


@dataclass(frozen=True)
class Job:
    """A route's job and how it is scheduled.

    ``interval`` gives a tenant's interval in seconds (None: the tenant has no such schedule,
    its row is disabled). ``anchor_seconds``: seconds after midnight UTC where the slots fall,
    the first run waiting for the first of them; None: slots spread per tenant and the first
    run is at once. ``lease_seconds``: the shortest lease the job is claimed with (the
    process's ``lease_seconds`` when longer)."""

    route: str
    run: JobFunction
    interval: IntervalOf
    anchor_seconds: float | None = None
    lease_seconds: float = 0.0


@dataclass
class Registry:
    """Routes and their jobs. ``version`` grows with every change, so a ticker knows to sync
    every tenant again when a job was registered after it started."""

    jobs: dict[str, Job] = field(default_factory=dict)
    version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def register(self, route: str, fn: JobFunction, *, interval: IntervalOf | None = None,
                 anchor_seconds: float | None = None, lease_seconds: float = 0.0,
                 replace: bool = False) -> Job:
        """Register ``fn`` for ``route``; its interval defaults to the tenant's
        ``pull_interval_minutes[route]``. Registering a route twice is an error unless
        ``replace``."""
        route = (route or "").strip()
        if not route or len(route) > 64:
            raise ValueError("a route is a name of 1 to 64 characters")
        job = Job(route, fn, interval or pull_interval(route), anchor_seconds, lease_seconds)
        with self._lock:
            if route in self.jobs and not replace:
                raise ValueError(f"route {route!r} already has a job")
            self.jobs[route] = job
            self.version += 1
        return job

    def get(self, route: str) -> Job | None:
        return self.jobs.get(route)

    @property
    def routes(self) -> list[str]:
        return sorted(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter([self.jobs[r] for r in self.routes])

    def leases(self) -> dict[str, float]:
        """The routes whose jobs ask for a minimum lease."""
        return {job.route: job.lease_seconds for job in self if job.lease_seconds}


@dataclass(frozen=True)
class ScheduleRun:
    """The run a job is part of: its schedule, the slot (the ``next_run_at`` it was claimed
    at), the lease's owner and token, and an event set when the process is stopping."""

    tenant_id: str
    route: str
    slot: datetime
    owner: str
    token: str
    stopping: threading.Event


_current: contextvars.ContextVar[ScheduleRun | None] = contextvars.ContextVar(
    "gateway_schedule_run", default=None)


def current_run() -> ScheduleRun | None:
    """The run the calling job is part of (None outside a scheduled run)."""
    return _current.get()


def set_current_run(run: ScheduleRun | None) -> contextvars.Token:
    return _current.set(run)


def reset_current_run(token: contextvars.Token) -> None:
    _current.reset(token)


# --------------------------------------------------------------------------- built-in jobs


def rescore_job(runtime: "Runtime", tenant_id: str, now: datetime) -> dict[str, Any]:
    """Re-score every customer of the tenant (statuses move with time alone)."""
    from gateway.scoring.rescore import rescore_tenant

    result = rescore_tenant(runtime.engine, tenant_id, now=now).as_dict()
    result.pop("tenant_id", None)
    return result


def retention_job(runtime: "Runtime", tenant_id: str, now: datetime) -> dict[str, Any]:
    """Drop the tenant's old dedupe keys, idempotency answers and done deliveries."""
    from gateway.schedule.retention import run_retention

    return run_retention(runtime.engine, tenant_id, now=now,
                         done_retention_days=runtime.settings.done_retention_days)


def builtin_registry() -> Registry:
    """A registry holding the built-in jobs (re-score and retention)."""
    registry = Registry()
    registry.register(RESCORE, rescore_job, interval=pull_interval(RESCORE),
                      anchor_seconds=RESCORE_ANCHOR_SECONDS,
                      lease_seconds=RESCORE_LEASE_SECONDS)
    registry.register(RETENTION, retention_job,
                      interval=lambda _settings: RETENTION_INTERVAL_SECONDS)
    return registry


#: The process's registry: the built-ins, and whatever modules add with :func:`register`.
REGISTRY = builtin_registry()


def register(route: str, fn: JobFunction, **options: Any) -> Job:
    """Register a job in the process's registry (see :meth:`Registry.register`)."""
    return REGISTRY.register(route, fn, **options)
