"""Fairness across tenants: one tenant's backlog does not keep another's single order waiting."""

from __future__ import annotations

import time

import pytest

from gateway.relay.planned import PlannedDelivery
from tests.connectors.conftest import sandbox_stats
from tests.relay.conftest import order, queue, statuses

BACKLOG = 20_000


@pytest.mark.slow
def test_another_tenants_single_order_leaves_within_a_batch_or_two_of_a_20000_backlog(
        relay_db, new_tenant, start_service, make_worker):
    # The busy tenant is the one whose id sorts first (ids made in the same millisecond sort
    # in no set order): the order the worker would serve them in without its fairness.
    busy, small = sorted([new_tenant("Big shop"), new_tenant("Small shop")])
    busy_service = start_service("replenit", rate_limits=False)
    small_service = start_service("replenit", rate_limits=False)
    busy_service.connect(relay_db.engine, relay_db.runtime.vault, busy)
    small_service.connect(relay_db.engine, relay_db.runtime.vault, small)
    started = time.monotonic()
    queue(relay_db.engine, busy, [
        PlannedDelivery("replenit", "orders.upsert", order(i), subject_id=f"cus-{i}")
        for i in range(BACKLOG)])
    queue(relay_db.engine, small, [PlannedDelivery("replenit", "orders.upsert",
                                                   order(1, prefix="SMALL"))])
    assert statuses(relay_db.engine, busy) == {"pending": BACKLOG}
    print(f"queued {BACKLOG + 1} rows in {time.monotonic() - started:.1f}s")

    batches: list[tuple[str, int]] = []

    def observe(batch, outcome):
        batches.append((batch.tenant_id, len(batch.rows)))
        if batch.tenant_id == small:
            worker.stop()

    worker = make_worker(observer=observe)
    worker.run_once()

    position = [tenant for tenant, _ in batches].index(small)
    assert position <= 1, batches  # after at most one batch of the backlog
    assert batches[position] == (small, 1)
    assert sandbox_stats(small_service.url)["records"]["orders"] == 1
    assert sandbox_stats(busy_service.url)["records"]["orders"] == 200 * position
    assert statuses(relay_db.engine, small) == {"done": 1}
