"""Worker processes (``python -m gateway.relay.commands worker``, what ``python app.py worker``
runs): SIGTERM, SIGKILL at random points, SIGSTOP past the lease, two workers on one database,
and terminated PostgreSQL connections. Every wait is for a state the test can observe (the
sandbox's request log, the rows, the worker's own log), bounded."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from gateway.relay import claim
from gateway.relay.claim import Group
from gateway.store import db
from gateway.store.tables import deliveries, sync_runs
from gateway.store.types import utcnow
from tests.connectors.conftest import sandbox_log, sandbox_stats, set_faults
from tests.relay.conftest import (
    queue_orders,
    rows,
    start_worker_process,
    statuses,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow


def _arrivals(service) -> int:
    return len(sandbox_log(service.url)["timestamps"])


def _log_has(path: Path, needle: str) -> bool:
    return path.exists() and needle in path.read_text(errors="replace")


def _settled(engine, tenant, total: int):  # noqa: ANN001, ANN202
    return lambda: statuses(engine, tenant).get("done", 0) == total


def _start(relay_db, stopping, tmp_path, name: str, **env: str):  # noqa: ANN001, ANN202
    log = tmp_path / f"{name}.log"
    process = start_worker_process(relay_db.env(**env), log)
    stopping(process)
    wait_for(lambda: _log_has(log, "ready") or process.poll() is not None, 60,
             f"worker {name} to start")
    assert process.poll() is None, log.read_text()
    return process, log


def _stop_outside_a_write(process, url: str) -> None:  # noqa: ANN001
    """SIGSTOP ``process`` at a moment it holds no write transaction. On SQLite a process
    stopped inside one (its delivery thread is mid-send, but another of its loops may be
    writing) would hold the single write lock, and every other writer would wait for it: the
    embedded database's nature, not what this test is about. PostgreSQL locks only rows."""
    path = db.sqlite_file(url) if url.startswith("sqlite") else None
    for _ in range(200):
        os.kill(process.pid, signal.SIGSTOP)
        if path is None:
            return
        probe = sqlite3.connect(path, timeout=0.05)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked by the process: let it finish that write
            os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    raise AssertionError("the worker never left its write transactions")


def test_sigterm_finishes_the_sends_in_flight_and_leaves_nothing_in_flight(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, latency_ms=700)
    process, log = _start(relay_db, stopping, tmp_path, "w1", GATEWAY_WORKER_THREADS="1")
    queue_orders(relay_db.engine, tenant, 1000)
    wait_for(lambda: _arrivals(replenit) >= 1, 60, "the first request")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()

    counts = statuses(relay_db.engine, tenant)
    assert "in_flight" not in counts, counts
    assert counts["done"] >= 200  # the batch that was on the wire was finished
    assert counts["done"] == sandbox_stats(replenit.url)["records"]["orders"]
    assert counts["done"] + counts.get("pending", 0) == 1000


def test_a_worker_killed_ten_times_at_random_points_loses_nothing(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, latency_ms=150)
    total = 6000  # 30 batches: more than ten short rounds can send
    queue_orders(relay_db.engine, tenant, total)
    chance = random.Random(20240501)
    env = {"GATEWAY_LEASE_SECONDS": "2", "GATEWAY_WORKER_THREADS": "1"}
    for round_no in range(10):
        process, log = _start(relay_db, stopping, tmp_path, f"kill{round_no}", **env)
        seen = _arrivals(replenit)
        wait_for(lambda: _arrivals(replenit) >= seen + chance.randint(1, 2), 60,
                 "requests of this round")
        process.send_signal(signal.SIGKILL)  # mid-batch: the lease is left behind
        process.wait(timeout=10)
    assert statuses(relay_db.engine, tenant).get("done", 0) < total  # it really was cut short

    _start(relay_db, stopping, tmp_path, "final", **env)
    wait_for(_settled(relay_db.engine, tenant, total), 180, "every delivery")

    assert statuses(relay_db.engine, tenant) == {"done": total}
    assert sandbox_stats(replenit.url)["records"]["orders"] == total  # one record per key
    stored = [f"O-{i}" for i in chance.sample(range(total), 20)]
    for key in stored:
        assert sandbox_record(replenit, "orders", key)["OrderId"] == key


def sandbox_record(service, kind: str, key: str) -> dict:
    import requests

    return requests.get(f"{service.url}/_sandbox/records/{kind}/{key}", timeout=10).json()


