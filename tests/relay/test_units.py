"""The engine's pure parts: payloads, the choice of the next group, the breaker."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from gateway.model import (
    Address,
    Cart,
    CartItem,
    Consent,
    Customer,
    Money,
    Order,
    OrderLine,
    Product,
    Variant,
)
from gateway.relay import payloads
from gateway.relay.breaker import Breakers
from gateway.relay.choose import candidates
from gateway.relay.claim import Group

NOW = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)


def _through_json(record):  # noqa: ANN001, ANN202
    return payloads.load(json.loads(json.dumps(payloads.dump(record))))


@pytest.mark.parametrize("record", [
    Customer(id="c1", email="a@example.com", external_ids={"rci": "9"}, first_name="A",
             address=Address(city="Cape Town", country="ZA"), birthdate=date(1990, 2, 3),
             tags=["vip"], metadata={"n": 1, "x": [1, "2"]},
             consent=Consent(email=True, sms=False,
                             opted_in_at=datetime(2024, 1, 1, tzinfo=timezone.utc)),
             lifetime_value=Money(123456, "JPY"), rfm=455, grade="B", segments=["Loyal"],
             status="at_risk", engagement_score=40, returned_at=NOW),
    Order(id="O-1", placed_at=NOW, total=Money(1001, "BHD"), customer_id="c1",
          lines=[OrderLine("P1", "S1", 2, Money(500, "BHD"), original_price=Money(600, "BHD"),
                           gift=True)], cancelled=True),
    Product(id="P1", name="Tea", taxonomy=["Food", "Tea"],
            variants=[Variant("V1", "S1", price=Money(199, "USD"), stock=4)]),
    Cart(email="a@example.com", value=Money(2000, "EUR"), order_number="O-1",
         items=[CartItem("P1", quantity=2, line_total=Money(2000, "EUR"))], extra={"k": "v"}),
    {"customerId": "c1", "email": "a@example.com"},
    "a@example.com",
])
def test_a_payload_reads_back_as_the_same_record_with_exact_money(record):
    assert _through_json(record) == record


def test_payloads_refuse_what_they_cannot_hold_and_name_what_does_not_read_back():
    with pytest.raises(TypeError):
        payloads.dump({"amount": 0.1})
    for bad in ({"kind": "order", "data": {"id": "O"}}, {"kind": "spaceship", "data": {}},
                {"kind": "customer", "data": {"tags": "vip"}}, [], {"data": 1}):
        with pytest.raises(payloads.PayloadError):
            payloads.load(bad)


def _group(tenant: str, connector: str = "replenit", operation: str = "orders.upsert",
           priority: int = 2, age: float = 10.0, count: int = 200) -> Group:
    return Group(tenant, connector, operation, priority, NOW - timedelta(seconds=age), count)


def _order(groups, *, live=None, blocked=(), after=None, linger=1.0):  # noqa: ANN001, ANN202
    ordered, wake = candidates(groups, now=NOW, linger_seconds=linger,
                               batch_size=lambda g: 200, live=live or {},
                               blocked=lambda d: d in blocked, after_tenant=after)
    return [(g.tenant_id, g.operation) for g in ordered], wake


def test_tenants_take_turns_whatever_their_backlog():
    groups = [_group("t1", age=1000), _group("t2", age=1, count=1), _group("t3", age=5)]
    assert _order(groups, after="t1")[0][0] == ("t2", "orders.upsert")
    assert _order(groups, after="t3")[0][0] == ("t1", "orders.upsert")
    assert _order(groups)[0] == [("t1", "orders.upsert"), ("t2", "orders.upsert"),
                                 ("t3", "orders.upsert")]


def test_a_lower_priority_due_or_in_flight_holds_back_the_same_destination_only():
    products = _group("t1", operation="products.upsert", priority=1, count=3, age=0.2)
    orders = _group("t1", priority=2)
    other = _group("t2", priority=3)
    ordered, wake = _order([orders, products, other])
    assert ordered == [("t2", "orders.upsert")]  # t1's products linger, its orders wait
    assert wake == products.due_since + timedelta(seconds=1)
    assert _order([orders], live={("t1", "replenit"): 1})[0] == []
    assert _order([orders], live={("t1", "rejoiner"): 0})[0] == [("t1", "orders.upsert")]
    assert _order([orders], blocked={("t1", "replenit")})[0] == []


def test_a_partial_batch_waits_for_its_linger_and_a_full_one_does_not():
    assert _order([_group("t1", count=5, age=0.5)])[0] == []
    assert _order([_group("t1", count=5, age=1.0)])[0] == [("t1", "orders.upsert")]
    assert _order([_group("t1", count=200, age=0.0)])[0] == [("t1", "orders.upsert")]


def test_the_breaker_opens_after_failures_probes_one_at_a_time_and_closes_on_an_answer():
    now = [0.0]
    breakers = Breakers(failures=2, cooldown=10, clock=lambda: now[0])
    key = ("t", "replenit")
    assert not breakers.failed(key, probe=False)
    assert breakers.failed(key, probe=False)
    assert breakers.blocked(key) and not breakers.begin(key)
    now[0] = 10
    assert breakers.state(key) == "half_open"
    assert breakers.begin(key)  # the probe
    assert breakers.blocked(key) and not breakers.begin(key)  # one at a time
    assert breakers.failed(key, probe=True)  # failed: open for another cool-down
    now[0] = 15
    assert breakers.blocked(key)
    now[0] = 20
    assert breakers.begin(key)
    breakers.succeeded(key)
    assert breakers.state(key) == "closed" and not breakers.blocked(key)
    now[0] = 30
    assert breakers.begin(key) is False  # closed: no probing
