"""Schedule rows: syncing them with a tenant's settings, claiming due ones under a lease, and
settling them only while the lease is ours.

A row is one (tenant, route) with its interval, ``next_run_at`` and a lease. It is **due** when
it is enabled, its ``next_run_at`` has come, and it is not under a live lease (none, or one that
expired: its process died or stalled). :func:`claim_due` takes due rows in one short
transaction, the way deliveries are claimed (:mod:`gateway.relay.claim`): ``SELECT ... FOR
UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite
(:func:`gateway.store.db.write_transaction`), so two processes never claim the same row, and
commits before the job runs. The claimed ``next_run_at`` is the run's **slot**.

:func:`finish`, :func:`release` and :func:`renew` change a row only ``WHERE lease_token =
<ours>`` (fencing): a process that stalled past its lease while another took the row over
changes nothing, and learns it from the answer. A row whose lease expired but that nobody took
over is still ours (its token is unchanged), so a late finish is kept: nobody else ran it.

:func:`finish` sets ``next_run_at`` to the first slot of the schedule's grid
(:mod:`gateway.schedule.slots`) strictly after the run ended: slots are anchored to a fixed
grid, not to the previous run or to ``now``, so a schedule that missed several slots runs once
and then goes back on its grid, and a late run does not make every later run late.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Collection, Mapping

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from gateway.model import utc
from gateway.schedule import slots
from gateway.schedule.jobs import Job, Registry
from gateway.store import db
from gateway.store.tables import schedules
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for
from gateway.tenant_settings import TenantSettings

s = schedules.c


@dataclass(frozen=True)
class ClaimedSchedule:
    """A schedule row claimed under a lease; ``slot`` is the ``next_run_at`` it was due at."""

    tenant_id: str
    route: str
    interval_seconds: int
    slot: datetime
    owner: str
    token: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Change:
    """One change :func:`sync_schedules` makes to a tenant's rows."""

    route: str
    action: str  # insert, interval, enable, disable
    values: Mapping[str, Any]
    old_interval: int | None = None  # for "interval": the value it replaces


def first_run(job: Job, tenant_id: str, interval: int, now: datetime) -> datetime:
    """When a new schedule first runs: at once, or at its anchor's first slot."""
    if job.anchor_seconds is None:
        return now
    offset = slots.offset_seconds(tenant_id, job.route, interval, job.anchor_seconds)
    return slots.slot_at_or_after(now, interval, offset)


def plan_sync(conn: Connection, tenant_id: str, settings: TenantSettings, *,
              registry: Registry, now: datetime | None = None) -> list[Change]:
    """What :func:`sync_schedules` would change (read only). Only the registry's routes are
    looked at; rows of other routes are left alone."""
    now = utc(now) or utcnow()
    routes = registry.routes
    if not routes:
        return []
    rows = {row.route: row for row in conn.execute(
        select(s.route, s.interval_seconds, s.enabled, s.next_run_at)
        .where(s.tenant_id == tenant_id, s.route.in_(routes)))}
    changes: list[Change] = []
    for job in registry:
        interval = job.interval(settings)
        row = rows.get(job.route)
        if not interval:
            if row is not None and row.enabled:
                changes.append(Change(job.route, "disable", {"enabled": False}))
            continue
        interval = int(interval)
        if row is None:
            changes.append(Change(job.route, "insert", {
                "interval_seconds": interval, "enabled": True,
                "next_run_at": first_run(job, tenant_id, interval, now)}))
        elif row.interval_seconds != interval:
            # The sooner of the current next run and the new grid's first slot: a shorter
            # interval is felt at once, a longer one after the run already planned.
            offset = slots.offset_seconds(tenant_id, job.route, interval, job.anchor_seconds)
            soonest = min(utc(row.next_run_at), slots.slot_at_or_after(now, interval, offset))
            changes.append(Change(job.route, "interval", {
                "interval_seconds": interval, "enabled": True, "next_run_at": soonest},
                old_interval=row.interval_seconds))
        elif not row.enabled:
            changes.append(Change(job.route, "enable", {"enabled": True}))
    return changes


def sync_schedules(conn: Connection, tenant_id: str, settings: TenantSettings, *,
                   registry: Registry, now: datetime | None = None) -> list[Change]:
    """Make the tenant's rows match its settings: a row per registered route that has an
    interval (new ones first run at once, or at their anchor), the interval updated where it
    changed, rows without an interval disabled. ``next_run_at`` is kept when the interval is
    unchanged. Runs in the caller's transaction; safe to run from several processes at once
    (inserts do nothing on a conflict, updates name the value they replace). Returns the
    changes made."""
    changes = plan_sync(conn, tenant_id, settings, registry=registry, now=now)
    for change in changes:
        values = dict(change.values)
        where = [s.tenant_id == tenant_id, s.route == change.route]
        if change.action == "insert":
            conn.execute(insert_for(conn, schedules)
                         .values(tenant_id=tenant_id, route=change.route, **values)
                         .on_conflict_do_nothing(index_elements=["tenant_id", "route"]))
            continue
        if change.action == "interval":
            where.append(s.interval_seconds == change.old_interval)
        conn.execute(update(schedules).where(*where).values(**values))
    return changes


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(s.lease_expires_at.is_(None), s.lease_expires_at <= now)


