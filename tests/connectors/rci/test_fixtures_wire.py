"""The reference's own examples, held against the wire schemas (and the schemas against them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from marshmallow import ValidationError

from connectors.rci import wire

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rci" / "fixtures"
HOST = "https://repeat-customer-insights.littlestreamsoftware.com"


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def test_the_example_customer_has_exactly_the_documented_attributes():
    resource = load("customer_example.json")["data"]
    # The example omits redacted_at, which only redacted customers carry set.
    assert list(resource["attributes"]) == [a for a in wire.ATTRIBUTES if a != "redacted_at"]
    assert resource["type"] == wire.CUSTOMER_TYPE
    assert resource["id"] == "123456"
    assert resource["links"] == {"self": f"{HOST}/api/v1/customers/123456"}


def test_list_response_loads_unchanged():
    doc = load("list_customers_response.json")
    loaded = wire.LIST_DOCUMENT.load(doc)
    loaded["data"][0]["attributes"].pop("redacted_at")  # load_default None
    assert loaded == doc
    assert doc["links"]["next"].endswith("/customers?page%5Bcursor%5D=abc123")
    assert doc["jsonapi"] == wire.JSONAPI


def test_view_response_loads_unchanged():
    doc = load("view_customer_response.json")
    loaded = wire.CUSTOMER_DOCUMENT.load(doc)
    loaded["data"]["attributes"].pop("redacted_at")
    assert loaded == doc
    assert doc["data"] == load("customer_example.json")["data"]
    assert doc["data"] == load("list_customers_response.json")["data"][0]


def test_pagination_links_match_the_list_example():
    assert load("pagination_links.json")["links"] == load("list_customers_response.json")["links"]


def test_example_requests():
    reqs = {r["name"]: r for r in load("requests.json")}
    assert reqs["list_customers"]["url"] == f"{HOST}/api/v1/customers"
    assert reqs["list_customers_page"]["url"] == f"{HOST}/api/v1/customers?page%5Bcursor%5D=abc123"
    assert reqs["view_customer"]["url"] == f"{HOST}/api/v1/customers/123456"
    assert all(r["method"] == "GET" for r in reqs.values())
    assert all(r["headers"] == {"Authorization": "Bearer <token>"} for r in reqs.values())
    assert wire.LIST_QUERY.load({"page[cursor]": "abc123"}) == {"cursor": "abc123"}


def _resource():
    return copy.deepcopy(load("customer_example.json")["data"])


@pytest.mark.parametrize(
    "attribute, value",
    [
        ("recency_score", 0),
        ("recency_score", 6),
        ("monetary_score", "1"),
        ("rfm", 110),
        ("rfm", 556),
        ("rfm", 412),  # not made of the scores 4, 1, 1
        ("grade", "E"),
        ("grade", "a"),
        ("cohort", "2022-13"),
        ("cohort", "2022/04"),
        ("ltv_currency", "usd"),
        ("ltv_currency", "XXY"),
        ("ltv_cents", 57.0),
        ("ltv_cents", None),
        ("orders_count", -1),
        ("email_marketing_consent", "true"),
        ("sms_marketing_consent", 1),
        ("remote_created_at", "2016-04-13 18:31:51"),
        ("recent_order_at", "2016-04-13T18:32:03.000+02:00"),
        ("created_at", None),
        ("segments", "Average spender"),
    ],
)
def test_attribute_rules(attribute, value):
    resource = _resource()
    resource["attributes"][attribute] = value
    with pytest.raises(ValidationError) as info:
        wire.CUSTOMER_RESOURCE.load(resource)
    assert "attributes" in info.value.messages


def test_redacted_customer_shape_is_valid():
    resource = _resource()
    resource["attributes"].update(
        first_name=None, last_name=None, email=None, redacted_at="2024-01-02T03:04:05.000Z"
    )
    assert wire.CUSTOMER_RESOURCE.load(resource)["attributes"]["redacted_at"] == (
        "2024-01-02T03:04:05.000Z"
    )


def test_unknown_attributes_are_tolerated_but_not_unknown_members():
    resource = _resource()
    resource["attributes"]["added_in_2030"] = 1
    assert wire.CUSTOMER_RESOURCE.load(resource)["attributes"]["added_in_2030"] == 1
    resource["surprise"] = True
    with pytest.raises(ValidationError):
        wire.CUSTOMER_RESOURCE.load(resource)


def test_wrong_type_and_list_next_null():
    resource = _resource()
    resource["type"] = "customers"
    with pytest.raises(ValidationError):
        wire.CUSTOMER_RESOURCE.load(resource)
    doc = load("list_customers_response.json")
    doc["links"]["next"] = None  # JSON:API allows null as well as absent
    assert wire.LIST_DOCUMENT.load(doc)["links"]["next"] is None
    del doc["links"]["next"]
    assert "next" not in wire.LIST_DOCUMENT.load(doc)["links"]


@pytest.mark.parametrize(
    "query",
    [{"page[cursor]": ""}, {"page[size]": "10"}, {"page": "2"}, {"page[number]": "1"}],
)
def test_list_query_rules(query):
    with pytest.raises(ValidationError):
        wire.LIST_QUERY.load(query)


def test_error_document():
    doc = wire.error_document(404, "Not Found", "nope")
    assert wire.ERROR_DOCUMENT.load(doc) == doc
    assert doc == {
        "errors": [{"status": "404", "title": "Not Found", "detail": "nope"}],
        "jsonapi": {"version": "1.0"},
    }
