"""Syncing a tenant's schedule rows with its settings and the registry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway.schedule import jobs, slots, store
from gateway.store import db, tenants
from tests.schedule.conftest import T0, add_schedule, schedule_row


def _noop(runtime, tenant_id, now):  # noqa: ANN001, ANN202
    return {}


def _registry() -> jobs.Registry:
    registry = jobs.builtin_registry()
    registry.register("rci-customers", _noop)  # its interval: pull_interval_minutes
    return registry


def _sync(engine, tenant_id: str, registry: jobs.Registry, now: datetime):  # noqa: ANN001,ANN202
    with db.write_transaction(engine) as conn:
        return store.sync_schedules(conn, tenant_id, tenants.get_settings(conn, tenant_id),
                                    registry=registry, now=now)


def _set(engine, tenant_id: str, **changes) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        tenants.update_settings(conn, tenant_id, changes)


def test_a_new_tenant_gets_a_row_per_registered_route_from_its_settings(sched_db, new_tenant):
    tenant = new_tenant()
    changes = _sync(sched_db.engine, tenant, _registry(), T0)
    assert sorted(c.route for c in changes) == ["rci-customers", "rescore", "retention"]
    pulls = schedule_row(sched_db.engine, tenant, "rci-customers")
    assert (pulls.interval_seconds, pulls.enabled, pulls.next_run_at) == (3600, True, T0)
    rescore = schedule_row(sched_db.engine, tenant, "rescore")
    assert rescore.interval_seconds == 1440 * 60
    # The re-score waits for its off-peak slot: the first 03:00 UTC after T0 (noon).
    assert rescore.next_run_at == datetime(2025, 6, 2, 3, 0, tzinfo=timezone.utc)
    assert schedule_row(sched_db.engine, tenant, "retention").interval_seconds == 3600
    assert schedule_row(sched_db.engine, tenant, "rekindle-poll") is None  # not registered


def test_an_unchanged_interval_keeps_next_run_at(sched_db, new_tenant):
    tenant, registry = new_tenant(), _registry()
    _sync(sched_db.engine, tenant, registry, T0)
    [row] = store.claim_due(sched_db.engine, "a", T0, 10, 1, routes=["rci-customers"])
    following = store.finish(sched_db.engine, row, row.token, T0)
    assert _sync(sched_db.engine, tenant, registry, T0 + timedelta(minutes=5)) == []
    assert schedule_row(sched_db.engine, tenant, "rci-customers").next_run_at == following


def test_a_shorter_interval_is_felt_at_once_and_a_longer_one_after_the_planned_run(
        sched_db, new_tenant):
    tenant, registry = new_tenant(), _registry()
    engine = sched_db.engine
    _sync(engine, tenant, registry, T0)
    [row] = store.claim_due(engine, "a", T0, 10, 1, routes=["rci-customers"])
    planned = store.finish(engine, row, row.token, T0)  # within the next hour
    assert T0 < planned <= T0 + timedelta(hours=1)

    _set(engine, tenant, pull_interval_minutes={"rci-customers": 5})
    now = T0 + timedelta(seconds=10)
    [change] = _sync(engine, tenant, registry, now)
    assert change.action == "interval"
    stored = schedule_row(engine, tenant, "rci-customers")
    offset = slots.offset_seconds(tenant, "rci-customers", 300)
    assert stored.interval_seconds == 300
    assert stored.next_run_at == min(planned, slots.slot_at_or_after(now, 300, offset))
    assert stored.next_run_at <= now + timedelta(minutes=5)

    _set(engine, tenant, pull_interval_minutes={"rci-customers": 120})
    before = schedule_row(engine, tenant, "rci-customers").next_run_at
    _sync(engine, tenant, registry, now)
    stored = schedule_row(engine, tenant, "rci-customers")
    assert (stored.interval_seconds, stored.next_run_at) == (7200, before)


def test_a_route_without_an_interval_is_disabled_and_enabled_again_when_it_has_one(
        sched_db, new_tenant):
    tenant = new_tenant()
    wanted = {"on": True}
    registry = jobs.Registry()
    registry.register("maybe", _noop, interval=lambda s: 60 if wanted["on"] else None)
    _sync(sched_db.engine, tenant, registry, T0)
    wanted["on"] = False
    [change] = _sync(sched_db.engine, tenant, registry, T0)
    assert change.action == "disable"
    assert schedule_row(sched_db.engine, tenant, "maybe").enabled is False
    assert store.claim_due(sched_db.engine, "a", T0, 10, 1, routes=["maybe"]) == []
    wanted["on"] = True
    [change] = _sync(sched_db.engine, tenant, registry, T0)
    assert change.action == "enable"
    assert len(store.claim_due(sched_db.engine, "a", T0, 10, 1, routes=["maybe"])) == 1


def test_rows_of_routes_this_process_does_not_know_are_left_alone(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, "someone-elses", interval=60)
    _sync(sched_db.engine, tenant, _registry(), T0)
    row = schedule_row(sched_db.engine, tenant, "someone-elses")
    assert (row.enabled, row.interval_seconds, row.next_run_at) == (True, 60, T0)


def test_a_row_another_process_inserted_first_is_kept_as_it_is(sched_db, new_tenant):
    """Another process inserted the row after this process planned to: the write re-plans
    under the writer's lock and finds nothing to do."""
    tenant, registry = new_tenant(), _registry()
    engine = sched_db.engine
    with engine.connect() as conn:
        plan = store.plan_sync(conn, tenant, tenants.get_settings(conn, tenant),
                               registry=registry, now=T0)
    assert any(c.route == "rci-customers" and c.action == "insert" for c in plan)
    add_schedule(engine, tenant, "rci-customers", interval=3600, next_run_at=T0 - timedelta(1))
    _sync(engine, tenant, registry, T0)
    assert schedule_row(engine, tenant, "rci-customers").next_run_at == T0 - timedelta(1)