def test_a_worker_stopped_past_its_lease_cannot_mark_rows_another_worker_now_owns(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, latency_ms=1500)  # the stalled worker is mid-send
    lease = 4.0
    queue_orders(relay_db.engine, tenant, 150)
    process, log = _start(relay_db, stopping, tmp_path, "stalled",
                          GATEWAY_LEASE_SECONDS=str(lease), GATEWAY_WORKER_THREADS="1")
    wait_for(lambda: _arrivals(replenit) >= 1, 60, "the stalled worker's request")
    _stop_outside_a_write(process, relay_db.url)
    (first,) = {row.lease_token for row in rows(relay_db.engine, tenant)}

    # Another worker claims the rows once the lease has expired (and holds them).
    group = Group(tenant, "replenit", "orders.upsert", 2, utcnow(), 150)
    taken = []

    def take() -> bool:
        batch = claim.claim(relay_db.engine, group, owner="second", lease_seconds=300,
                            now=utcnow(), limit=200)
        if batch is not None:
            taken.append(batch)
        return bool(taken)

    wait_for(take, 60, "the lease to expire")
    (batch,) = taken
    assert len(batch.rows) == 150 and batch.token != first

    os.kill(process.pid, signal.SIGCONT)  # the stalled worker resumes and tries to complete
    wait_for(lambda: _log_has(log, "lease lost: 150 of 150 rows"), 60,
             "the resumed worker to find its lease gone")
    assert {(row.status, row.lease_owner, row.lease_token)
            for row in rows(relay_db.engine, tenant)} == {("in_flight", "second", batch.token)}

    with relay_db.engine.begin() as conn:
        assert claim.complete(conn, batch, batch.ids, utcnow()) == 150
    assert statuses(relay_db.engine, tenant) == {"done": 150}
    stop_process(process)
    with relay_db.engine.connect() as conn:
        runs_sent = [r.counts["sent"] for r in conn.execute(
            select(sync_runs).where(sync_runs.c.route == "drain"))]
    assert sum(runs_sent) == 0  # the stalled worker completed nothing


def test_two_workers_on_one_database_complete_each_delivery_once_and_share_the_work(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, latency_ms=150)
    env = {"GATEWAY_WORKER_THREADS": "1", "GATEWAY_LEASE_SECONDS": "30"}
    _start(relay_db, stopping, tmp_path, "a", **env)
    _start(relay_db, stopping, tmp_path, "b", **env)
    total = 4000
    queue_orders(relay_db.engine, tenant, total)
    wait_for(_settled(relay_db.engine, tenant, total), 180, "every delivery")

    def sent_by_worker() -> dict[str, int]:
        with relay_db.engine.connect() as conn:
            drains = conn.execute(select(sync_runs).where(sync_runs.c.route == "drain")).all()
        by_worker: dict[str, int] = {}
        for run in drains:
            by_worker[run.counts["worker"]] = by_worker.get(run.counts["worker"], 0) \
                + run.counts["sent"]
        return by_worker

    # A drain is recorded when it ends: wait for both workers' to be written.
    wait_for(lambda: sum(sent_by_worker().values()) >= total, 60, "the drains' records")
    by_worker = sent_by_worker()
    assert sum(by_worker.values()) == total  # each delivery completed once
    assert len(by_worker) == 2 and min(by_worker.values()) > 0, by_worker  # none starved
    assert sandbox_stats(replenit.url)["records"]["orders"] == total


def test_terminated_postgresql_connections_are_survived_and_nothing_is_lost(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    if not relay_db.url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, latency_ms=100)
    lease = 3.0
    env = {"GATEWAY_WORKER_THREADS": "2", "GATEWAY_LEASE_SECONDS": str(lease)}
    workers = [_start(relay_db, stopping, tmp_path, name, **env)[0] for name in ("p", "q")]
    total = 3000
    queue_orders(relay_db.engine, tenant, total)
    admin = create_engine(relay_db.url, isolation_level="AUTOCOMMIT")
    database = relay_db.url.rsplit("/", 1)[1]
    try:
        for round_no in range(3):
            seen = _arrivals(replenit)
            wait_for(lambda: _arrivals(replenit) >= seen + 2, 60, "progress")
            with admin.connect() as conn:
                killed = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}
                ).scalar()
            assert killed >= 0
        relay_db.engine.dispose()  # the test's own pool lost its connections too
        wait_for(_settled(relay_db.engine, tenant, total), 180, "every delivery")
    finally:
        admin.dispose()

    assert statuses(relay_db.engine, tenant) == {"done": total}
    assert sandbox_stats(replenit.url)["records"]["orders"] == total
    assert all(process.poll() is None for process in workers)  # they reconnected themselves
    with relay_db.engine.connect() as conn:
        stale = conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.status == "in_flight")).scalar()
    assert stale == 0
