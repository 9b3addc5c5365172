"""End to end: orders, customers and products entered through the actions reach Replenit,
Rekindle and Rejoiner, counted by the sandboxes themselves; the consent basis decides who
Replenit gets; the shop's own Rejoiner tags and metadata keys survive the gateway's writes; and
Rekindle's answers are recorded."""

from __future__ import annotations

import requests
from sqlalchemy import select

from gateway.scoring import rescore_tenant
from gateway.store import records
from gateway.store.tables import customers
from tests.relay import test_routes_kit as kit
from tests.relay.conftest import REJOINER_SITE
from tests.relay.test_routes_kit import (
    connect,
    counted,
    customer_body,
    days_ago,
    deliver,
    held,
    order_body,
)

# The kit's fixtures, used here by name.
answer_handlers, destinations, gateway_app, make_shop, shop = (
    kit.answer_handlers, kit.destinations, kit.gateway_app, kit.make_shop, kit.shop)


def customer_id(shop, email: str) -> str:
    with shop.engine.connect() as conn:
        return records.customer_id_for(conn, shop.id, email=email)


def test_orders_customers_and_products_from_the_actions_reach_all_three_services(
        relay_db, shop, destinations, make_worker):
    connect(relay_db, shop, destinations.replenit, destinations.rekindle, destinations.rejoiner)
    shop.act("update-customer", customer_body("ann@example.com", "Ann Buyer", phone="+27821234567",
                                              last_purchase_date=days_ago(20).date().isoformat(),
                                              total_spent=40.0, purchase_count=2))
    shop.act("upsert-products", [
        {"id": "P-1", "name": "Tea", "variants": [
            {"id": "V-1", "sku": "SKU-1", "name": "Tea 100g", "price": "25.00",
             "currency": "USD"}]},
        {"id": "P-2", "name": "Pot", "variants": [
            {"id": "V-2", "sku": "SKU-2", "name": "Pot 1l", "price": "60.00",
             "currency": "USD"}]}])
    shop.act("record-order", [order_body("O-1", "ann@example.com"),
                              order_body("O-2", "ann@example.com", sku="SKU-2", product="P-2",
                                         total="60.00")])
    # Bob is new: an order creates him minimally (an email, no name, no recorded consent).
    shop.act("record-order", order_body("O-3", "bob@example.com"))

    deliver(make_worker(), shop)

    assert {r.status for r in shop.rows()} == {"done"}
    ann, bob = customer_id(shop, "ann@example.com"), customer_id(shop, "bob@example.com")
    replenit = counted(destinations.replenit)
    assert (replenit["customers"], replenit["orders"], replenit["products"]) == (1, 2, 2)
    assert held(destinations.replenit, "customers", ann)["GdprOptin"] is True
    assert held(destinations.replenit, "orders", "O-2")["CustomerId"] == ann
    assert held(destinations.replenit, "customers", bob) is None  # no consent: not sent
    assert held(destinations.replenit, "orders", "O-3") is None  # nor his orders
    assert counted(destinations.rekindle)["customers"] == 1  # Bob has no name for Rekindle
    at_rekindle = held(destinations.rekindle, "customers", "ann@example.com")
    assert at_rekindle["purchase_count"] == 2 and at_rekindle["phone"] == "+27821234567"
    rejoiner = counted(destinations.rejoiner)
    assert (rejoiner["customers"], rejoiner["conversions"]) == (2, 3)
    activity = held(destinations.rejoiner, "activity", "ann@example.com")
    assert sorted(c["cart_data"]["order_number"] for c in activity["conversions"]) == \
        ["O-1", "O-2"]
    # Rekindle's answer (its own status and score) is recorded beside the gateway's.
    with shop.engine.connect() as conn:
        row = conn.execute(select(customers.c.rekindle_status, customers.c.rekindle_score)
                           .where(customers.c.id == ann)).one()
    assert row.rekindle_status in ("active", "at_risk", "lapsed", "lost")
    assert row.rekindle_score is not None


