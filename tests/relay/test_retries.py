"""Retries, Retry-After, dead letters, broken connections and the breaker, against sandboxes
with their fault knobs turned up."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from gateway.model import Customer
from gateway.relay import admin
from gateway.relay.planned import PlannedDelivery
from gateway.store.connections import save_connection
from gateway.store.tables import deliveries, sync_runs
from tests.connectors.conftest import sandbox_log, sandbox_stats, set_faults
from tests.relay.conftest import (
    REPLENIT_TENANT,
    all_settled,
    drain,
    queue,
    queue_orders,
    rows,
    statuses,
)


class FakeClock:
    """Epoch seconds that move only when told (the worker's leases, due times, breaker)."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_with_30_percent_errors_and_resets_everything_arrives(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    rekindle = start_service("rekindle", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    rekindle.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    for service in (replenit, rekindle):
        set_faults(service.url, error_rate=0.3, reset_rate=0.1, seed=7)
    queue_orders(relay_db.engine, tenant, 1000)
    queue(relay_db.engine, tenant, [
        PlannedDelivery("rekindle", "customers.upsert",
                        Customer(email=f"r{i}@example.com", first_name="R", last_name=f"{i}"),
                        subject_id=f"cus-r{i}")
        for i in range(40)])

    drain(make_worker(threads=2), until=all_settled(relay_db.engine), timeout=120)

    assert statuses(relay_db.engine, tenant) == {"done": 1040}
    assert sandbox_stats(replenit.url)["records"]["orders"] == 1000
    assert sandbox_stats(rekindle.url)["records"]["customers"] == 40
    replenit_requests = sandbox_stats(replenit.url)["requests"]
    assert replenit_requests.get("500", 0) > 0  # the faults did happen
    assert len(sandbox_log(replenit.url)["timestamps"]) > replenit_requests["200"]  # resets too


def test_no_request_reaches_the_service_before_its_retry_after(
        relay_db, new_tenant, start_service, make_worker):
    scale = 10.0  # the sandbox's clock runs 10x: a Retry-After of 5 s is 0.5 s of wall time
    tenant = new_tenant()
    replenit = start_service("replenit", rate_scale=scale)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, burst_429=4, retry_after=5)
    queue_orders(relay_db.engine, tenant, 300)
    worker = make_worker(relay_db.runtime_with(rate_time_scale=scale))

    drain(worker, until=all_settled(relay_db.engine), timeout=60)

    assert statuses(relay_db.engine, tenant) == {"done": 300}
    arrivals = sandbox_log(replenit.url)["timestamps"]
    assert sandbox_stats(replenit.url)["requests"] == {"429": 4, "200": 2}
    for refused, following in zip(arrivals[:4], arrivals[1:5]):  # the first 4 were refused
        assert following - refused >= 5.0, arrivals


def test_a_poison_record_is_dead_lettered_alone_and_replay_delivers_it(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, reject_keys={"O-7": "This order is not accepted."})
    queue_orders(relay_db.engine, tenant, 50)
    worker = make_worker()
    drain(worker, until=all_settled(relay_db.engine))

    assert statuses(relay_db.engine, tenant) == {"done": 49, "dead": 1}
    assert sandbox_stats(replenit.url)["records"]["orders"] == 49
    with relay_db.engine.connect() as conn:
        (dead,) = admin.list_deliveries(conn, tenant, status="dead")
    assert dead["record_key"] == "O-7"
    assert dead["last_error"]["errors"] == {"OrderId": ["This order is not accepted."]}

    set_faults(replenit.url, reject_keys={})
    with relay_db.engine.begin() as conn:
        replayed = admin.replay(conn, tenant, dead["id"])
    assert replayed["status"] == "pending" and replayed["attempt"] == 0
    drain(worker, until=all_settled(relay_db.engine))
    assert statuses(relay_db.engine, tenant) == {"done": 50}
    assert sandbox_stats(replenit.url)["records"]["orders"] == 50


def test_the_attempt_cap_dead_letters_with_the_services_answer(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, error_rate=1.0, error_status=503)
    queue_orders(relay_db.engine, tenant, 3)
    worker = make_worker(relay_db.runtime_with(max_attempts=3, http_attempts=1))
    drain(worker, until=all_settled(relay_db.engine))

    (row_a, row_b, row_c) = rows(relay_db.engine, tenant)
    assert {row.status for row in (row_a, row_b, row_c)} == {"dead"}
    assert {row.attempt for row in (row_a, row_b, row_c)} == {3}
    assert sandbox_stats(replenit.url)["requests"] == {"503": 3}  # one batch, three attempts
    error = admin.parse_error(row_a.last_error)
    assert error["status"] == 503 and error["answer"]["error"] == "injected fault"


