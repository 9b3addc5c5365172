"""Rejoiner's convert has no idempotency key: a resend after a crash between the send and its
completion must not convert twice. The gateway records each accepted convert (``sent_at``)
before it goes on, and a reclaimed row that carries the record is completed without a send."""

from __future__ import annotations

import time

import requests

from connectors import base as registry
from gateway.model import Cart, CartItem, Money
from gateway.relay import claim
from gateway.relay.clients import ClientCache
from gateway.relay.planned import PlannedDelivery
from gateway.relay.sending import send_batch
from gateway.store.types import utcnow
from tests.connectors.conftest import sandbox_stats, set_faults
from tests.relay.conftest import queue, rows, statuses


class LaterClock:
    """Real time, ``offset`` seconds ahead (a worker that comes after a lease expired)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def _cart(i: int) -> Cart:
    return Cart(email=f"buyer{i}@example.com", value=Money(1500 + i, "USD"), item_count=1,
                order_number=f"O-{i}",
                items=[CartItem(product_id="P1", name="Tea", quantity=1,
                                unit_price=Money(1500 + i, "USD"),
                                line_total=Money(1500 + i, "USD"))])


def _conversions(service, email: str) -> int:
    found = requests.get(f"{service.url}/_sandbox/records/activity/{email}", timeout=10)
    return len(found.json()["conversions"]) if found.status_code == 200 else 0


def test_a_convert_resent_after_a_crash_between_send_and_completion_converts_once(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    rejoiner = start_service("rejoiner", rate_limits=False)
    rejoiner.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue(relay_db.engine, tenant, [
        PlannedDelivery("rejoiner", "carts.convert", _cart(i), subject_id=f"cus-{i}",
                        version=f"ev-{i}") for i in range(3)])
    # Two converts of one customer are two purchases: never coalesced.
    queue(relay_db.engine, tenant, [
        PlannedDelivery("rejoiner", "carts.convert", _cart(0), subject_id="cus-0",
                        version="ev-again")])
    assert statuses(relay_db.engine, tenant) == {"pending": 4}

    # A worker claims the converts and sends them, then dies before completing them.
    lease = relay_db.settings.lease_seconds
    group = claim.Group(tenant, "rejoiner", "carts.convert", 2, utcnow(), 4)
    batch = claim.claim(relay_db.engine, group, owner="crashed", lease_seconds=lease,
                        now=utcnow(), limit=50)
    clients = ClientCache(relay_db.runtime)
    try:
        destination = clients.get(tenant, "rejoiner")
        operation = registry.get("rejoiner").operations["carts.convert"]

        def mark(ids: list[int]) -> None:
            with relay_db.engine.begin() as conn:
                claim.mark_sent(conn, batch, ids, utcnow())

        outcome = send_batch(batch, operation, destination.client, {"currency": "USD"},
                             deadline=time.time() + 30, mark_sent=mark)
    finally:
        clients.close()
    assert sorted(outcome.done) == sorted(batch.ids)
    assert all(row.sent_at is not None and row.status == "in_flight"
               for row in rows(relay_db.engine, tenant))
    assert sandbox_stats(rejoiner.url)["records"]["conversions"] == 4
    requests_before = sandbox_stats(rejoiner.url)["requests"]

    # After the lease, another worker claims the rows again: it completes them unsent.
    worker = make_worker(clock=LaterClock(lease + 1))
    drain = worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"done": 4}
    assert drain.total("sent") == 4
    assert sandbox_stats(rejoiner.url)["requests"] == requests_before
    assert sandbox_stats(rejoiner.url)["records"]["conversions"] == 4
    assert [_conversions(rejoiner, f"buyer{i}@example.com") for i in range(3)] == [2, 1, 1]


def test_converts_go_one_at_a_time_and_a_refused_one_is_dead_lettered_alone(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    rejoiner = start_service("rejoiner", rate_limits=False)
    rejoiner.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(rejoiner.url, reject_keys={"buyer1@example.com": "Enter a valid email."})
    queue(relay_db.engine, tenant, [
        PlannedDelivery("rejoiner", "carts.convert", _cart(i), subject_id=f"cus-{i}")
        for i in range(3)])
    make_worker().run_once()
    by_key = {row.record_key: (row.status, row.sent_at is not None)
              for row in rows(relay_db.engine, tenant)}
    assert by_key == {"buyer0@example.com": ("done", True), "buyer1@example.com": ("dead", False),
                      "buyer2@example.com": ("done", True)}
    assert [_conversions(rejoiner, f"buyer{i}@example.com") for i in (0, 2)] == [1, 1]
