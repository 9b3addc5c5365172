"""Tenant isolation on every trigger, action and search: tenant A's key against tenant B's ids
answers 404 or ``[]`` (exactly as for ids that do not exist) and changes nothing of B's."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from gateway.store import events as event_store
from gateway.store.tables import customers, deliveries, events, orders
from tests.zapier_helpers import API, counts, days_ago, order

TRIGGERS = ["customer-status", "customer-returned", "new-customer", "new-order",
            "consent-changed", "events"]


def snapshot(engine, tenant_id: str) -> dict:
    """Everything of a tenant's that these actions could touch."""
    with engine.connect() as conn:
        return {
            "customers": [tuple(r) for r in conn.execute(
                select(customers).where(customers.c.tenant_id == tenant_id)
                .order_by(customers.c.id))],
            "orders": [tuple(r) for r in conn.execute(
                select(orders).where(orders.c.tenant_id == tenant_id).order_by(orders.c.id))],
            "events": [(r.id, json.dumps(r.item, sort_keys=True)) for r in conn.execute(
                select(events).where(events.c.tenant_id == tenant_id).order_by(events.c.seq))],
            "deliveries": [tuple(r) for r in conn.execute(
                select(deliveries.c.id).where(deliveries.c.tenant_id == tenant_id))],
        }


@pytest.fixture()
def two_shops(client, engine, make_zapier):
    """Tenant A (empty but for one customer of its own) and tenant B, with a customer of every
    kind of event: status changes, a return, consent, orders."""
    a, b = make_zapier("A"), make_zapier("B")
    client.post(f"{API}/actions/update-customer", headers=a.headers,
                json={"name": "Own Customer", "email": "own@example.com"})
    for days in (120, 200):
        client.post(f"{API}/actions/update-customer", headers=b.headers, json={
            "name": "Bea B", "email": "bea@example.com", "phone": "+27820000001",
            "purchase_count": 1, "last_purchase_date": days_ago(days).date().isoformat()})
    client.post(f"{API}/actions/record-order", headers=b.headers,
                json=order("B-ORDER", "bea@example.com", placed_at=days_ago(2)))
    client.post(f"{API}/actions/unsubscribe", headers=b.headers,
                json={"email": "bea@example.com"})
    with engine.connect() as conn:
        b_customer = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == b.id, customers.c.email == "bea@example.com")).scalar_one()
        b_events = [event.id for _, event in event_store.list_events(conn, b.id)]
    assert len(b_events) >= 5
    return a, b, b_customer, b_events


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_trigger_shows_none_of_another_tenants_items(client, two_shops, trigger):
    a, b, _, b_events = two_shops
    mine = client.get(f"{API}/triggers/{trigger}", headers=a.headers)
    assert mine.status_code == 200
    assert not {item["id"] for item in mine.json} & set(b_events)
    assert "bea@example.com" not in mine.get_data(as_text=True)
    theirs = client.get(f"{API}/triggers/{trigger}", headers=b.headers).json
    if trigger != "customer-returned":
        assert theirs, trigger  # B's own key does see them


def test_a_cursor_from_another_tenants_page_pages_only_ones_own(client, two_shops):
    a, b, _, b_events = two_shops
    page = client.get(f"{API}/triggers/events?limit=1", headers=b.headers)
    cursor = page.headers["Link"].split("cursor=")[1].split(">")[0]
    mine = client.get(f"{API}/triggers/events?cursor={cursor}", headers=a.headers)
    assert mine.status_code == 200
    assert not {item["id"] for item in mine.json} & set(b_events)


def test_searches_find_nothing_of_another_tenant(client, two_shops):
    a, _, _, _ = two_shops
    found = client.get(f"{API}/actions/find-customer?email=bea@example.com", headers=a.headers)
    assert found.status_code == 200 and found.json == []
    order_found = client.get(f"{API}/searches/find-order?id=B-ORDER", headers=a.headers)
    assert order_found.status_code == 200 and order_found.json == []


@pytest.mark.parametrize("path, body", [
    ("delete-customer", {"customer_id": "{b_customer}"}),
    ("delete-customer", {"email": "bea@example.com"}),
    ("record-winback-sent", {"customer_id": "{b_customer}"}),
    ("record-winback-sent", {"email": "bea@example.com"}),
    ("record-order", {**order("A-ORDER", "unused@example.com"), "customer_email": None,
                      "customer_id": "{b_customer}"}),
])
def test_an_action_on_another_tenants_customer_is_a_404_and_changes_nothing(
        client, engine, two_shops, path, body):
    a, b, b_customer, _ = two_shops
    body = json.loads(json.dumps(body).replace("{b_customer}", b_customer))
    before_a, before_b = snapshot(engine, a.id), snapshot(engine, b.id)
    answer = client.post(f"{API}/actions/{path}", json=body, headers=a.headers)
    assert answer.status_code == 404, answer.json
    assert b_customer not in answer.get_data(as_text=True)
    assert snapshot(engine, a.id) == before_a
    assert snapshot(engine, b.id) == before_b
    # ... exactly as for an id that does not exist at all.
    missing = json.loads(json.dumps(body).replace(b_customer, "cus_00000000000000000000000000")
                         .replace("bea@example.com", "nobody@example.com"))
    twin = client.post(f"{API}/actions/{path}", json=missing, headers=a.headers)
    assert (twin.status_code, set(twin.json)) == (answer.status_code, set(answer.json))


@pytest.mark.parametrize("path, body", [
    ("update-customer", {"name": "Bea A", "email": "bea@example.com"}),
    ("record-order", order("B-ORDER", "bea@example.com")),
    ("unsubscribe", {"email": "bea@example.com"}),
    ("opt-in", {"email": "bea@example.com"}),
    ("convert-cart", {"email": "bea@example.com", "cart_data": {"order_number": "B-ORDER"}}),
    ("cancel-journeys", {"email": "bea@example.com"}),
    ("upsert-products", {"id": "P-1", "name": "Shared id"}),
])
def test_an_action_with_another_tenants_keys_writes_only_ones_own(
        client, engine, two_shops, path, body):
    """Emails and the shop's ids are not unique across tenants: A writing "bea@example.com"
    or order "B-ORDER" makes A's own records and leaves B's exactly as they were."""
    a, b, _, _ = two_shops
    before_b = snapshot(engine, b.id)
    answer = client.post(f"{API}/actions/{path}", json=body, headers=a.headers)
    assert answer.status_code in (200, 201), answer.json
    assert snapshot(engine, b.id) == before_b
    assert counts(engine, a.id)["events"] > 0 or path == "cancel-journeys"
