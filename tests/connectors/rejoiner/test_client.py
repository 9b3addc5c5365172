"""The production client against the sandbox over real HTTP: check, lookups, the upsert's
ownership of gw: tags and the gateway key, the operations and their per-record refusals."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone

import pytest
import requests

from connectors.http import AuthError, NotFound, ValidationError
from connectors.rejoiner import CONNECTOR, mapping
from connectors.rejoiner.client import api_base_url
from gateway.model import Address, Cart, CartItem, Consent, Customer, Money, Order, OrderLine

from .conftest import API_KEY

UTC = timezone.utc


def test_base_url_differs_from_production_only_in_scheme_host_port():
    assert api_base_url("https://rj2.rejoiner.com", "s1") == "https://rj2.rejoiner.com/api/v1/s1"
    assert api_base_url("http://127.0.0.1:5000/", "s1") == "http://127.0.0.1:5000/api/v1/s1"
    assert api_base_url("https://rj2.rejoiner.com/api/v1/{site_id}/", "s1") == (
        "https://rj2.rejoiner.com/api/v1/s1")


def test_check_tells_a_good_key_from_a_bad_one_and_a_wrong_site(sandbox, make_client):
    assert make_client(sandbox.url).check().ok
    secret = "rj_wrong_" + "9" * 20
    bad = make_client(sandbox.url, api_key=secret).check()
    assert not bad.ok and secret not in bad.detail and "401" in bad.detail
    wrong_site = make_client(sandbox.url, site_id="elsewhere").check()
    assert not wrong_site.ok and "404" in wrong_site.detail
    with pytest.raises(AuthError) as caught:
        make_client(sandbox.url, api_key=secret).ping()
    assert secret not in str(caught.value) and secret not in repr(caught.value.body)
    assert API_KEY not in repr(make_client(sandbox.url).http.auth)


def test_lookup_by_email_and_by_id(client):
    created = client.create_customer({"email": "look+up@example.com", "first_name": "Lou"})
    assert client.get_customer("look+up@example.com") == created  # email URL-encoded in path
    assert client.get_customer(created["id"]) == created
    assert client.get_customer("nobody@example.com") is None
    found = client.lookup_customer("look+up@example.com")
    assert found.first_name == "Lou" and found.external_ids == {"rejoiner": created["id"]}


def test_client_errors_are_typed_and_carry_drf_field_errors(client):
    with pytest.raises(ValidationError) as caught:
        client.create_customer({"email": "x@example.com", "language": "deu"})
    assert caught.value.field_errors == {
        "language": ["Ensure this field has no more than 2 characters."]}
    with pytest.raises(NotFound):
        client.update_customer("ghost@example.com", {"email": "ghost@example.com"})


def test_upsert_keeps_the_shops_tags_and_keys_and_owns_only_gw_tags(client):
    client.create_customer({"email": "shop@example.com", "first_name": "Sam",
                            "phone": "+15035550100",
                            "tags": ["vip", "newsletter"],
                            "metadata": {"shopify_id": "987", "notes": {"a": 1}}})
    first = Customer(email="shop@example.com", last_name="Jones", tags=["gw:winback"],
                     status="lapsed", rfm=211, grade="D")
    stored = client.upsert_customer(first, {"origin": "gateway"})
    assert stored["tags"] == ["vip", "newsletter", "gw:winback", "gw:status:lapsed", "gw:grade:D",
                              "gw:rfm:211"]
    assert stored["metadata"] == {"shopify_id": "987", "notes": {"a": 1}, "gateway": {
        "rfm": 211, "grade": "D", "status": "lapsed", "origin": "gateway"}}
    assert (stored["first_name"], stored["last_name"], stored["phone"]) == (
        "Sam", "Jones", "+15035550100")  # fields the gateway does not know are kept

    # The shop edits its own tags meanwhile; the customer returns, the win-back tag goes.
    client.update_customer("shop@example.com", {"email": "shop@example.com",
                                                "tags": stored["tags"] + ["wholesale"]})
    returned = dataclasses.replace(first, tags=[], status="active", rfm=511, grade="B")
    stored = client.upsert_customer(returned)
    assert stored["tags"] == ["vip", "newsletter", "wholesale", "gw:status:active", "gw:grade:B",
                              "gw:rfm:511"]
    assert stored["metadata"]["shopify_id"] == "987"
    assert stored["metadata"]["gateway"] == {"rfm": 511, "grade": "B", "status": "active"}


def test_upsert_creates_with_only_the_gateways_tags(client):
    stored = client.upsert_customer(Customer(email="fresh@example.com", first_name="Fay",
                                             tags=["shop-tag", "gw:winback"], language="fr-CA"))
    assert stored["tags"] == ["gw:winback"] and stored["language"] == "fr"
    again = client.upsert_customer(Customer(email="fresh@example.com", first_name="Fay",
                                            tags=["shop-tag", "gw:winback"], language="fr-CA"))
    assert again == stored


def test_round_trip_through_the_service_loses_only_the_dropped_fields(client):
    customer = Customer(
        id="gw_1", email="round@example.com", external_ids={"rci": "77"}, first_name="Rö",
        last_name="Trip", phone="+441134960000", language="de", timezone="Europe/Berlin",
        address=Address(line1="1 Main", line2="Flat 2", city="Köln", region="NRW",
                        postal_code="50667", country="DE"),
        birthdate=date(1980, 2, 29), gender="f", tags=["gw:winback"],
        metadata={}, lifetime_value=Money(123456, "USD"), order_count=4,
        first_order_at=datetime(2020, 1, 1, tzinfo=UTC),
        last_order_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), recency_score=3,
        frequency_score=4, monetary_score=5, rfm=345, grade="B", segments=["Loyal"],
        cohort="2020-01", acquisition_source="email", status="at_risk", engagement_score=40,
        returned_at=None,
    )
    client.upsert_customer(customer)
    back = client.lookup_customer("round@example.com")
    rejoiner_id = back.external_ids.pop("rejoiner")
    assert rejoiner_id
    assert back == dataclasses.replace(customer, consent=Consent())


def test_operations_go_record_by_record_and_refuse_only_the_bad_ones(sandbox, client, raw):
    requests.post(f"{sandbox.url}/_sandbox/faults",
                  json={"reject_keys": {"blocked@example.com": "blocked by the shop"}},
                  timeout=5).raise_for_status()
    op = CONNECTOR.operations["consent.opt_in"]
    records = [Customer(email="a@example.com"), Customer(email="blocked@example.com"),
               Customer(email=None), Customer(email="b@example.com")]
    result = op.send(client, records, {"currency": "USD"})
    assert result.accepted == 2
    assert result.rejected[1] == {"email": ["blocked by the shop"]}
    assert set(result.rejected) == {1, 2}
    assert raw("GET", "customers/a%40example.com/").json()["is_opted_in"] is True
    assert op.key(Customer(email=" A@Example.com ")) == "a@example.com"


def test_convert_a_cart_and_an_order(client, raw):
    cart = Cart(email="buyer@example.com", value=Money(1000, "USD"), item_count=3,
                items=[CartItem(product_id="p", quantity=3, line_total=Money(1000, "USD"))])
    order = Order(id="1001", placed_at=datetime(2024, 1, 1, tzinfo=UTC),
                  total=Money(500, "USD"), customer_email="buyer@example.com",
                  lines=[OrderLine(product_id="q", sku="Q-1", quantity=1,
                                   unit_price=Money(500, "USD"))])
    result = CONNECTOR.operations["carts.convert"].send(client, [cart, order], {})
    assert result.accepted == 2, result
    conversions = raw.record("activity", "buyer@example.com")["conversions"]
    assert conversions[0]["cart_items"][0]["price"] == 333  # 1000 / 3, half-even
    assert conversions[0]["cart_items"][0]["qty_price"] == 1000  # the total stays exact
    assert conversions[1]["cart_data"]["order_number"] == "1001"
    assert conversions[1]["cart_items"][0]["metadata"] == {"sku": "Q-1"}
    euro = Cart(email="eu@example.com", value=Money(100, "EUR"))
    refused = CONNECTOR.operations["carts.convert"].send(client, [euro], {})
    assert refused.accepted == 0 and 0 in refused.rejected


def test_cancel_and_unsubscribe_operations(client, raw):
    customer = Customer(email="journey@example.com")
    assert CONNECTOR.operations["journeys.cancel"].send(client, [customer], {}).accepted == 1
    assert raw.record("activity", "journey@example.com")["cancels"] == 1
    assert CONNECTOR.operations["consent.unsubscribe"].send(client, [customer], {}).accepted == 1
    looked_up = client.lookup_customer("journey@example.com")
    assert looked_up.consent.email is False and looked_up.consent.unsubscribed_at is not None


def test_a_429_is_retried_after_retry_after(sandbox, client):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"burst_429": 1, "retry_after": 2},
                  timeout=5).raise_for_status()
    assert client.ping() == {"status": "success"}
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["requests"]
    assert stats == {"429": 1, "200": 1}


def test_connector_is_declared_as_data():
    assert CONNECTOR.name == "rejoiner"
    assert CONNECTOR.reads == frozenset({"customers"})
    assert set(CONNECTOR.operations) == {"customers.upsert", "carts.convert", "journeys.cancel",
                                         "consent.unsubscribe", "consent.opt_in"}
    assert [str(x) for x in CONNECTOR.client_limits] == ["5/1 seconds"]
    assert [str(x) for x in CONNECTOR.limits] == ["10/1 seconds"]
    assert CONNECTOR.credential_fields == ("api_key",)
    assert set(CONNECTOR.option_fields) == {"site_id", "currency"}
    assert mapping.DROPPED_FIELDS