def test_replenit_gets_a_customer_and_their_orders_only_under_the_consent_basis(
        relay_db, make_shop, destinations, make_worker):
    shop = make_shop()  # consent_basis: consent (the default)
    connect(relay_db, shop, destinations.replenit)
    worker = make_worker()
    shop.act("update-customer", customer_body("cara@example.com", "Cara", gdpr=False))
    shop.act("update-customer", customer_body("dan@example.com", "Dan", gdpr=None))
    shop.act("update-customer", customer_body("eve@example.com", "Eve", gdpr=True))
    shop.act("record-order", [order_body("C-1", "cara@example.com"),
                              order_body("D-1", "dan@example.com"),
                              order_body("E-1", "eve@example.com")])
    deliver(worker, shop)
    cara, eve = customer_id(shop, "cara@example.com"), customer_id(shop, "eve@example.com")
    assert (held(destinations.replenit, "customers", cara),
            held(destinations.replenit, "orders", "C-1")) == (None, None)
    assert held(destinations.replenit, "orders", "D-1") is None
    assert held(destinations.replenit, "customers", eve)["GdprOptin"] is True
    assert counted(destinations.replenit)["customers"] == 1
    assert counted(destinations.replenit)["orders"] == 1

    # Cara gives processing consent: she is sent, with the order she placed before.
    shop.act("update-customer", customer_body("cara@example.com", "Cara", gdpr=True))
    # Eve withdraws it: Replenit may no longer hold her.
    shop.act("update-customer", customer_body("eve@example.com", "Eve", gdpr=False))
    deliver(worker, shop)
    assert held(destinations.replenit, "customers", cara)["GdprOptin"] is True
    assert held(destinations.replenit, "orders", "C-1")["CustomerId"] == cara
    assert held(destinations.replenit, "customers", eve) is None
    assert held(destinations.replenit, "orders", "E-1") is None

    # A tenant that declares a lawful basis sends everyone, GdprOptin true by that basis.
    lawful = make_shop("Lawful shop", consent_basis="lawful_basis")
    connect(relay_db, lawful, destinations.replenit)
    lawful.act("update-customer", customer_body("fay@example.com", "Fay", gdpr=None))
    deliver(worker, lawful)
    fay = customer_id(lawful, "fay@example.com")
    assert held(destinations.replenit, "customers", fay)["GdprOptin"] is True


def test_the_shops_own_rejoiner_tags_and_metadata_keys_survive(relay_db, shop, destinations,
                                                                 make_worker):
    rejoiner = destinations.rejoiner
    connect(relay_db, shop, rejoiner)
    made = requests.post(
        f"{rejoiner.url}/api/v1/{REJOINER_SITE}/customers/",
        headers={"Authorization": f"Rejoiner {rejoiner.api_key}"},
        json={"email": "gil@example.com", "first_name": "Gil", "tags": ["vip", "gw:stale"],
              "metadata": {"loyalty": "gold", "gateway": {"old": True}}}, timeout=10)
    assert made.status_code == 200, made.text
    before = counted(rejoiner)["customers"]
    shop.act("update-customer", customer_body("gil@example.com", "Gil Green",
                                              last_purchase_date=days_ago(5).date().isoformat(),
                                              purchase_count=3, total_spent=90.0))
    worker = make_worker()
    deliver(worker, shop)
    profile = held(rejoiner, "customers", "gil@example.com")
    assert counted(rejoiner)["customers"] == before  # updated, not created again
    assert "vip" in profile["tags"]  # the shop's own
    assert "gw:stale" not in profile["tags"]  # gw: tags are the gateway's: it no longer says it
    assert "gw:status:active" in profile["tags"]
    assert profile["metadata"]["loyalty"] == "gold"
    assert profile["metadata"]["gateway"]["status"] == "active"
    assert "old" not in profile["metadata"]["gateway"]
    assert profile["last_name"] == "Green"

    # RFM travels as gw: tags once the tenant pass has scored it, at the next profile write.
    rescore_tenant(shop.engine, shop.id)
    shop.act("update-customer", customer_body("gil@example.com", "Gil Green",
                                              phone="+27821112222"))
    deliver(worker, shop)
    profile = held(rejoiner, "customers", "gil@example.com")
    assert any(t.startswith("gw:rfm:") for t in profile["tags"])
    assert any(t.startswith("gw:grade:") for t in profile["tags"])
    assert "vip" in profile["tags"] and profile["metadata"]["loyalty"] == "gold"
