"""The loop in a thread of this process (what the embedded ``serve`` runs): it wakes when this
process commits deliveries, stops cleanly; and services' answers reach their handlers."""

from __future__ import annotations

from sqlalchemy import text

from gateway.model import Customer
from gateway.relay import answers
from gateway.relay.planned import PlannedDelivery
from gateway.relay.worker import start_in_thread
from tests.connectors.conftest import sandbox_stats
from tests.relay.conftest import queue, queue_orders, statuses, wait_for


def test_a_worker_thread_wakes_when_this_process_queues_deliveries_and_stops_cleanly(
        relay_db, new_tenant, start_service):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    # It would poll only every ten minutes: a delivery that leaves sooner was woken for.
    runtime = relay_db.runtime_with(worker_poll_seconds=600)
    worker, thread = start_in_thread(runtime, threads=1)
    try:
        wait_for(lambda: worker.seconds_until_ready() is None and thread.is_alive(), 30,
                 "the worker to go idle")
        queue_orders(relay_db.engine, tenant, 3)
        wait_for(lambda: statuses(relay_db.engine, tenant) == {"done": 3}, 120,
                 "the woken worker to deliver")
        assert sandbox_stats(replenit.url)["records"]["orders"] == 3
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_a_services_answers_reach_their_handler_in_the_completing_transaction(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant()
    rekindle = start_service("rekindle", rate_limits=False)
    rekindle.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    heard = []

    def handler(conn, tenant_id, subject_id, record_key, answer):  # noqa: ANN001
        assert conn.execute(text("SELECT 1")).scalar() == 1  # an open transaction
        customer, returned = answer
        heard.append((tenant_id, subject_id, record_key, customer.email, returned))

    before = answers.handler_for("rekindle", "customers.upsert")  # the routes' own
    answers.register("rekindle", "customers.upsert", handler)
    try:
        queue(relay_db.engine, tenant, [
            PlannedDelivery("rekindle", "customers.upsert",
                            Customer(email="ann@example.com", first_name="Ann"),
                            subject_id="cus-ann")])
        make_worker().run_once()
    finally:
        if before is None:
            answers.unregister("rekindle", "customers.upsert")
        else:
            answers.register("rekindle", "customers.upsert", before)
    assert statuses(relay_db.engine, tenant) == {"done": 1}
    assert heard == [(tenant, "cus-ann", "ann@example.com", "ann@example.com", False)]
