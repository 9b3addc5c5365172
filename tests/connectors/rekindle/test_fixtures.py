"""The reference's own examples hold the wire schemas, the sandbox and the mapping."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from connectors.rekindle import mapping, wire
from connectors.rekindle.mapping import customer_from_wire, updated_from_wire
from gateway.model import Money

from .conftest import FIXTURES, fixture

ITEM_KEYS = ["id", "name", "email", "phone", "status", "engagement_score", "last_purchase_date",
             "total_spent", "purchase_count", "returned_at", "updated_at"]


def test_every_fixture_is_held_by_a_test():
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == [
        "customer_status.json", "find_customer.found.json", "find_customer.not_found.json",
        "rate_limited.json", "update_customer.request.json", "update_customer.response.json",
    ]


def test_fixtures_load_exactly_against_the_wire_schemas():
    items = wire.CustomerItem(many=True).load(wire.loads((FIXTURES / "customer_status.json")
                                                         .read_text()))
    assert items[0]["total_spent"] == Decimal("4200.00")
    assert str(items[0]["total_spent"]) == "4200.00"  # exact, never through a float
    assert items[0]["updated_at"] == datetime(2025, 3, 15, 10, 22, tzinfo=timezone.utc)
    found = wire.CustomerItem(many=True).load(fixture("find_customer.found.json"))
    assert "phone" not in found[0]
    request = wire.UpdateCustomerRequest().load(fixture("update_customer.request.json"))
    assert request["purchase_count"] == 8
    answer = wire.UpdateCustomerResponse().load(fixture("update_customer.response.json"))
    assert answer["customer"]["returned"] is False
    for name in ("find_customer.not_found.json", "rate_limited.json"):
        wire.ErrorBody().load(fixture(name)["body"])


def test_fixture_key_order_is_the_references():
    assert list(fixture("customer_status.json")[0]) == ITEM_KEYS
    assert list(fixture("find_customer.found.json")[0]) == [k for k in ITEM_KEYS if k != "phone"]
    assert list(fixture("update_customer.response.json")["customer"]) == [
        k if k != "returned_at" else "returned" for k in ITEM_KEYS]


def test_fixture_payloads_map_to_canonical_with_exact_values():
    jane = customer_from_wire(wire.loads((FIXTURES / "customer_status.json").read_text())[0])
    assert jane.external_ids == {"rekindle": "bbc3d2b3-55ba-4adf-8ac9-d51d7b6c1234"}
    assert (jane.first_name, jane.last_name, jane.name) == ("Jane", "Smith", "Jane Smith")
    assert jane.email == "jane@example.com"
    assert jane.phone == "+27821234567"
    assert jane.status == "lapsed"
    assert jane.engagement_score == 32
    assert jane.last_order_at == datetime(2024, 9, 1, tzinfo=timezone.utc)
    assert jane.lifetime_value == Money(420000, "USD")
    assert jane.order_count == 7
    assert jane.returned_at is None
    assert jane.updated_at == datetime(2025, 3, 15, 10, 22, tzinfo=timezone.utc)

    found = customer_from_wire(fixture("find_customer.found.json")[0], "ZAR")
    assert found.phone is None and found.lifetime_value == Money(420000, "ZAR")

    updated, returned = updated_from_wire(
        wire.loads((FIXTURES / "update_customer.response.json").read_text()))
    assert returned is False and updated.returned_at is None
    assert updated.status == "active" and updated.engagement_score == 78
    assert updated.lifetime_value == Money(470000, "USD") and updated.order_count == 8
    assert updated.last_order_at == datetime(2025, 1, 15, tzinfo=timezone.utc)
    assert updated.updated_at == datetime(2025, 4, 5, 8, tzinfo=timezone.utc)


def test_mapping_a_fixture_back_gives_the_request_fixture():
    answer = wire.loads((FIXTURES / "update_customer.response.json").read_text())
    customer, _ = updated_from_wire(answer)
    body = mapping.customer_to_wire(customer, "USD")
    assert wire.loads(wire.dumps(body)) == wire.loads(
        (FIXTURES / "update_customer.request.json").read_text())
    assert wire.dumps(body["total_spent"]) == "4700.00"


def test_sandbox_replays_the_reference_examples(sandbox):
    """The reference's Jane, sent on the reference's dates, comes back in the reference's shape
    (ids and engagement scores are the sandbox's own)."""
    example = fixture("customer_status.json")[0]
    body = {k: example[k] for k in ("name", "email", "phone", "last_purchase_date",
                                    "total_spent", "purchase_count")}
    assert sandbox.upsert(body).status_code == 200
    listed = wire.loads(sandbox.call("GET", "/triggers/customer-status").content)
    assert [list(item) for item in listed] == [ITEM_KEYS]
    mine = {k: v for k, v in listed[0].items() if k not in ("id", "engagement_score")}
    theirs = {k: v for k, v in wire.loads((FIXTURES / "customer_status.json").read_text())[0]
              .items() if k not in ("id", "engagement_score")}
    assert mine == theirs
    assert str(listed[0]["total_spent"]) == "4200.00"

    found = sandbox.call("GET", "/actions/find-customer", params={"email": "jane@example.com"})
    reference = fixture("find_customer.found.json")
    assert list(found.json()[0]) == list(reference[0])
    assert {k: v for k, v in found.json()[0].items() if k not in ("id", "engagement_score")} == \
        {k: v for k, v in reference[0].items() if k not in ("id", "engagement_score")}

    # 2025-04-05T08:00:00Z: the update-customer example.
    sandbox.advance((datetime(2025, 4, 5, 8, tzinfo=timezone.utc)
                     - datetime(2025, 3, 15, 10, 22, tzinfo=timezone.utc)).total_seconds())
    answer = sandbox.upsert(fixture("update_customer.request.json"))
    reference = wire.loads((FIXTURES / "update_customer.response.json").read_text())
    got = wire.loads(answer.content)
    assert answer.status_code == 200
    assert list(got) == ["customer"] and list(got["customer"]) == list(reference["customer"])
    skip = ("id", "engagement_score")
    assert {k: v for k, v in got["customer"].items() if k not in skip} == \
        {k: v for k, v in reference["customer"].items() if k not in skip}
    wire.UpdateCustomerResponse().load(got)


@pytest.mark.parametrize("name", ["find_customer.not_found.json"])
def test_sandbox_not_found_is_the_reference_exchange(sandbox, name):
    exchange = fixture(name)
    response = sandbox.call("GET", "/actions/find-customer", params={"email": "no@example.com"})
    assert response.status_code == exchange["status"]
    assert response.json() == exchange["body"]


def test_sandbox_rate_limit_is_the_reference_exchange(make_sandbox):
    sandbox = make_sandbox()
    statuses = [sandbox.call("GET", "/triggers/customer-returned").status_code
                for _ in range(121)]
    assert statuses.count(200) == 120 and statuses[-1] == 429
    exchange = fixture("rate_limited.json")
    response = sandbox.call("GET", "/triggers/customer-returned")
    assert response.status_code == exchange["status"]
    assert response.json() == exchange["body"]
    for header, value in exchange["headers"].items():
        assert response.headers[header] == value
