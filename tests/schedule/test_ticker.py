"""The ticker in one process: sync at each tick, run due rows once per slot, record runs,
retry failures, keep a long run's lease, stop cleanly, and never start inside gunicorn.

Time is a :class:`FakeClock` the test moves; waits are for states the test can observe."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from gateway.schedule import jobs, slots, store
from gateway.schedule.ticker import Ticker, TickerRefused, inside_gunicorn
from gateway.store import tenants
from tests.conftest import TEST_SECRET_KEY
from tests.schedule.conftest import run_rows, schedule_row, wait_for

ROUTE = "counted"


class Recorder:
    """A job that records (tenant, slot, now) of each run; it can be made to fail or block."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, Any, Any]] = []
        self.fail_with: str | None = None
        self.block: threading.Event | None = None
        self.started = threading.Event()
        self.saw_stopping = False
        self._lock = threading.Lock()

    def __call__(self, runtime, tenant_id: str, now):  # noqa: ANN001, ANN204
        run = jobs.current_run()
        with self._lock:
            self.runs.append((tenant_id, run.slot, now))
        self.started.set()
        if self.block is not None:
            while not self.block.wait(0.02):
                if run.stopping.is_set():
                    self.saw_stopping = True
                    break
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        return {"seen": 1}

    def slots_of(self, tenant_id: str) -> list[Any]:
        with self._lock:
            return [slot for tenant, slot, _ in self.runs if tenant == tenant_id]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_ticker(sched_db, clock, recorder):
    made: list[Ticker] = []

    def make(interval: int = 60, registry: jobs.Registry | None = None, **kwargs) -> Ticker:
        if registry is None:
            registry = jobs.Registry()
            registry.register(ROUTE, recorder, interval=lambda _s: interval)
        kwargs.setdefault("clock", clock)
        ticker = Ticker(sched_db.runtime, kwargs.pop("owner", f"t{len(made)}"),
                        registry=registry, **kwargs)
        made.append(ticker)
        return ticker

    yield make
    for ticker in made:
        if recorder.block is not None:
            recorder.block.set()
        ticker.shutdown(wait=True)


def test_a_tenant_added_by_any_process_is_picked_up_at_the_next_tick(
        sched_db, new_tenant, make_ticker, recorder, clock):
    first = new_tenant()
    ticker = make_ticker()
    ticker.run_due()
    assert recorder.slots_of(first) == [clock()]  # a new schedule runs at once

    second = new_tenant()  # as another process would: only the database knows
    ticker.run_due()
    assert recorder.slots_of(second) == [clock()]
    assert len(recorder.slots_of(first)) == 1  # not due again yet


def test_a_settings_change_is_picked_up_at_the_next_tick(sched_db, new_tenant, clock, recorder,
                                                        make_ticker):
    tenant = new_tenant()
    registry = jobs.Registry()
    registry.register("rci-customers", recorder)  # interval: pull_interval_minutes (60)
    ticker = make_ticker(registry=registry)
    ticker.run_due()
    assert schedule_row(sched_db.engine, tenant, "rci-customers").interval_seconds == 3600

    with sched_db.engine.begin() as conn:
        tenants.update_settings(conn, tenant, {"pull_interval_minutes": {"rci-customers": 1}})
    ticker.run_due()
    row = schedule_row(sched_db.engine, tenant, "rci-customers")
    assert row.interval_seconds == 60 and row.next_run_at <= clock() + timedelta(seconds=60)
    clock.set(row.next_run_at)
    ticker.run_due()
    assert recorder.slots_of(tenant)[-1] == row.next_run_at


def test_missed_slots_run_once_and_the_schedule_goes_back_on_its_grid(
        sched_db, new_tenant, make_ticker, recorder, clock):
    tenant = new_tenant()
    ticker = make_ticker(interval=60)
    ticker.run_due()
    offset = slots.offset_seconds(tenant, ROUTE, 60)
    first_slot = slots.next_slot_after(clock(), 60, offset)

    clock.advance(60 * 10 + 5)  # every process was away for ten intervals
    ticker.run_due()
    ticker.run_due()
    assert recorder.slots_of(tenant)[1:] == [first_slot]  # once, not ten times
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert row.next_run_at == slots.next_slot_after(clock(), 60, offset)
    assert row.last_run_at == clock()


def test_every_run_is_recorded_with_its_counts_slot_and_worker(sched_db, new_tenant,
                                                               make_ticker, clock):
    tenant = new_tenant()
    ticker = make_ticker(owner="ticker-one")
    ticker.run_due()
    [run] = run_rows(sched_db.engine, tenant, ROUTE)
    assert run.status == "ok" and run.error is None
    assert run.counts == {"seen": 1, "slot": clock().isoformat(), "worker": "ticker-one"}
    assert run.started_at == clock() and run.finished_at == clock()


def test_a_failed_run_is_recorded_without_secrets_and_retried_after_the_delay(
        sched_db, new_tenant, make_ticker, recorder, clock):
    tenant = new_tenant()
    recorder.fail_with = f"could not pull: key {TEST_SECRET_KEY} refused"
    ticker = make_ticker(interval=3600, retry_seconds=30)
    ticker.run_due()
    [run] = run_rows(sched_db.engine, tenant, ROUTE)
    assert run.status == "failed"
    assert "RuntimeError: could not pull: key *** refused" == run.error
    assert TEST_SECRET_KEY not in str(run.counts) + run.error
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert row.next_run_at == clock() + timedelta(seconds=30)  # sooner than the next slot
    assert row.last_run_at is None and row.lease_token is None

    recorder.fail_with = None
    clock.advance(29)
    ticker.run_due()
    assert len(recorder.runs) == 1
    clock.advance(1)
    ticker.run_due()
    assert len(recorder.runs) == 2
    assert [r.status for r in run_rows(sched_db.engine, tenant, ROUTE)] == ["failed", "ok"]


