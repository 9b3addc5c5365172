"""The polling triggers over HTTP: Zapier's polling rules, the Link cursor, items as stored."""

from __future__ import annotations

import random
import re

import pytest

from gateway import triggers
from gateway.api.triggers import decode_cursor, encode_cursor
from gateway.model import Money, Order
from gateway.store import events as event_store
from tests.zapier_helpers import API, days_ago, next_link, order

ID_FORMAT = re.compile(r"^evt_[0-9a-z]{26}$")
NEW_ORDER = f"{API}/triggers/new-order"
STATUS = f"{API}/triggers/customer-status"


def record_orders(client, tenant, count: int, prefix: str) -> list[str]:
    """Record ``count`` orders of new customers through the API (arrays of up to 100)."""
    ids = [f"{prefix}-{i}" for i in range(count)]
    for start in range(0, count, 100):
        body = [order(i, f"{i.lower()}@example.com") for i in ids[start:start + 100]]
        answer = client.post(f"{API}/actions/record-order", json=body, headers=tenant.headers)
        assert answer.status_code == 201, answer.json
    return ids


def placed_events(engine, tenant, count: int, prefix: str) -> list[str]:
    """Write ``count`` ``order.placed`` events straight to the store, in one transaction, as
    the ingest path writes them (with their trigger memberships): the volume tests' source,
    a hundred times faster than recording each order."""
    ids = [f"{prefix}-{i}" for i in range(count)]
    planned = [("order.placed", i, triggers.order_item(
        Order(id=i, placed_at=days_ago(1), total=Money(2000, "USD")),
        customer_id="cus_volume", email=None)) for i in ids]
    with engine.begin() as conn:
        event_store.append_events(conn, tenant.id, planned, occurred_at=days_ago(0),
                                  source="test")
    return ids


class ZapierPoller:
    """Zapier's polling rules: it remembers every id it saw, its first poll only seeds, it
    reads only the first page, and it takes at most 100 new items a poll."""

    def __init__(self, client, url: str, headers: dict[str, str]) -> None:
        self.client, self.url, self.headers = client, url, headers
        self.seen: set[str] = set()
        self.seeded = False

    def poll(self) -> list[dict]:
        answer = self.client.get(self.url, headers=self.headers)
        assert answer.status_code == 200, answer.json
        items = answer.json
        if not self.seeded:
            self.seeded = True
            self.seen.update(item["id"] for item in items)
            return []
        new = [item for item in items if item["id"] not in self.seen][:100]
        self.seen.update(item["id"] for item in new)
        return new


class CursorWalker:
    """A client that keeps the newest id it has seen and, on each poll, walks the Link pages
    down to it; its first poll seeds."""

    def __init__(self, client, url: str, headers: dict[str, str]) -> None:
        self.client, self.url, self.headers = client, url, headers
        self.mark: str | None = None
        self.seeded = False
        self.pages = 0

    def poll(self) -> list[dict]:
        fresh: list[dict] = []
        url: str | None = self.url
        while url is not None:
            answer = self.client.get(url, headers=self.headers)
            assert answer.status_code == 200, answer.json
            self.pages += 1
            for item in answer.json:
                if item["id"] == self.mark:
                    url = None
                    break
                fresh.append(item)
            else:
                url = next_link(answer)
            if not self.seeded:
                break  # seeding: only where the stream is now
        if fresh:
            self.mark = fresh[0]["id"]
        if not self.seeded:
            self.seeded = True
            return []
        return fresh


def test_zapier_poller_sees_every_order_once_with_up_to_100_between_polls(client, engine,
                                                                         shop):
    record_orders(client, shop, 5, "SEED")
    poller = ZapierPoller(client, NEW_ORDER, shop.headers)
    assert poller.poll() == []  # the first poll seeds
    rounds = random.Random(20240601)
    fired: list[str] = []
    expected: list[str] = []
    for n, count in enumerate([0, 1, 100, 37, 100, 99, 2] + [rounds.randint(0, 100)
                                                             for _ in range(3)]):
        if count <= 2:  # a few through the API, the volume straight to the store
            expected += record_orders(client, shop, count, f"R{n}")
        else:
            expected += placed_events(engine, shop, count, f"R{n}")
        new = poller.poll()
        assert len(new) == count
        fired += [item["order_id"] for item in new]
    assert sorted(fired) == sorted(expected)
    assert len(set(fired)) == len(fired)


def test_cursor_walker_sees_500_orders_arriving_between_two_polls_once(client, engine, shop):
    record_orders(client, shop, 3, "SEED")
    walker = CursorWalker(client, NEW_ORDER + "?limit=100", shop.headers)
    assert walker.poll() == []
    placed = placed_events(engine, shop, 400, "BULK") + record_orders(client, shop, 100, "API")
    new = walker.poll()
    assert [item["order_id"] for item in new] == list(reversed(placed))  # newest first
    assert walker.pages >= 6  # 500 newer than the mark: five full pages and the mark's
    more = record_orders(client, shop, 7, "AFTER")
    assert [item["order_id"] for item in walker.poll()] == list(reversed(more))
    assert walker.poll() == []


def test_walking_every_page_lists_each_item_once_and_ends(client, engine, shop):
    placed = placed_events(engine, shop, 250, "ALL")
    url, seen, pages = f"{NEW_ORDER}?limit=100", [], 0
    while url:
        answer = client.get(url, headers=shop.headers)
        assert answer.status_code == 200
        assert len(answer.json) <= 100
        seen += [item["order_id"] for item in answer.json]
        url, pages = next_link(answer), pages + 1
    assert pages == 3
    assert seen == list(reversed(placed))


