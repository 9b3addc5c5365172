"""The searches: 200 with an array, best match first, ``[]`` for no match (not Rekindle's 404)."""

from __future__ import annotations

import pytest

from tests.zapier_helpers import API, days_ago, order

FIND_CUSTOMER = f"{API}/actions/find-customer"
FIND_ORDER = f"{API}/searches/find-order"


def test_find_customer_answers_rekindles_item_in_an_array(client, shop):
    client.post(f"{API}/actions/update-customer", headers=shop.headers, json={
        "name": "Jane Smith", "email": "jane@example.com", "phone": "+27821234567",
        "last_purchase_date": days_ago(200).date().isoformat(), "total_spent": 4200.0,
        "purchase_count": 7})
    answer = client.get(f"{FIND_CUSTOMER}?email=JANE@Example.com", headers=shop.headers)
    assert answer.status_code == 200
    [item] = answer.json
    assert set(item) == {"id", "name", "email", "phone", "status", "engagement_score",
                         "last_purchase_date", "total_spent", "purchase_count", "returned_at",
                         "updated_at"}
    assert (item["name"], item["email"], item["status"], item["total_spent"],
            item["purchase_count"], item["returned_at"]) == (
        "Jane Smith", "jane@example.com", "lapsed", 4200.0, 7, None)
    assert item["id"].startswith("cus_")


def test_find_customer_without_a_match_is_an_empty_array(client, shop):
    answer = client.get(f"{FIND_CUSTOMER}?email=nobody@example.com", headers=shop.headers)
    assert answer.status_code == 200 and answer.json == []


def test_find_order_answers_the_order_with_its_lines(client, shop):
    client.post(f"{API}/actions/record-order", headers=shop.headers,
                json=order("O-1", "ann@example.com", total="20.00"))
    answer = client.get(f"{FIND_ORDER}?id=O-1", headers=shop.headers)
    assert answer.status_code == 200
    [found] = answer.json
    assert (found["id"], found["email"], found["total"], found["currency"]) == (
        "O-1", "ann@example.com", "20.00", "USD")
    assert found["lines"] == [{"product_id": None, "sku": "SKU-1", "name": None,
                               "quantity": 1, "unit_price": "20.00", "original_price": None,
                               "size": None, "colour": None, "brand": None, "gift": False}]
    assert client.get(f"{FIND_ORDER}?id=O-2", headers=shop.headers).json == []


@pytest.mark.parametrize("url", [
    FIND_CUSTOMER, f"{FIND_CUSTOMER}?email=", f"{FIND_CUSTOMER}?email=not-an-email",
    f"{FIND_CUSTOMER}?email=a@example.com&extra=1", FIND_ORDER, f"{FIND_ORDER}?id=",
    f"{FIND_ORDER}?id={'x' * 201}", f"{FIND_ORDER}?id=O-1&email=a@example.com",
])
def test_missing_bad_or_unknown_parameters_are_400s(client, shop, url):
    answer = client.get(url, headers=shop.headers)
    assert answer.status_code == 400, answer.json
    assert answer.json["errors"]


def test_searches_need_a_key(client):
    assert client.get(f"{FIND_ORDER}?id=O-1").status_code == 401
    assert client.get(f"{FIND_CUSTOMER}?email=a@example.com").status_code == 401
