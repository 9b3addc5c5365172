"""The gateway never causes a 429: every send takes from the one budget per credential, in one
process (memory) or shared by several (Redis). The sandboxes run their clocks fast
(``rate_scale``) and the workers keep in step (``GATEWAY_RATE_TIME_SCALE``); the sandbox's own
request log is what the pacing is held against."""

from __future__ import annotations

import secrets

import pytest

from gateway.relay.planned import PlannedDelivery
from tests.connectors.conftest import max_in_window, redis_url_or_skip, sandbox_log, sandbox_stats
from tests.relay.conftest import (
    all_settled,
    drain,
    queue,
    start_worker_process,
    statuses,
    wait_for,
)

SCALE = 60.0  # a service minute is a wall second


def _deletes(n: int) -> list[PlannedDelivery]:
    return [PlannedDelivery("replenit", "customers.delete", {"customerId": f"cus-{i}"},
                            subject_id=f"cus-{i}") for i in range(n)]


def test_a_worker_stays_within_the_services_limits(relay_db, new_tenant, start_service,
                                                   make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_scale=SCALE)  # 100 a minute, 5,000 an hour
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue(relay_db.engine, tenant, _deletes(260))  # one request each: over two minutes' worth
    worker = make_worker(relay_db.runtime_with(rate_time_scale=SCALE), threads=4)
    drain(worker, until=all_settled(relay_db.engine), timeout=120)

    assert statuses(relay_db.engine, tenant) == {"done": 260}
    assert sandbox_stats(replenit.url)["requests"] == {"200": 260}  # not one 429
    arrivals = sandbox_log(replenit.url)["timestamps"]
    assert max_in_window(arrivals, 60) <= 100
    assert arrivals[-1] - arrivals[0] >= 120  # it had to wait for the windows


@pytest.mark.slow
def test_two_worker_processes_share_one_budget_through_redis(relay_db, new_tenant,
                                                             start_service, stopping, tmp_path):
    redis_url = redis_url_or_skip(db=13)
    tenant = new_tenant()
    replenit = start_service("replenit", rate_scale=SCALE)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    env = relay_db.env(GATEWAY_REDIS_URL=redis_url, GATEWAY_RATE_TIME_SCALE=str(SCALE),
                       GATEWAY_RATE_KEY_PREFIX=f"relaytest{secrets.token_hex(4)}",
                       GATEWAY_WORKER_THREADS="2")
    processes = []
    for name in ("a", "b"):
        log = tmp_path / f"{name}.log"
        process = start_worker_process(env, log)
        stopping(process)
        processes.append((process, log))
    for process, log in processes:
        wait_for(lambda: log.exists() and "ready" in log.read_text(), 60, "a worker to start")
    queue(relay_db.engine, tenant, _deletes(230))
    wait_for(lambda: statuses(relay_db.engine, tenant) == {"done": 230}, 180,
             "every delivery")

    assert sandbox_stats(replenit.url)["requests"] == {"200": 230}  # not one 429
    assert max_in_window(sandbox_log(replenit.url)["timestamps"], 60) <= 100


HOUR_SCALE = 120.0  # an hour of Replenit's service time is thirty wall seconds


@pytest.mark.slow
def test_an_hour_of_service_time_at_full_demand_causes_no_429(relay_db, new_tenant,
                                                              start_service, make_worker):
    """More demand than the hourly budget allows: the minute window binds first, then the
    hour's 5,000; the worker waits for both windows and the sandbox answers no 429 over more
    than an hour of its own clock."""
    tenant = new_tenant()
    replenit = start_service("replenit", rate_scale=HOUR_SCALE)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    total = 5_120  # past the hour's 5,000: the last ones wait for the hour window to slide
    queue(relay_db.engine, tenant, _deletes(total))
    worker = make_worker(relay_db.runtime_with(rate_time_scale=HOUR_SCALE), threads=4)
    drain(worker, until=all_settled(relay_db.engine), timeout=600)

    assert statuses(relay_db.engine, tenant) == {"done": total}
    assert sandbox_stats(replenit.url)["requests"] == {"200": total}  # not one 429
    log = sandbox_log(replenit.url)
    assert log["dropped"] == 0
    arrivals = log["timestamps"]
    assert len(arrivals) == total
    assert max_in_window(arrivals, 60) <= 100
    assert max_in_window(arrivals, 3600) <= 5_000
    assert arrivals[-1] - arrivals[0] >= 3600  # the hour window had to slide
