"""Batches, linger, coalescing, idempotency keys, erasure and ordering, against real sandboxes."""

from __future__ import annotations

import requests

from gateway.model import Customer, Money, Product, Variant
from gateway.relay.planned import PlannedDelivery
from gateway.store.tables import sync_runs
from tests.connectors.conftest import sandbox_log, sandbox_stats
from tests.relay.conftest import all_settled, drain, order, queue, queue_orders, rows, statuses


class FakeClock:
    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _record(service, kind: str, key: str) -> dict | None:
    response = requests.get(f"{service.url}/_sandbox/records/{kind}/{key}", timeout=10)
    return response.json() if response.status_code == 200 else None


def test_rows_go_out_in_batches_of_the_services_maximum_and_the_drain_is_recorded(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue_orders(relay_db.engine, tenant, 450)
    sizes = []
    worker = make_worker(observer=lambda batch, outcome: sizes.append(len(batch.rows)))
    drain_counts = worker.run_once()

    assert sorted(sizes, reverse=True) == [200, 200, 50]
    assert statuses(relay_db.engine, tenant) == {"done": 450}
    assert sandbox_stats(replenit.url)["records"]["orders"] == 450
    assert sandbox_stats(replenit.url)["requests"] == {"200": 3}
    assert drain_counts.total("sent") == 450
    with relay_db.engine.connect() as conn:
        (run,) = conn.execute(sync_runs.select().where(sync_runs.c.tenant_id == tenant)).all()
    assert run.route == "drain" and run.status == "ok" and run.finished_at >= run.started_at
    assert run.counts["sent"] == 450
    assert run.counts["connectors"]["replenit"] == {"sent": 450, "failed": 0, "dead": 0}


def test_a_partial_batch_leaves_after_the_linger_and_a_full_one_at_once(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    clock = FakeClock()
    runtime = relay_db.runtime_with(batch_linger_seconds=5.0)
    worker = make_worker(runtime, clock=clock)
    queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "orders.upsert", order(i), subject_id=f"cus-{i}")
        for i in range(10)])
    # The rows were queued at the real time; the fake clock starts later, so move them to it.
    with relay_db.engine.begin() as conn:
        from datetime import datetime, timezone

        from gateway.store.tables import deliveries
        conn.execute(deliveries.update().values(
            next_attempt_at=datetime.fromtimestamp(clock.now, timezone.utc)))

    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"pending": 10}
    assert worker.seconds_until_ready() == 5.0
    clock.advance(4.9)
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"pending": 10}
    clock.advance(0.1)
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"done": 10}
    assert sandbox_stats(replenit.url)["requests"] == {"200": 1}  # together, in one request

    # A full batch does not wait for the linger.
    queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "orders.upsert", order(i, prefix="F"))
        for i in range(200)])
    with relay_db.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.status == "pending").values(
            next_attempt_at=datetime.fromtimestamp(clock.now, timezone.utc)))
    worker.run_once()
    assert statuses(relay_db.engine, tenant) == {"done": 210}


def test_the_same_record_queued_twice_goes_out_once_in_its_newest_version(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    first = queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "orders.upsert", order(1, cents=1000), version="ev-1")])
    second = queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "orders.upsert", order(1, cents=2500), version="ev-2")])
    assert (first.queued, second.queued, second.coalesced) == (1, 0, 1)
    assert len(rows(relay_db.engine, tenant)) == 1

    # Two versions in one call keep the last as well.
    both = queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "orders.upsert", order(2, cents=100), version="ev-3"),
        PlannedDelivery("replenit", "orders.upsert", order(2, cents=300), version="ev-4")])
    assert (both.queued, both.coalesced) == (1, 1)

    make_worker().run_once()
    assert sandbox_stats(replenit.url)["requests"] == {"200": 1}
    assert _record(replenit, "orders", "O-1")["TotalRevenue"] == 25
    assert _record(replenit, "orders", "O-2")["TotalRevenue"] == 3
    assert statuses(relay_db.engine, tenant) == {"done": 2}


