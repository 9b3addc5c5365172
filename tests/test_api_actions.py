"""Every action over HTTP: what it stores and answers, its formats, and its refusals (400, 404,
413, 415, 422), none of which writes anything; and erasure, after which writes about the
customer store nothing and say so."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from gateway.store import connections as connection_store
from gateway.store import records
from gateway.store.tables import customers, deliveries
from tests.zapier_helpers import (
    API,
    counts,
    days_ago,
    order,
)

UPDATE = f"{API}/actions/update-customer"
RECORD = f"{API}/actions/record-order"
PRODUCTS = f"{API}/actions/upsert-products"
JANE = {"name": "Jane Smith", "email": "Jane@Example.com", "phone": "+27821234567",
        "last_purchase_date": "2025-01-15", "total_spent": 4700.0, "purchase_count": 8}


def post(client, tenant, path: str, body, **kw):
    return client.post(path, json=body, headers=tenant.headers, **kw)


def find(engine, tenant, email: str):
    with engine.connect() as conn:
        return records.find_customer(conn, tenant.id, email=email)


# --- update-customer -------------------------------------------------------------------------


def test_update_customer_creates_then_updates_and_answers_as_rekindle_does(client, shop):
    recent = {**JANE, "last_purchase_date": days_ago(10).date().isoformat()}
    created = post(client, shop, UPDATE, recent)
    assert created.status_code == 201, created.json
    customer = created.json["customer"]
    assert set(customer) == {"id", "name", "email", "phone", "status", "engagement_score",
                             "last_purchase_date", "total_spent", "purchase_count",
                             "returned_at", "updated_at", "returned"}
    assert (customer["name"], customer["email"], customer["total_spent"],
            customer["purchase_count"], customer["returned"]) == (
        "Jane Smith", "jane@example.com", 4700.0, 8, False)
    assert customer["status"] == "active" and 0 <= customer["engagement_score"] <= 100
    gone_quiet = post(client, shop, UPDATE, {
        **JANE, "last_purchase_date": days_ago(400).date().isoformat()})
    assert gone_quiet.status_code == 200
    assert gone_quiet.json["customer"]["id"] == customer["id"]
    assert gone_quiet.json["customer"]["status"] == "lost"  # the rules, at once


def test_update_customer_takes_canonical_fields_too(client, engine, shop):
    answer = post(client, shop, UPDATE, {
        "name": "Jane Smith", "email": "jane@example.com", "language": "en-ZA",
        "first_name": "Janet", "consent": {"email": True, "gdpr_processing": True},
        "external_ids": {"shop": "C-123"}})
    assert answer.status_code == 201, answer.json
    stored = find(engine, shop, "jane@example.com")
    assert (stored.language, stored.first_name, stored.last_name) == ("en-ZA", "Janet",
                                                                      "Smith")
    assert stored.consent.email is True and stored.consent.gdpr_processing is True
    assert stored.external_ids == {"shop": "C-123"}
    assert answer.json["customer"]["name"] == "Janet Smith"


@pytest.mark.parametrize("body, fields", [
    ({"email": "jane@example.com"}, {"name"}),
    ({"name": "Jane"}, {"email"}),
    ({"name": "Jane", "email": "not-an-email"}, {"email"}),
    ({**JANE, "purchase_count": "eight"}, {"purchase_count"}),
    ({**JANE, "nickname": "JJ"}, {"nickname"}),
    ({**JANE, "language": 7}, {"language"}),
    ({**JANE, "consent": {"email": "maybe"}}, {"consent"}),
])
def test_update_customer_refuses_bad_fields_by_name_and_stores_nothing(client, engine, shop,
                                                                        body, fields):
    answer = post(client, shop, UPDATE, body)
    assert answer.status_code == 400, answer.json
    assert fields <= set(answer.json["errors"]), answer.json
    assert counts(engine, shop.id) == {"customers": 0, "orders": 0, "events": 0}


# --- record-order ----------------------------------------------------------------------------


def test_record_order_canonical_then_resent_unchanged(client, engine, shop):
    body = order("O-1", "ann@example.com", total="59.97")
    first = post(client, shop, RECORD, body)
    assert first.status_code == 201, first.json
    [stored] = first.json["orders"]
    assert (stored["id"], stored["email"], stored["total"], stored["currency"]) == (
        "O-1", "ann@example.com", "59.97", "USD")
    assert first.json["skipped_erased"] == 0
    before = counts(engine, shop.id)
    again = post(client, shop, RECORD, body)
    assert again.status_code == 200 and again.json["orders"] == [stored]
    assert counts(engine, shop.id) == before  # nothing new, not even an event


def test_record_order_in_replenit_format(client, engine, shop):
    body = [{"OrderId": "O-789", "CustomerId": "C-123", "Email": "john.doe@example.com",
             "OrderDate": "2025-08-22T21:00:00Z", "TotalRevenue": 89.97, "Currency": "USD",
             "OrderItems": [
                 {"ProductId": "P-42", "Sku": "SKU-42-RED-L", "Quantity": 2, "Price": 29.99},
                 {"ProductId": "P-43", "Sku": "SKU-43-BLUE-M", "Quantity": 1,
                  "Price": 29.99}]}]
    answer = post(client, shop, f"{RECORD}?format=replenit", body)
    assert answer.status_code == 201, answer.json
    [stored] = answer.json["orders"]
    assert (stored["id"], stored["total"], stored["item_count"]) == ("O-789", "89.97", 3)
    assert stored["email"] == "john.doe@example.com"


def test_record_order_in_rejoiner_format_needs_the_order_number(client, engine, shop):
    convert = {"email": "customer@example.com",
               "cart_data": {"cart_value": 2000, "cart_item_count": 2},
               "cart_items": [{"product_id": "12345", "price": 1000, "item_qty": 2,
                               "qty_price": 2000}]}
    refused = post(client, shop, f"{RECORD}?format=rejoiner", convert)
    assert refused.status_code == 400
    assert "order_number" in refused.json["errors"]["cart_data"]
    assert counts(engine, shop.id)["orders"] == 0
    convert["cart_data"]["order_number"] = "O-12345"
    answer = post(client, shop, f"{RECORD}?format=rejoiner", convert)
    assert answer.status_code == 201, answer.json
    assert answer.json["orders"][0]["total"] == "20.00"


@pytest.mark.parametrize("fmt", ["rci", "rekindle", "bogus"])
def test_record_order_in_a_format_it_does_not_take_is_a_415_naming_the_others(client, shop,
                                                                               fmt):
    answer = post(client, shop, f"{RECORD}?format={fmt}", order("O-2", "b@example.com"))
    assert answer.status_code == 415
    for accepted in ("canonical", "rejoiner", "replenit"):
        assert accepted in answer.json["error"]


def test_an_array_with_one_bad_order_stores_nothing_and_names_it_by_index(client, engine,
                                                                          shop):
    body = [order("O-3", "c@example.com"), order("O-4", "d@example.com", total="1.999"),
            order("O-5", "e@example.com")]
    answer = post(client, shop, RECORD, body)
    assert answer.status_code == 400
    assert set(answer.json["errors"]) == {"1"}
    assert "total" in answer.json["errors"]["1"]
    assert counts(engine, shop.id) == {"customers": 0, "orders": 0, "events": 0}


def test_an_array_of_more_than_100_records_is_refused_before_anything_is_stored(client, engine,
                                                                               shop):
    body = [order(f"O-{i}", f"many{i}@example.com") for i in range(101)]
    answer = post(client, shop, RECORD, body)
    assert answer.status_code == 400 and "at most 100" in answer.json["error"]
    assert counts(engine, shop.id)["orders"] == 0
    assert post(client, shop, RECORD, body[:100]).status_code == 201


def test_an_order_of_an_old_date_scores_its_customer(client, engine, shop):
    answer = post(client, shop, RECORD, order("O-6", "old@example.com",
                                              placed_at=days_ago(200)))
    assert answer.status_code == 201
    assert find(engine, shop, "old@example.com").status == "lapsed"


# --- the body itself -------------------------------------------------------------------------


def test_a_body_that_is_not_json_is_a_415(client, engine, shop):
    for data, kind in (("id=O-1", "application/x-www-form-urlencoded"),
                       (json.dumps(order("O-7", "f@example.com")), "text/plain")):
        answer = client.post(RECORD, data=data, content_type=kind, headers=shop.headers)
        assert answer.status_code == 415 and answer.json["error"]
    assert counts(engine, shop.id)["orders"] == 0


@pytest.mark.parametrize("data", ['{"id": ', "[" * 100 + "]" * 100, "", "\xff"])
def test_invalid_json_is_a_400(client, shop, data):
    answer = client.post(RECORD, data=data, content_type="application/json",
                         headers=shop.headers)
    assert answer.status_code == 400 and answer.json["error"]


def test_a_body_over_the_limit_is_a_413(client, engine, runtime, shop):
    limit = runtime.settings.max_body_bytes
    body = [order(f"O-{i}", f"big{i}@example.com") for i in range(limit // 150)]
    data = json.dumps(body)
    assert len(data) > limit
    answer = client.post(RECORD, data=data, content_type="application/json",
                         headers=shop.headers)
    assert answer.status_code == 413 and answer.json["error"]
    assert counts(engine, shop.id)["orders"] == 0


@pytest.mark.parametrize("path", [UPDATE, RECORD, PRODUCTS, f"{API}/actions/convert-cart",
                                  f"{API}/actions/unsubscribe", f"{API}/actions/opt-in",
                                  f"{API}/actions/cancel-journeys",
                                  f"{API}/actions/record-winback-sent",
                                  f"{API}/actions/delete-customer"])
def test_every_action_refuses_unknown_query_parameters_and_needs_a_key(client, shop, path):
    answer = client.post(f"{path}?surprise=1", json={"email": "x@example.com"},
                         headers=shop.headers)
    assert answer.status_code == 400
    assert "surprise" in answer.json["errors"]
    assert client.post(path, json={"email": "x@example.com"}).status_code == 401


# --- products --------------------------------------------------------------------------------


def test_upsert_products_canonical_and_replenit(client, engine, shop):
    canonical = {"id": "P-1", "name": "Tank", "taxonomy": ["Apparel"], "variants": [
        {"id": "V-1", "sku": "SKU-1", "price": "34.99", "currency": "USD"}]}
    answer = post(client, shop, PRODUCTS, canonical)
    assert answer.status_code == 201, answer.json
    [product] = answer.json["products"]
    assert product["variants"][0]["price"] == "34.99"
    assert post(client, shop, PRODUCTS, canonical).status_code == 200
    replenit = [{"ProductId": "P-42", "ProductName": "Top", "ProductVariants": [
        {"VariantId": "V-42", "Sku": "SKU-42", "Name": "Black", "OriginalPrice": 34.99,
         "Currency": "USD", "IsAvailable": True}]}]
    answer = post(client, shop, f"{PRODUCTS}?format=replenit", replenit)
    assert answer.status_code == 201, answer.json
    assert answer.json["products"][0]["variants"][0]["sku"] == "SKU-42"
    bad = post(client, shop, f"{PRODUCTS}?format=replenit", [{"ProductId": "P-43"}])
    assert bad.status_code == 400 and "0" in bad.json["errors"]


# --- Rejoiner's actions ----------------------------------------------------------------------


def test_convert_cart_once_per_order_number(client, shop):
    body = {"email": "cart@example.com",
            "cart_data": {"cart_value": 2000, "cart_item_count": 1, "order_number": "O-9"}}
    first = post(client, shop, f"{API}/actions/convert-cart", body)
    assert first.status_code == 201, first.json
    assert [r["kind"] for r in first.json["records"]] == ["cart"]
    assert first.json["event_ids"]
    again = post(client, shop, f"{API}/actions/convert-cart", body)
    assert again.status_code == 200 and again.json["event_ids"] == []


def test_unsubscribe_and_opt_in_change_consent_and_fire_the_trigger(client, engine, shop):
    out = post(client, shop, f"{API}/actions/unsubscribe", {"email": "con@example.com"})
    assert out.status_code == 201, out.json
    assert find(engine, shop, "con@example.com").consent.email is False
    back = post(client, shop, f"{API}/actions/opt-in",
                {"email": "con@example.com", "type": "checkbox"})
    assert back.status_code == 200, back.json
    assert find(engine, shop, "con@example.com").consent.email is True
    items = client.get(f"{API}/triggers/consent-changed", headers=shop.headers).json
    assert [(i["channel"], i["consent"]) for i in items] == [("email", True),
                                                             ("email", False)]
    assert post(client, shop, f"{API}/actions/opt-in", {"mail": "x"}).status_code == 400


def test_cancel_journeys_queues_rejoiners_cancel(client, engine, runtime, shop):
    post(client, shop, UPDATE, JANE)

    def queued() -> list:
        with engine.connect() as conn:
            return conn.execute(select(deliveries.c.connector, deliveries.c.operation,
                                       deliveries.c.subject_id).where(
                deliveries.c.tenant_id == shop.id,
                deliveries.c.operation == "journeys.cancel")).all()

    # Without a Rejoiner connection there is nowhere to cancel: said, and nothing queued.
    answer = post(client, shop, f"{API}/actions/cancel-journeys", {"email": "JANE@example.com"})
    assert answer.status_code == 200, answer.json
    assert answer.json["delivery"] == "not_connected" and queued() == []
    with engine.begin() as conn:
        connection_store.save_connection(conn, runtime.vault, shop.id, "rejoiner",
                                         "https://rj2.rejoiner.com/api/v1/site1",
                                         {"api_key": "rj-test-key"},
                                         {"site_id": "site1", "currency": "USD"})
    answer = post(client, shop, f"{API}/actions/cancel-journeys", {"email": "JANE@example.com"})
    assert answer.status_code == 200, answer.json
    assert answer.json["email"] == "jane@example.com" and answer.json["customer_id"]
    assert answer.json["delivery"] == "queued"
    assert queued() == [("rejoiner", "journeys.cancel", answer.json["customer_id"])]
    assert post(client, shop, f"{API}/actions/cancel-journeys",
                {"email": "nope"}).status_code == 400


# --- win-back --------------------------------------------------------------------------------


def test_record_winback_sent_opens_the_window(client, engine, shop):
    lost = post(client, shop, UPDATE, {**JANE, "last_purchase_date":
                                       days_ago(400).date().isoformat()}).json["customer"]
    answer = post(client, shop, f"{API}/actions/record-winback-sent",
                  {"email": "jane@example.com", "sent_at": "2026-01-01T10:00:00Z"})
    assert answer.status_code == 200, answer.json
    assert answer.json == {"customer_id": lost["id"], "status": "lost", "attributable": True,
                           "started_at": "2026-01-01T10:00:00Z"}
    by_id = post(client, shop, f"{API}/actions/record-winback-sent",
                 {"customer_id": lost["id"]})
    assert by_id.status_code == 200
    with engine.connect() as conn:
        started = conn.execute(select(customers.c.winback_started_at).where(
            customers.c.id == lost["id"])).scalar_one()
    assert started is not None
    assert post(client, shop, f"{API}/actions/record-winback-sent",
                {"email": "nobody@example.com"}).status_code == 404
    assert post(client, shop, f"{API}/actions/record-winback-sent", {}).status_code == 400


# --- erasure ---------------------------------------------------------------------------------


def test_after_delete_customer_later_writes_store_nothing_and_say_so(client, engine, shop):
    created = post(client, shop, UPDATE, JANE).json["customer"]
    post(client, shop, RECORD, order("O-10", "jane@example.com"))
    erased = post(client, shop, f"{API}/actions/delete-customer", {"email": "jane@example.com"})
    assert erased.status_code == 200, erased.json
    assert erased.json["customer_id"] == created["id"]
    assert erased.json["outcome"] == "erased" and erased.json["event_ids"]
    before = counts(engine, shop.id)

    update = post(client, shop, UPDATE, JANE)
    assert update.status_code == 422
    assert "erased" in json.dumps(update.json) and "nothing was stored" in json.dumps(
        update.json)
    again = post(client, shop, RECORD, order("O-11", "JANE@example.com"))
    assert again.status_code == 422
    assert "erased" in json.dumps(again.json)
    assert counts(engine, shop.id) == before
    assert find(engine, shop, "jane@example.com") is None
    # The search finds nothing, and the trigger items hold no personal data.
    assert client.get(f"{API}/actions/find-customer?email=jane@example.com",
                      headers=shop.headers).json == []
    items = client.get(f"{API}/triggers/events", headers=shop.headers).json
    assert "jane@example.com" not in json.dumps(items)
    assert "+27821234567" not in json.dumps(items)


def test_an_array_with_an_erased_customer_stores_the_others(client, engine, shop):
    post(client, shop, UPDATE, JANE)
    post(client, shop, f"{API}/actions/delete-customer", {"email": "jane@example.com"})
    answer = post(client, shop, RECORD, [order("O-12", "jane@example.com"),
                                         order("O-13", "kim@example.com")])
    assert answer.status_code == 201
    assert [o["id"] for o in answer.json["orders"]] == ["O-13"]
    assert answer.json["skipped_erased"] == 1


def test_delete_customer_by_id_twice_and_of_nobody(client, engine, shop):
    created = post(client, shop, UPDATE, JANE).json["customer"]
    first = post(client, shop, f"{API}/actions/delete-customer", {"customer_id": created["id"]})
    assert first.status_code == 200 and first.json["outcome"] == "erased"
    second = post(client, shop, f"{API}/actions/delete-customer",
                  {"customer_id": created["id"]})
    assert second.status_code == 200 and second.json["outcome"] == "already_erased"
    before = counts(engine, shop.id)
    nobody = post(client, shop, f"{API}/actions/delete-customer",
                  {"email": "never-seen@example.com"})
    assert nobody.status_code == 404
    assert counts(engine, shop.id) == before
    assert post(client, shop, f"{API}/actions/delete-customer", {}).status_code == 400