def _update(client, tenant, email: str, last_purchase_days: int) -> dict:
    answer = client.post(f"{API}/actions/update-customer", headers=tenant.headers, json={
        "name": "Jane Smith", "email": email, "purchase_count": 1, "total_spent": 50,
        "last_purchase_date": days_ago(last_purchase_days).date().isoformat()})
    assert answer.status_code in (200, 201), answer.json
    return answer.json["customer"]


def test_at_risk_then_lapsed_are_two_items_with_their_own_ids(client, shop):
    assert _update(client, shop, "jane@example.com", 120)["status"] == "at_risk"
    assert _update(client, shop, "jane@example.com", 200)["status"] == "lapsed"
    items = client.get(STATUS, headers=shop.headers).json
    assert [(i["email"], i["status"], i["previous_status"]) for i in items] == [
        ("jane@example.com", "lapsed", "at_risk"), ("jane@example.com", "at_risk", None)]
    assert items[0]["id"] != items[1]["id"]
    assert items[0]["customer_id"] == items[1]["customer_id"]
    assert all(ID_FORMAT.match(i["id"]) for i in items)
    for field in ("name", "email", "phone", "status", "engagement_score", "last_purchase_date",
                  "total_spent", "purchase_count", "returned_at", "updated_at", "customer_id",
                  "previous_status", "changed_at"):
        assert field in items[0]
    lapsed = client.get(f"{STATUS}?status=lapsed", headers=shop.headers).json
    assert [i["id"] for i in lapsed] == [items[0]["id"]]
    # A later poll gives the same ids: they are stable.
    assert [i["id"] for i in client.get(STATUS, headers=shop.headers).json] == \
        [i["id"] for i in items]


def test_items_are_flat_and_served_as_stored(client, engine, shop):
    record_orders(client, shop, 3, "FLAT")
    client.post(f"{API}/actions/unsubscribe", json={"email": "flat-0@example.com"},
                headers=shop.headers)
    with engine.connect() as conn:
        stored = {event.id: event.item for _, event in event_store.list_events(conn, shop.id)}
    for trigger in ("new-order", "new-customer", "consent-changed"):
        items = client.get(f"{API}/triggers/{trigger}", headers=shop.headers).json
        assert items, trigger
        for item in items:
            assert item == stored[item["id"]]
            assert all(not isinstance(v, (dict, list)) for v in item.values()), item
    consent = client.get(f"{API}/triggers/consent-changed", headers=shop.headers).json
    assert [(i["email"], i["channel"], i["consent"]) for i in consent] == [
        ("flat-0@example.com", "email", False)]


def test_events_trigger_narrows_by_type_and_adds_the_envelope(client, shop):
    record_orders(client, shop, 2, "EV")
    every = client.get(f"{API}/triggers/events", headers=shop.headers).json
    assert {i["type"] for i in every} >= {"order.placed", "customer.created"}
    orders_only = client.get(f"{API}/triggers/events?type=order.placed",
                             headers=shop.headers).json
    assert [i["order_id"] for i in orders_only] == ["EV-1", "EV-0"]
    assert all(i["type"] == "order.placed" and i["occurred_at"] and "source" in i
               for i in orders_only)
    both = client.get(f"{API}/triggers/events?type=order.placed&type=customer.created",
                      headers=shop.headers).json
    assert len(both) == 4


def test_the_link_keeps_the_other_parameters(client, shop):
    _update(client, shop, "a@example.com", 120)
    _update(client, shop, "b@example.com", 130)
    answer = client.get(f"{STATUS}?status=at_risk&limit=1", headers=shop.headers)
    link = next_link(answer)
    assert link.startswith("http://localhost/api/v1/triggers/customer-status?")
    assert "status=at_risk" in link and "limit=1" in link and "cursor=" in link
    second = client.get(link, headers=shop.headers)
    assert second.status_code == 200
    assert [i["email"] for i in answer.json + second.json] == ["b@example.com",
                                                              "a@example.com"]
    assert next_link(second) is None


@pytest.mark.parametrize("query", [
    "limit=101", "limit=1000", "limit=0", "limit=-1", "limit=ten", "limit=",
    "cursor=garbage", "cursor=AQAAAAAAAAAB=", "cursor=AQAAAAAAAAA", "cursor=AgAAAAAAAAAB",
    "cursor=", "nonsense=1", "status=active",
])
def test_bad_parameters_are_400s_naming_the_parameter(client, shop, query):
    answer = client.get(f"{STATUS}?{query}", headers=shop.headers)
    assert answer.status_code == 400, answer.json
    name = query.split("=")[0]
    assert name in answer.json["errors"], answer.json


@pytest.mark.parametrize("trigger", ["customer-returned", "new-customer", "new-order",
                                     "consent-changed", "events"])
def test_every_trigger_refuses_a_limit_over_100_and_a_garbled_cursor(client, shop, trigger):
    url = f"{API}/triggers/{trigger}"
    assert client.get(f"{url}?limit=101", headers=shop.headers).status_code == 400
    assert client.get(f"{url}?cursor=not-a-cursor", headers=shop.headers).status_code == 400
    assert client.get(url, headers=shop.headers).json == []
    assert client.get(f"{API}/triggers/events?type=order.shipped",
                      headers=shop.headers).status_code == 400


def test_the_cursor_round_trips_and_refuses_what_it_did_not_make():
    for position in (0, 1, 12345, 2**60 - 1):
        assert decode_cursor(encode_cursor(position)) == position
    with pytest.raises(ValueError):
        encode_cursor(2**60)
    for bad in ("", "AQ", "AQAAAAAAAAAB" + "A", "AQAAAAAAAA+B", "ZZAAAAAAAAAB"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_triggers_need_a_key(client):
    answer = client.get(NEW_ORDER)
    assert answer.status_code == 401 and answer.json["error"]
