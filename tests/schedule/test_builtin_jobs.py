"""The built-in jobs: the daily re-score (off-peak) and retention, run through the ticker."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from gateway.runtime import Runtime
from gateway.schedule import jobs, retention
from gateway.schedule.ticker import Ticker
from gateway.store.tables import customers, dedupe_keys, deliveries, idempotency_keys
from tests.schedule.conftest import FakeClock, run_rows, schedule_row
from tests.test_scoring import add_customer, add_order

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def _seed_retention_rows(engine, tenant_id: str) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        conn.execute(dedupe_keys.insert(), [
            {"tenant_id": tenant_id, "scope": "rekindle:customer-status", "key": k, "seen_at": t}
            for k, t in [("", NOW - 90 * DAY), ("old", NOW - 31 * DAY), ("fresh", NOW - DAY)]])
        conn.execute(idempotency_keys.insert(), [
            {"tenant_id": tenant_id, "key": k, "fingerprint": "f" * 64, "state": "done",
             "token": "t", "created_at": t, "locked_until": t}
            for k, t in [("old", NOW - timedelta(hours=25)), ("fresh", NOW - timedelta(hours=23))]])
        conn.execute(deliveries.insert(), [
            {"tenant_id": tenant_id, "connector": "replenit", "operation": "orders.upsert",
             "payload": {}, "idempotency_key": f"k{i}", "status": status,
             "next_attempt_at": t, "created_at": t, "updated_at": t}
            for i, (status, t) in enumerate([("done", NOW - 15 * DAY), ("done", NOW - 13 * DAY),
                                             ("pending", NOW - 15 * DAY),
                                             ("dead", NOW - 15 * DAY),
                                             ("cancelled", NOW - 15 * DAY)])])


def _left(engine, tenant_id: str) -> dict:  # noqa: ANN001
    with engine.connect() as conn:
        return {
            "dedupe": sorted(conn.execute(select(dedupe_keys.c.key).where(
                dedupe_keys.c.tenant_id == tenant_id)).scalars()),
            "idempotency": sorted(conn.execute(select(idempotency_keys.c.key).where(
                idempotency_keys.c.tenant_id == tenant_id)).scalars()),
            "deliveries": sorted(conn.execute(select(deliveries.c.idempotency_key).where(
                deliveries.c.tenant_id == tenant_id)).scalars()),
        }


@pytest.mark.parametrize("chunk", [retention.CHUNK, 1])
def test_retention_drops_only_the_tenants_expired_rows(sched_db, new_tenant, monkeypatch,
                                                      chunk):
    monkeypatch.setattr(retention, "CHUNK", chunk)  # 1: every delete loop takes many turns
    tenant, neighbour = new_tenant(), new_tenant()
    for t in (tenant, neighbour):
        _seed_retention_rows(sched_db.engine, t)
    before = _left(sched_db.engine, neighbour)

    counts = retention.run_retention(sched_db.engine, tenant, now=NOW, done_retention_days=14)
    assert counts == {"dedupe_keys": 1, "idempotency_keys": 1, "deliveries": 1}
    assert _left(sched_db.engine, tenant) == {
        "dedupe": ["", "fresh"],  # the scope's seeding marker stays, however old
        "idempotency": ["fresh"],
        "deliveries": ["k1", "k2", "k3", "k4"],  # done within 14 days, pending, dead, cancelled
    }
    assert _left(sched_db.engine, neighbour) == before
    assert retention.run_retention(sched_db.engine, tenant, now=NOW) == {
        "dedupe_keys": 0, "idempotency_keys": 0, "deliveries": 0}


def test_the_retention_schedule_uses_the_process_setting_for_done_deliveries(
        sched_db, new_tenant):
    tenant = new_tenant()
    _seed_retention_rows(sched_db.engine, tenant)
    runtime = Runtime(settings=replace(sched_db.runtime.settings, done_retention_days=10.0),
                      engine=sched_db.engine)
    registry = jobs.builtin_registry()
    ticker = Ticker(runtime, "retention-test", registry=registry, clock=FakeClock(NOW))
    try:
        ticker.run_due()  # retention runs at once for a new tenant; the re-score waits
    finally:
        ticker.shutdown()
    [run] = run_rows(sched_db.engine, tenant, "retention")
    assert run.status == "ok"
    assert run.counts["deliveries"] == 2  # both done rows are older than 10 days
    assert run_rows(sched_db.engine, tenant, "rescore") == []
    assert schedule_row(sched_db.engine, tenant, "retention").interval_seconds == 3600


def test_the_daily_rescore_runs_at_its_off_peak_slot(sched_db, new_tenant):
    tenant = new_tenant()
    with sched_db.engine.begin() as conn:
        customer = add_customer(conn, tenant, "c1")
        for days in (400, 300, 200):
            add_order(conn, tenant, customer, NOW - days * DAY)
    clock = FakeClock(NOW)
    ticker = Ticker(sched_db.runtime, "rescore-test", registry=jobs.builtin_registry(),
                    clock=clock)
    try:
        ticker.run_due()
        three = datetime(2025, 6, 2, 3, 0, tzinfo=timezone.utc)
        assert schedule_row(sched_db.engine, tenant, "rescore").next_run_at == three
        assert run_rows(sched_db.engine, tenant, "rescore") == []
        clock.set(three)
        ticker.run_due()
    finally:
        ticker.shutdown()
    [run] = run_rows(sched_db.engine, tenant, "rescore")
    assert run.status == "ok"
    assert (run.counts["customers"], run.counts["scored"]) == (1, 1)
    with sched_db.engine.connect() as conn:
        status = conn.execute(select(customers.c.gateway_status).where(
            customers.c.id == customer)).scalar_one()
        assert status in {"at_risk", "lapsed", "lost"}  # 200 days after a 100-day rhythm
        assert conn.execute(select(func.count()).select_from(customers)).scalar_one() == 1
    row = schedule_row(sched_db.engine, tenant, "rescore")
    assert row.next_run_at == three + DAY and row.last_run_at == three