def claim_due(engine: Engine, owner: str, now: datetime, lease_seconds: float, limit: int, *,
              routes: Collection[str], route_leases: Mapping[str, float] | None = None
              ) -> list[ClaimedSchedule]:
    """Claim up to ``limit`` due rows of ``routes``, the longest due first, each under a new
    lease of ``lease_seconds`` (or its route's longer minimum from ``route_leases``)."""
    routes = list(routes)
    if not routes or limit <= 0:
        return []
    now = utc(now)
    route_leases = route_leases or {}
    query = (select(s.tenant_id, s.route, s.interval_seconds, s.next_run_at)
             .where(s.enabled.is_(True), s.next_run_at <= now, s.route.in_(routes), _due(now))
             .order_by(s.next_run_at, s.tenant_id, s.route)
             .limit(limit))
    claimed: list[ClaimedSchedule] = []
    with db.write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in conn.execute(query).all():
            token = secrets.token_hex(16)
            lease = max(lease_seconds, route_leases.get(row.route, 0.0))
            expires = now + timedelta(seconds=lease)
            conn.execute(update(schedules)
                         .where(s.tenant_id == row.tenant_id, s.route == row.route)
                         .values(lease_owner=owner, lease_token=token, lease_expires_at=expires))
            claimed.append(ClaimedSchedule(row.tenant_id, row.route, row.interval_seconds,
                                           utc(row.next_run_at), owner, token, expires))
    return claimed


def _fenced(row: ClaimedSchedule, token: str) -> list[ColumnElement[bool]]:
    return [s.tenant_id == row.tenant_id, s.route == row.route, s.lease_token == token]


def finish(engine: Engine, row: ClaimedSchedule, token: str, now: datetime, *,
           anchor_seconds: float | None = None) -> datetime | None:
    """Record a run that ended at ``now``: ``last_run_at``, ``next_run_at`` = the first slot of
    the grid strictly after ``now`` (and after the run's slot), the lease cleared. The grid is
    the row's current interval's (it may have changed while the job ran). Returns the next
    run, or None when the lease is no longer ours (nothing changed)."""
    now = utc(now)
    with db.write_transaction(engine) as conn:
        query = select(s.interval_seconds).where(*_fenced(row, token))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        interval = conn.execute(query).scalar()
        if interval is None:
            return None
        offset = slots.offset_seconds(row.tenant_id, row.route, interval, anchor_seconds)
        following = slots.next_slot_after(max(now, row.slot), interval, offset)
        conn.execute(update(schedules).where(*_fenced(row, token)).values(
            last_run_at=now, next_run_at=following, lease_owner=None, lease_token=None,
            lease_expires_at=None))
    return following


def release(engine: Engine, row: ClaimedSchedule, token: str, now: datetime,
            retry_at: datetime) -> bool:
    """Give the row back after a failed run, to run again at ``retry_at``; False when the lease
    is no longer ours. ``last_run_at`` is left as it was (it is the last run that succeeded)."""
    with db.write_transaction(engine) as conn:
        return conn.execute(update(schedules).where(*_fenced(row, token)).values(
            next_run_at=utc(retry_at), lease_owner=None, lease_token=None,
            lease_expires_at=None)).rowcount == 1


def renew(engine: Engine, row: ClaimedSchedule, token: str, now: datetime,
          lease_seconds: float) -> datetime | None:
    """Extend the lease of a run still going to ``now + lease_seconds`` (never shortening it);
    the new expiry, or None when the lease is no longer ours."""
    expires = utc(now) + timedelta(seconds=lease_seconds)
    with db.write_transaction(engine) as conn:
        current = conn.execute(select(s.lease_expires_at).where(*_fenced(row, token))).first()
        if current is None:
            return None
        if current.lease_expires_at is not None and utc(current.lease_expires_at) >= expires:
            return utc(current.lease_expires_at)
        conn.execute(update(schedules).where(*_fenced(row, token))
                     .values(lease_expires_at=expires))
    return expires


def list_schedules(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's schedule rows, by route (lease tokens left out)."""
    query = (select(s.tenant_id, s.route, s.interval_seconds, s.enabled, s.next_run_at,
                    s.last_run_at, s.lease_owner, s.lease_expires_at)
             .where(s.tenant_id == tenant_id).order_by(s.route))
    return [dict(row._mapping) for row in conn.execute(query)]