def test_a_change_a_to_b_to_a_sends_three_times_and_a_replanned_event_once(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    worker = make_worker()
    names = ["Ann", "Bea", "Ann"]
    for i, name in enumerate(names):
        customer = Customer(id="cus-1", email="ann@example.com", first_name=name)
        result = queue(relay_db.engine, tenant, [
            PlannedDelivery("replenit", "customers.upsert", customer, version=f"ev-{i}",
                            subject_id="cus-1")])
        assert result.queued == 1
        again = queue(relay_db.engine, tenant, [  # the same event planned again
            PlannedDelivery("replenit", "customers.upsert", customer, version=f"ev-{i}",
                            subject_id="cus-1")])
        assert (again.queued, again.duplicates) == (0, 1)
        worker.run_once()
        assert _record(replenit, "customers", "cus-1")["Name"] == name
    assert sandbox_stats(replenit.url)["requests"] == {"200": 3}
    assert len(sandbox_log(replenit.url)["timestamps"]) == 3
    assert statuses(relay_db.engine, tenant) == {"done": 3}


def test_an_erasure_cancels_the_customers_queued_upserts_and_goes_first(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "customers.upsert",
                        Customer(id="cus-1", email="gone@example.com"), subject_id="cus-1"),
        PlannedDelivery("replenit", "orders.upsert", order(1), subject_id="cus-1"),
        PlannedDelivery("replenit", "customers.upsert",
                        Customer(id="cus-2", email="stays@example.com"), subject_id="cus-2"),
    ])
    erased = queue(relay_db.engine, tenant, [
        PlannedDelivery("replenit", "customers.delete", {"customerId": "cus-1",
                                                         "email": "gone@example.com"},
                        subject_id="cus-1", erases=True)])
    assert erased.cancelled == 2
    sent = []
    make_worker(observer=lambda batch, outcome: sent.append(batch.operation)).run_once()

    assert sent[0] == "customers.delete"
    by_subject = {(r.subject_id, r.operation): r.status for r in rows(relay_db.engine, tenant)}
    assert by_subject == {("cus-1", "customers.upsert"): "cancelled",
                          ("cus-1", "orders.upsert"): "cancelled",
                          ("cus-2", "customers.upsert"): "done",
                          ("cus-1", "customers.delete"): "done"}
    assert _record(replenit, "customers", "cus-1") is None
    assert _record(replenit, "orders", "O-1") is None
    assert _record(replenit, "customers", "cus-2") is not None


def test_products_go_before_the_orders_that_name_them(relay_db, new_tenant, start_service,
                                                      make_worker):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    queue_orders(relay_db.engine, tenant, 5)  # queued first, all naming P1
    queue(relay_db.engine, tenant, [PlannedDelivery(
        "replenit", "products.upsert",
        Product(id="P1", name="Tea", variants=[Variant(id="V1", sku="P1-S", name="Tea",
                                                       price=Money(1999, "USD"))]))])
    seen = []

    def observe(batch, outcome):
        seen.append((batch.operation, sandbox_stats(replenit.url)["records"]))

    make_worker(observer=observe).run_once()
    assert [operation for operation, _ in seen] == ["products.upsert", "orders.upsert"]
    assert seen[1][1]["unlinked_order_items"] == 0  # every line found its product
    assert statuses(relay_db.engine, tenant) == {"done": 6}


def test_consent_then_winback_then_orders_then_profiles_when_the_budget_is_the_bottleneck(
        relay_db, new_tenant, start_service, make_worker):
    from gateway.model import Cart
    from gateway.relay.planned import WINBACK

    tenant = new_tenant()
    rejoiner = start_service("rejoiner", rate_limits=False)
    rejoiner.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    email = "c@example.com"
    queue(relay_db.engine, tenant, [  # queued in the reverse of the order they must go in
        PlannedDelivery("rejoiner", "customers.upsert", Customer(email=email, first_name="C"),
                        subject_id="cus-c"),
        PlannedDelivery("rejoiner", "carts.convert",
                        Cart(email=email, value=Money(500, "USD"), order_number="O-9"),
                        subject_id="cus-c"),
        PlannedDelivery("rejoiner", "customers.upsert",
                        Customer(email="w@example.com", tags=["gw:winback"]),
                        subject_id="cus-w", priority=WINBACK),
        PlannedDelivery("rejoiner", "journeys.cancel", email, subject_id="cus-c"),
        PlannedDelivery("rejoiner", "consent.unsubscribe", email, subject_id="cus-c"),
    ])
    sent = []
    worker = make_worker(
        observer=lambda b, o: sent.append((b.operation, [r.priority for r in b.rows])))
    drain(worker, until=all_settled(relay_db.engine))  # Rejoiner's budget: 5 requests a second
    assert sent == [("consent.unsubscribe", [0]), ("customers.upsert", [1]),
                    ("journeys.cancel", [1]), ("carts.convert", [2]),
                    ("customers.upsert", [3])] or sent == [
        ("consent.unsubscribe", [0]), ("journeys.cancel", [1]), ("customers.upsert", [1]),
        ("carts.convert", [2]), ("customers.upsert", [3])]
    assert statuses(relay_db.engine, tenant) == {"done": 5}