def test_a_failed_run_retries_at_its_next_slot_when_that_is_sooner(
        sched_db, new_tenant, make_ticker, recorder, clock):
    tenant = new_tenant()
    recorder.fail_with = "nope"
    ticker = make_ticker(interval=10, retry_seconds=300)
    ticker.run_due()
    offset = slots.offset_seconds(tenant, ROUTE, 10)
    assert schedule_row(sched_db.engine, tenant, ROUTE).next_run_at == \
        slots.next_slot_after(clock(), 10, offset)


def test_the_heartbeat_keeps_the_lease_of_a_run_that_outlives_it(
        sched_db, new_tenant, make_ticker, recorder, clock):
    tenant = new_tenant()
    recorder.block = threading.Event()
    ticker = make_ticker(lease_seconds=10, heartbeat_seconds=0.05)
    start = clock()
    futures = ticker.tick()
    assert recorder.started.wait(30)

    clock.advance(8)
    wait_for(lambda: schedule_row(sched_db.engine, tenant, ROUTE).lease_expires_at
             >= start + timedelta(seconds=18), 30, "the lease to be renewed")
    clock.advance(7)  # past the first lease: only the renewal keeps the row
    assert store.claim_due(sched_db.engine, "other", clock(), 10, 5, routes=[ROUTE]) == []

    recorder.block.set()
    for future in futures:
        future.result(timeout=30)
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert row.lease_token is None and row.last_run_at == clock()
    assert len(recorder.runs) == 1


def test_a_run_whose_lease_was_taken_over_does_not_overwrite_the_new_owner(
        sched_db, new_tenant, make_ticker, recorder, clock):
    tenant = new_tenant()
    recorder.block = threading.Event()
    ticker = make_ticker(lease_seconds=10, heartbeat_seconds=3600)  # stalled: no renewals
    futures = ticker.tick()
    assert recorder.started.wait(30)
    clock.advance(11)
    [taken] = store.claim_due(sched_db.engine, "other", clock(), 10, 5, routes=[ROUTE])

    recorder.block.set()
    for future in futures:
        future.result(timeout=30)
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert (row.lease_owner, row.lease_token) == ("other", taken.token)
    assert row.next_run_at == taken.slot and row.last_run_at is None


def test_a_process_leaves_alone_the_routes_it_does_not_know(sched_db, new_tenant, make_ticker,
                                                           recorder):
    tenant = new_tenant()
    make_ticker().run_due()
    other = jobs.Registry()
    other.register("another", lambda *a: {}, interval=lambda _s: 60)
    make_ticker(registry=other).run_due()
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert row.enabled and row.lease_token is None
    assert len(recorder.runs) == 1


def test_start_schedules_one_interval_tick_and_shutdown_stops_it(sched_db, new_tenant,
                                                                 recorder):
    from apscheduler.triggers.interval import IntervalTrigger

    tenant = new_tenant()
    registry = jobs.Registry()
    registry.register(ROUTE, recorder, interval=lambda _s: 60)
    ticker = Ticker(sched_db.runtime, "real-clock", registry=registry, tick_seconds=0.05)
    try:
        ticker.start()
        [tick] = ticker.scheduler.get_jobs()
        assert isinstance(tick.trigger, IntervalTrigger)
        assert tick.trigger.interval == timedelta(seconds=0.05)
        assert (tick.max_instances, tick.coalesce) == (1, True)
        assert recorder.started.wait(30)
        wait_for(lambda: run_rows(sched_db.engine, tenant, ROUTE), 30, "the run's record")
    finally:
        ticker.shutdown(wait=True)
    assert not ticker.scheduler.running
    assert ticker.tick() == []  # a stopped ticker claims nothing


def test_shutdown_lets_the_run_in_progress_end_and_settle(sched_db, new_tenant, make_ticker,
                                                          recorder, clock):
    tenant = new_tenant()
    recorder.block = threading.Event()  # never set: the job ends when it sees the stop
    ticker = make_ticker()
    ticker.tick()
    assert recorder.started.wait(30)
    ticker.shutdown(wait=True)
    assert recorder.saw_stopping
    row = schedule_row(sched_db.engine, tenant, ROUTE)
    assert row.lease_token is None and row.last_run_at == clock()


def test_the_ticker_refuses_to_start_inside_a_gunicorn_worker(sched_db, monkeypatch):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    ticker = Ticker(sched_db.runtime, "in-gunicorn", registry=jobs.Registry())
    with pytest.raises(TickerRefused, match="gunicorn"):
        ticker.start()
    assert ticker.scheduler is None
    ticker.shutdown()


def test_gunicorn_is_recognised_by_its_environment_or_program_name():
    assert inside_gunicorn({"SERVER_SOFTWARE": "gunicorn/23.0.0"}, ["app.py"])
    assert inside_gunicorn({}, ["/srv/venv/bin/gunicorn", "app:app"])
    assert not inside_gunicorn({"SERVER_SOFTWARE": "waitress"}, ["app.py", "serve"])
    assert not inside_gunicorn({}, [])
