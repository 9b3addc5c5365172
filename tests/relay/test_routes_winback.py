"""The win-back route end to end: a customer who turns lapsed is tagged ``gw:winback`` in
Rejoiner (and the message start is recorded when the tag is delivered); an order from them
then ends in a Rejoiner cancel, the tag removed and a ``customer.returned`` event - under the
gateway's scoring, under Rekindle's (its answer says ``returned``), and when the tenant pass
finds the lapse. And the cancel-journeys entry."""

from __future__ import annotations

from datetime import timedelta

import requests
from sqlalchemy import select

from gateway.relay import plan_journey_cancel
from gateway.relay.routes_planning import bulk_planning
from gateway.scoring import rescore_tenant
from gateway.store import records
from gateway.store.events import append_events
from gateway.store.tables import customers
from tests.connectors.conftest import kit_root
from tests.relay import test_routes_kit as kit
from tests.relay.test_routes_kit import (
    connect,
    customer_body,
    days_ago,
    deliver,
    held,
    order_body,
)

# The kit's fixtures, used here by name.
answer_handlers, destinations, gateway_app, make_shop, shop = (
    kit.answer_handlers, kit.destinations, kit.gateway_app, kit.make_shop, kit.shop)


def customer_row(shop, email: str):
    with shop.engine.connect() as conn:
        return conn.execute(select(customers).where(customers.c.tenant_id == shop.id,
                                                    customers.c.email == email)).one()


def explicit_cancels(rejoiner, email: str) -> int:
    """Rejoiner's cancels of the customer's journeys, less those its converts made (the
    sandbox counts a purchase as ending the journeys too)."""
    activity = held(rejoiner, "activity", email)
    return activity["cancels"] - len(activity["conversions"])


def tags(service, email: str) -> list[str]:
    return held(service, "customers", email)["tags"]


def test_a_lapsed_customer_is_tagged_and_an_order_cancels_the_journey(
        relay_db, shop, destinations, make_worker):
    rejoiner = destinations.rejoiner
    connect(relay_db, shop, rejoiner)
    worker = make_worker()
    # Their only order is 200 days old: with the default 60-day gap, lapsed from day 180.
    shop.act("record-order", order_body("L-1", "lee@example.com", placed_at=days_ago(200)))
    lee = customer_row(shop, "lee@example.com")
    assert lee.status == "lapsed"
    assert lee.winback_started_at is None  # planned, not yet sent: no message has started

    deliver(worker, shop)
    assert "gw:winback" in tags(rejoiner, "lee@example.com")
    assert "gw:status:lapsed" in tags(rejoiner, "lee@example.com")
    lee = customer_row(shop, "lee@example.com")
    assert lee.winback_started_at is not None and lee.winback_status == "lapsed"
    started = lee.winback_started_at

    shop.act("record-order", order_body("L-2", "lee@example.com",
                                        placed_at=started + timedelta(minutes=1)))
    assert [e.subject_id for e in shop.events("customer.returned")] == [lee.id]
    deliver(worker, shop)
    assert explicit_cancels(rejoiner, "lee@example.com") == 1
    assert "gw:winback" not in tags(rejoiner, "lee@example.com")
    assert "gw:status:active" in tags(rejoiner, "lee@example.com")
    cancel = shop.rows(operation="journeys.cancel")
    assert [(r.status, r.subject_id) for r in cancel] == [("done", lee.id)]
    assert customer_row(shop, "lee@example.com").winback_started_at == started  # not moved


def test_under_rekindles_scoring_its_returned_answer_cancels_the_journey(
        relay_db, make_shop, destinations, make_worker):
    shop = make_shop(scoring_authority="rekindle")
    rekindle, rejoiner = destinations.rekindle, destinations.rejoiner
    connect(relay_db, shop, rekindle, rejoiner)
    worker = make_worker()
    # Rekindle's rules (its sandbox): a one-purchase customer is expected back within 86 days
    # and is lapsed from 3 x 86; 300 days is lapsed there. The gateway emits nothing itself.
    shop.act("update-customer", customer_body(
        "rita@example.com", "Rita Rae", gdpr=None, purchase_count=1, total_spent=30.0,
        last_purchase_date=days_ago(300).date().isoformat()))
    assert shop.events("customer.status_changed") == []
    deliver(worker, shop)  # Rekindle answers lapsed: its transition, planned at once
    rita = customer_row(shop, "rita@example.com")
    assert (rita.status, rita.rekindle_status) == ("lapsed", "lapsed")
    assert [e.source for e in shop.events("customer.status_changed")] == ["rekindle"]
    assert "gw:winback" in tags(rejoiner, "rita@example.com")

    # Rekindle's own win-back message goes out; then Rita buys again.
    sent = requests.post(f"{kit_root(rekindle.url)}/_sandbox/winback",
                         json={"email": "rita@example.com"}, timeout=10)
    assert sent.status_code == 200, sent.text
    shop.act("record-order", order_body("R-1", "rita@example.com", placed_at=days_ago(0)))
    deliver(worker, shop)

    returned = shop.events("customer.returned")
    assert [(e.subject_id, e.source) for e in returned] == [(rita.id, "rekindle")]
    assert explicit_cancels(rejoiner, "rita@example.com") == 1
    assert "gw:winback" not in tags(rejoiner, "rita@example.com")


