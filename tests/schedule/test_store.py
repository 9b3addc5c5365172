"""Claiming, finishing, releasing and renewing schedule rows, fenced by the lease token, on the
run's database (SQLite, or PostgreSQL with GATEWAY_TEST_DATABASE_URL)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from gateway.schedule import slots, store
from tests.schedule.conftest import T0, add_schedule, schedule_row

S = timedelta(seconds=1)
ROUTE = "test-route"


def _grid_point(tenant_id: str, interval: int = 60):  # noqa: ANN202
    """A slot of (tenant, ROUTE)'s spread grid at or after T0."""
    offset = slots.offset_seconds(tenant_id, ROUTE, interval)
    return slots.slot_at_or_after(T0, interval, offset), offset


def test_a_due_row_is_claimed_once_under_a_lease_and_again_only_after_it_expires(
        sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    engine = sched_db.engine

    assert store.claim_due(engine, "a", T0 - S, 10, 5, routes=[ROUTE]) == []  # not due yet
    [first] = store.claim_due(engine, "a", T0, 10, 5, routes=[ROUTE])
    assert (first.tenant_id, first.route, first.slot, first.owner) == (tenant, ROUTE, T0, "a")
    assert first.lease_expires_at == T0 + 10 * S
    row = schedule_row(engine, tenant, ROUTE)
    assert (row.lease_owner, row.lease_token) == ("a", first.token)

    assert store.claim_due(engine, "b", T0 + 9 * S, 10, 5, routes=[ROUTE]) == []
    [second] = store.claim_due(engine, "b", T0 + 10 * S, 10, 5, routes=[ROUTE])
    assert second.slot == T0 and second.owner == "b" and second.token != first.token


def test_finish_and_release_change_nothing_once_the_lease_was_taken_over(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    engine = sched_db.engine
    [stale] = store.claim_due(engine, "a", T0, 10, 1, routes=[ROUTE])
    [current] = store.claim_due(engine, "b", T0 + 11 * S, 10, 1, routes=[ROUTE])

    assert store.finish(engine, stale, stale.token, T0 + 12 * S) is None
    assert store.release(engine, stale, stale.token, T0 + 12 * S, T0 + 60 * S) is False
    assert store.renew(engine, stale, stale.token, T0 + 12 * S, 10) is None
    row = schedule_row(engine, tenant, ROUTE)
    assert row.lease_token == current.token and row.lease_owner == "b"
    assert row.next_run_at == T0 and row.last_run_at is None

    following = store.finish(engine, current, current.token, T0 + 12 * S)
    row = schedule_row(engine, tenant, ROUTE)
    assert row.next_run_at == following and row.last_run_at == T0 + 12 * S
    assert (row.lease_owner, row.lease_token, row.lease_expires_at) == (None, None, None)


def test_a_late_finish_is_kept_when_nobody_took_the_row_over(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    [claimed] = store.claim_due(sched_db.engine, "a", T0, 10, 1, routes=[ROUTE])
    assert store.finish(sched_db.engine, claimed, claimed.token, T0 + 30 * S) is not None


def test_finish_sets_the_next_slot_strictly_after_the_end_on_the_grid(sched_db, new_tenant):
    tenant = new_tenant()
    slot, offset = _grid_point(tenant)
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=slot)
    engine = sched_db.engine

    [row] = store.claim_due(engine, "a", slot, 10, 1, routes=[ROUTE])
    assert store.finish(engine, row, row.token, slot) == slot + 60 * S  # strictly after
    [row] = store.claim_due(engine, "a", slot + 60 * S, 10, 1, routes=[ROUTE])
    ended = slot + 60 * S + timedelta(milliseconds=1500)  # a run that took 1.5 s
    assert store.finish(engine, row, row.token, ended) == slot + 120 * S  # still on the grid
    assert slots.on_grid(schedule_row(engine, tenant, ROUTE).next_run_at, 60, offset)


def test_a_schedule_that_missed_many_slots_runs_once_then_goes_back_on_its_grid(
        sched_db, new_tenant):
    tenant = new_tenant()
    slot, _ = _grid_point(tenant)
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=slot)
    engine = sched_db.engine
    late = slot + timedelta(seconds=60 * 10 + 30)  # ten and a half intervals later

    claimed = store.claim_due(engine, "a", late, 10, 10, routes=[ROUTE])
    assert [c.slot for c in claimed] == [slot]  # one run, not eleven
    assert store.finish(engine, claimed[0], claimed[0].token, late) == slot + 11 * 60 * S
    assert store.claim_due(engine, "a", late, 10, 10, routes=[ROUTE]) == []
    assert len(store.claim_due(engine, "a", slot + 11 * 60 * S, 10, 10, routes=[ROUTE])) == 1


def test_release_gives_the_row_back_for_a_retry_without_counting_a_run(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    engine = sched_db.engine
    [row] = store.claim_due(engine, "a", T0, 10, 1, routes=[ROUTE])
    assert store.release(engine, row, row.token, T0 + S, T0 + 30 * S) is True
    stored = schedule_row(engine, tenant, ROUTE)
    assert stored.next_run_at == T0 + 30 * S and stored.last_run_at is None
    assert stored.lease_token is None
    assert store.claim_due(engine, "a", T0 + 29 * S, 10, 1, routes=[ROUTE]) == []
    [again] = store.claim_due(engine, "b", T0 + 30 * S, 10, 1, routes=[ROUTE])
    assert again.slot == T0 + 30 * S


def test_renew_extends_a_live_lease_and_never_shortens_it(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    engine = sched_db.engine
    [row] = store.claim_due(engine, "a", T0, 10, 1, routes=[ROUTE])
    assert store.renew(engine, row, row.token, T0 + 5 * S, 10) == T0 + 15 * S
    assert store.renew(engine, row, row.token, T0 + 6 * S, 2) == T0 + 15 * S
    assert schedule_row(engine, tenant, ROUTE).lease_expires_at == T0 + 15 * S
    assert store.claim_due(engine, "b", T0 + 12 * S, 10, 1, routes=[ROUTE]) == []
    assert store.renew(engine, replace(row, token="not-ours"), "not-ours", T0, 10) is None


def test_claim_takes_only_enabled_rows_of_its_routes_longest_due_first_and_up_to_the_limit(
        sched_db, new_tenant):
    tenant = new_tenant()
    engine = sched_db.engine
    for i, route in enumerate(["r-c", "r-a", "r-b"]):
        add_schedule(engine, tenant, route, next_run_at=T0 - (i + 1) * S)
    add_schedule(engine, tenant, "r-off", next_run_at=T0 - 60 * S, enabled=False)
    add_schedule(engine, tenant, "elsewhere", next_run_at=T0 - 60 * S)
    routes = ["r-a", "r-b", "r-c", "r-off"]

    two = store.claim_due(engine, "a", T0, 10, 2, routes=routes)
    assert [c.route for c in two] == ["r-b", "r-a"]  # due at -3 s and -2 s
    rest = store.claim_due(engine, "a", T0, 10, 10, routes=routes)
    assert [c.route for c in rest] == ["r-c"]
    assert schedule_row(engine, tenant, "elsewhere").lease_token is None


def test_a_route_may_ask_for_a_longer_lease(sched_db, new_tenant):
    tenant = new_tenant()
    add_schedule(sched_db.engine, tenant, ROUTE, next_run_at=T0)
    [row] = store.claim_due(sched_db.engine, "a", T0, 10, 1, routes=[ROUTE],
                            route_leases={ROUTE: 1800})
    assert row.lease_expires_at == T0 + 1800 * S


def test_concurrent_claimers_never_take_the_same_row(sched_db, new_tenant):
    engine = sched_db.engine
    tenant = new_tenant()
    routes = [f"r-{i:02d}" for i in range(40)]
    for route in routes:
        add_schedule(engine, tenant, route, next_run_at=T0)
    taken: dict[str, list[tuple[str, str]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(name: str, limit: int) -> None:
        mine = taken.setdefault(name, [])
        try:
            start.wait(timeout=30)
            while True:
                got = store.claim_due(engine, name, T0, 60, limit, routes=routes)
                if not got:
                    return
                mine.extend((c.tenant_id, c.route) for c in got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}", 1 + i % 3)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    every = [key for mine in taken.values() for key in mine]
    assert sorted(every) == sorted((tenant, r) for r in routes)  # each exactly once