def test_the_age_cap_dead_letters_a_row_that_fails_after_it(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, error_rate=1.0)
    queue_orders(relay_db.engine, tenant, 2)
    clock = FakeClock()
    clock.advance(3600)  # the rows are an hour old on the worker's clock
    worker = make_worker(relay_db.runtime_with(max_age_seconds=1800, http_attempts=1),
                         clock=clock)
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"dead": 2}
    assert {row.attempt for row in rows(relay_db.engine, tenant)} == {1}


def test_a_broken_connection_keeps_its_rows_queued_is_reported_once_and_recovers(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    with relay_db.engine.begin() as conn:  # a wrong key: 401
        save_connection(conn, relay_db.runtime.vault, tenant, "replenit", replenit.url,
                        {"api_key": "not-the-key"}, {"tenant_id": REPLENIT_TENANT})
    queue_orders(relay_db.engine, tenant, 20)
    clock = FakeClock()
    worker = make_worker(relay_db.runtime_with(connection_pause_seconds=60), clock=clock)
    for _ in range(3):
        worker.run_once()
        clock.advance(61)
    assert statuses(relay_db.engine, tenant) == {"pending": 20}
    assert {row.attempt for row in rows(relay_db.engine, tenant)} == {0}
    assert sandbox_stats(replenit.url)["requests"] == {"401": 3}  # once per pause
    with relay_db.engine.connect() as conn:
        failed = conn.execute(select(sync_runs).where(sync_runs.c.tenant_id == tenant,
                                                      sync_runs.c.status == "failed")).all()
    assert len(failed) == 1 and "401" in failed[0].error

    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)  # the right key now
    clock.advance(61)
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"done": 20}


def test_a_missing_connection_keeps_rows_queued_until_one_is_made(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    queue_orders(relay_db.engine, tenant, 5)
    clock = FakeClock()
    worker = make_worker(relay_db.runtime_with(connection_pause_seconds=30), clock=clock)
    worker.run_once()
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"pending": 5}
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    clock.advance(31)
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"done": 5}


def test_an_outage_opens_the_breaker_costs_few_attempts_and_everything_arrives_after(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue_orders(relay_db.engine, tenant, 1000)  # five batches
    set_faults(replenit.url, error_rate=1.0)  # the service is down
    clock = FakeClock()
    runtime = relay_db.runtime_with(breaker_failures=2, breaker_cooldown_seconds=30,
                                    http_attempts=1, max_attempts=5,
                                    backoff_base_seconds=1, backoff_cap_seconds=1)
    worker = make_worker(runtime, clock=clock)

    worker.run_once()  # two batches fail, the breaker opens, the rest is not tried
    assert worker.breakers.state((tenant, "replenit")) == "open"
    assert sandbox_stats(replenit.url)["requests"] == {"500": 2}
    for _ in range(20):  # a long outage: one probe per cool-down, nothing else
        clock.advance(30)
        worker.run_once()
    assert sandbox_stats(replenit.url)["requests"] == {"500": 22}
    assert statuses(relay_db.engine, tenant) == {"pending": 1000}
    attempts = [row.attempt for row in rows(relay_db.engine, tenant)]
    assert max(attempts) == 1 and sum(attempts) == 400  # only the two batches that opened it

    set_faults(replenit.url, error_rate=0.0)  # the service is back
    clock.advance(30)
    drain(worker, until=all_settled(relay_db.engine))
    assert statuses(relay_db.engine, tenant) == {"done": 1000}
    assert sandbox_stats(replenit.url)["records"]["orders"] == 1000
    assert worker.breakers.state((tenant, "replenit")) == "closed"


def test_replay_all_dead_and_listing_by_status(relay_db, new_tenant, start_service,
                                               make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, reject_keys={"O-1": "no", "O-2": "no"})
    queue_orders(relay_db.engine, tenant, 4)
    worker = make_worker()
    drain(worker, until=all_settled(relay_db.engine))
    with relay_db.engine.connect() as conn:
        assert {d["record_key"] for d in admin.list_deliveries(conn, tenant, status="dead")} \
            == {"O-1", "O-2"}
        assert len(admin.list_deliveries(conn, tenant, status="done")) == 2
        other = "ten_other"
        assert admin.list_deliveries(conn, other) == []  # another tenant sees nothing
    set_faults(replenit.url, reject_keys={})
    with relay_db.engine.begin() as conn:
        assert admin.replay_dead(conn, tenant) == 2
    drain(worker, until=all_settled(relay_db.engine))
    assert statuses(relay_db.engine, tenant) == {"done": 4}
    with relay_db.engine.connect() as conn:
        last = conn.execute(select(deliveries.c.status)).scalars().all()
    assert set(last) == {"done"}