def test_the_tenant_pass_plans_the_winback_tag_for_the_customers_it_finds_lapsed(
        relay_db, make_shop, destinations, make_worker):
    rejoiner = destinations.rejoiner
    tagged, silent, switched_off = make_shop("Tagged"), make_shop("Silent"), make_shop("Off")
    connect(relay_db, tagged, rejoiner)
    connect(relay_db, switched_off, rejoiner)
    switched_off.settings(routes={"winback": False})
    worker = make_worker()
    for shop, email in ((tagged, "tia@example.com"), (silent, "sid@example.com"),
                        (switched_off, "ola@example.com")):
        shop.act("record-order", order_body(f"{email}-1", email, placed_at=days_ago(100)))
        assert customer_row(shop, email).status == "at_risk"
        deliver(worker, shop)
    before = max(r.id for shop in (tagged, switched_off) for r in shop.rows())

    later = days_ago(-100)  # 200 days after the order: lapsed
    for shop in (tagged, silent, switched_off):
        assert rescore_tenant(shop.engine, shop.id, now=later).transitions == 1
    planned = [(r.connector, r.operation, r.priority) for r in tagged.rows() if r.id > before]
    assert planned == [("rejoiner", "customers.upsert", 1)]
    assert silent.rows() == []  # no connection: nothing planned
    assert [r for r in switched_off.rows() if r.id > before] == []  # the route is off
    deliver(worker, tagged)
    assert "gw:winback" in tags(rejoiner, "tia@example.com")
    assert "gw:winback" not in tags(rejoiner, "ola@example.com")


def test_cancel_journeys_plans_rejoiners_cancel_only_with_a_connection(
        relay_db, make_shop, destinations, make_worker):
    connected, unconnected = make_shop("With Rejoiner"), make_shop("Without")
    connect(relay_db, connected, destinations.rejoiner)
    for shop in (connected, unconnected):
        shop.act("record-order", order_body(f"{shop.id}-1", "cy@example.com"))
    with relay_db.engine.begin() as conn:
        assert plan_journey_cancel(conn, connected.id, "CY@example.com") is True
        assert plan_journey_cancel(conn, unconnected.id, "cy@example.com") is False
    with relay_db.engine.connect() as conn:
        cy = records.customer_id_for(conn, connected.id, email="cy@example.com")
    rows = connected.rows(operation="journeys.cancel")
    assert [(r.subject_id, r.record_key, r.priority) for r in rows] == \
        [(cy, "cy@example.com", 1)]
    assert unconnected.rows() == []
    deliver(make_worker(), connected)
    assert explicit_cancels(destinations.rejoiner, "cy@example.com") == 1


def test_bulk_planning_reads_back_only_the_events_written_since_its_mark_in_chunks(
        relay_db, shop, destinations, make_worker):
    connect(relay_db, shop, destinations.rejoiner)
    emails = [f"bulk{i}@example.com" for i in range(5)]
    for email in emails:
        shop.act("record-order", order_body(f"{email}-1", email, placed_at=days_ago(100)))
    deliver(make_worker(), shop)  # so what follows is new rows, not coalesced into pending ones
    ids = [customer_row(shop, email).id for email in emails]
    before = max(r.id for r in shop.rows())
    with relay_db.engine.begin() as conn:
        planning = bulk_planning(conn, shop.id, ("customer.status_changed",), chunk=2)
        assert planning.needed
        into = [("customer.status_changed", cid,
                 {"customer_id": cid, "status": "lapsed", "previous_status": "at_risk"})
                for cid in ids]
        into.append(("customer.status_changed", ids[0],  # not the win-back's: not planned
                     {"customer_id": ids[0], "status": "at_risk", "previous_status": "active"}))
        append_events(conn, shop.id, into, occurred_at=days_ago(0), source="gateway")
        assert planning.plan_written() == 5
    planned = [r for r in shop.rows() if r.id > before]
    assert sorted(r.subject_id for r in planned) == sorted(ids)
    assert {(r.connector, r.operation, r.priority) for r in planned} == {
        ("rejoiner", "customers.upsert", 1)}
    with relay_db.engine.begin() as conn:  # no route takes it: nothing done, no lock taken
        assert not bulk_planning(conn, shop.id, ("product.updated",)).needed
