"""The reference's own examples against the wire schemas (a misreading shared by client and
sandbox is caught here), and the DRF-style error shapes."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from marshmallow import ValidationError

from connectors.rejoiner import wire

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rejoiner" / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_convert_example_loads_with_exact_values():
    loaded = wire.ConvertSchema().load(fixture("convert_request"))
    assert loaded["email"] == "customer@example.com"
    assert loaded["cart_data"] == {
        "cart_value": 2000, "cart_item_count": 3, "promo": "SALE", "order_number": None,
        "return_url": "http://example.com/cart/12345/", "metadata": {},
    }
    first, second = loaded["cart_items"]
    assert first == {
        "product_id": "12345", "name": "Product #1", "price": 1000, "description": "A product",
        "category": ["cool", "products"], "item_qty": 1, "qty_price": 1000,
        "product_url": "http://example.com/products/12345",
        "image_url": "http://example.com/products/img/12345.jpg", "metadata": {},
    }
    assert (second["product_id"], second["price"], second["item_qty"], second["qty_price"]) == (
        "54321", 500, 2, 1000)
    assert second["category"] == ["awesome", "products"]


def test_convert_example_is_self_consistent():
    """cart_value is the sum of qty_price, cart_item_count the sum of item_qty (as documented)."""
    body = fixture("convert_request")
    items = body["cart_items"]
    assert body["cart_data"]["cart_value"] == sum(i["qty_price"] for i in items) == 2000
    assert body["cart_data"]["cart_item_count"] == sum(i["item_qty"] for i in items) == 3
    assert all(i["price"] * i["item_qty"] == i["qty_price"] for i in items)


def test_email_only_examples_load():
    for name in ("cancel_request", "unsubscribe_request"):
        assert wire.EmailSchema().load(fixture(name)) == {"email": "customer@example.com"}


def test_opt_in_extras_are_kept_as_strings():
    loaded = wire.OptInSchema().load(fixture("opt_in_request"))
    assert loaded == {
        "email": "customer@example.com",
        "metadata": {"type": "accepts marketing checkbox",
                     "otherInfo": "accepted marketing on checkout page"},
    }
    odd = wire.OptInSchema().load({"email": "a@example.com", "n": 5, "ok": True, "o": {"b": 1}})
    assert odd["metadata"] == {"n": "5", "ok": "true", "o": '{"b":1}'}


def test_cart_and_item_extras_go_to_metadata_as_strings():
    body = fixture("convert_request")
    body["cart_data"]["channel"] = "pos"
    body["cart_data"]["store"] = 12
    body["cart_items"][0]["colour"] = "red"
    loaded = wire.ConvertSchema().load(body)
    assert loaded["cart_data"]["metadata"] == {"channel": "pos", "store": "12"}
    assert loaded["cart_items"][0]["metadata"] == {"colour": "red"}


def test_customer_example_response_loads_with_exact_values():
    loaded = wire.CustomerSchema().load(fixture("customer_response"))
    assert loaded["id"] == "foobar"
    assert loaded["first_name"] == "Madonna" and loaded["last_name"] == "Lewis"
    assert loaded["age"] == 49
    assert loaded["birthdate"] == date(1969, 10, 26)
    assert loaded["opt_in_date"] == datetime(2018, 5, 25, 5, 35, 31, 803626)
    assert loaded["tags"] == ["foo", "bar"] and loaded["metadata"] == {"foo": "bar"}
    assert loaded["is_opted_in"] is True and loaded["is_unsubscribed"] is False
    assert (loaded["address1"], loaded["city"], loaded["state"], loaded["postal_code"],
            loaded["country"]) == ("1505 Dogwood Lane", "Tucson", "AZ", "85705", "US")


def test_customer_response_can_be_written_back_as_a_profile():
    """Read-only fields are ignored, the blank ones valid: a read profile is a valid PUT body."""
    loaded = wire.ProfileSchema().load(fixture("customer_response"))
    assert "id" not in loaded and "is_opted_in" not in loaded
    assert loaded["gender"] == "" and loaded["birthdate"] == date(1969, 10, 26)


def test_profile_absent_fields_stay_absent():
    assert wire.ProfileSchema().load({"email": "a@example.com"}) == {"email": "a@example.com"}


def test_ping_fixture():
    assert wire.StatusSchema().load(fixture("ping_response")) == {"status": "success"}


@pytest.mark.parametrize("body, errors", [
    ({}, {"email": ["This field is required."]}),
    ({"email": "a@example.com", "gender": "x"}, {"gender": ['"x" is not a valid choice.']}),
    ({"email": "a@example.com", "language": "eng"},
     {"language": ["Ensure this field has no more than 2 characters."]}),
    ({"email": "a@example.com", "birthdate": "26/10/1969"},
     {"birthdate": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]}),
    ({"email": "not-an-email"}, {"email": ["Enter a valid email address."]}),
])
def test_profile_validation_messages_are_drfs(body, errors):
    with pytest.raises(ValidationError) as exc:
        wire.ProfileSchema().load(body)
    assert wire.drf_errors(exc.value.messages) == errors


def test_nested_item_errors_are_a_list_per_item():
    body = {"email": "a@example.com", "cart_items": [{"product_id": "1"}, {"price": 5}]}
    with pytest.raises(ValidationError) as exc:
        wire.ConvertSchema().load(body)
    assert wire.drf_errors(exc.value.messages) == {
        "cart_items": [{}, {"product_id": ["This field is required."]}]}


def test_cents_must_be_integers():
    body = {"email": "a@example.com", "cart_data": {"cart_value": 20.5}}
    with pytest.raises(ValidationError) as exc:
        wire.ConvertSchema().load(body)
    assert wire.drf_errors(exc.value.messages) == {
        "cart_data": {"cart_value": ["A valid integer is required."]}}
