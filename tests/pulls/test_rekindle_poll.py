"""``rekindle-poll`` end to end: the Rekindle sandbox over HTTP moves customers' statuses on its
own clock (its daily re-score), the poll reads its two triggers, and what it emits (or only
compares) is held against the events table, the trigger the gateway serves and the routes.

The sandbox's rules: a one-purchase customer is expected back within 86 days; ``at_risk``
from 1.5 x 86 days after the purchase (129), ``lapsed`` from 3 x 86 (258). Moving its clock on
makes its next request re-score everyone, as Rekindle's daily pass does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from sqlalchemy import select

from connectors.rekindle.sandbox import BASE_PATH
from gateway.pulls import echo
from gateway.pulls.rekindle_poll import COUNTS, ROUTE, poll_rekindle
from gateway.pulls.sync import run_sync
from gateway.schedule import REGISTRY
from gateway.store.tables import customers
from tests.connectors.conftest import kit_root, sandbox_stats
from tests.relay.conftest import (  # noqa: F401 - fixtures, used by name
    make_worker,
    new_key,
    new_tenant,
    relay_db,
    start_service,
    stopping,
)
from tests.relay.test_routes_kit import (  # noqa: F401 - fixtures, used by name
    answer_handlers,
    connect,
    customer_body,
    deliver,
    gateway_app,
    held,
    make_shop,
    order_body,
)

DAY = 86_400


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def rekindle(start_service):  # noqa: F811
    return start_service("rekindle", rate_limits=False)


def advance(service, days: float) -> None:
    """Move the sandbox's clock on: its next request re-scores everyone."""
    moved = requests.post(f"{kit_root(service.url)}/_sandbox/clock",
                          json={"advance": days * DAY}, timeout=10)
    assert moved.status_code == 200, moved.text


def sandbox_today(service) -> date:
    now = requests.get(f"{kit_root(service.url)}/_sandbox/clock", timeout=10).json()["now"]
    return datetime.fromtimestamp(now, tz=timezone.utc).date()


def write_directly(service, email: str, *, days_ago: int, name: str = "Pat Direct") -> dict:
    """An update-customer that does not come from the gateway (the shop's POS writing to
    Rekindle itself): one purchase ``days_ago`` on the sandbox's clock."""
    body = {"name": name, "email": email, "purchase_count": 1, "total_spent": 30.0,
            "last_purchase_date": (sandbox_today(service)
                                   - timedelta(days=days_ago)).isoformat()}
    answer = requests.post(f"{service.url}{BASE_PATH}/actions/update-customer", json=body,
                           headers={"Authorization": f"Bearer {service.api_key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["customer"]


def poll(relay_db, shop, **kwargs: Any) -> dict[str, Any]:  # noqa: F811
    return poll_rekindle(relay_db.runtime, shop.id, datetime.now(timezone.utc), **kwargs)


def emitted(counts: dict[str, Any]) -> tuple[int, int]:
    return counts["changed"], counts["events"]


def status_events(shop) -> list[tuple[str, str | None, str | None]]:
    return [(e.source, e.item["status"], e.item["previous_status"])
            for e in shop.events("customer.status_changed")]


def customer_row(shop, email: str):
    with shop.engine.connect() as conn:
        return conn.execute(select(customers).where(customers.c.tenant_id == shop.id,
                                                    customers.c.email == email)).one()


def days_before_today(days: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).date().isoformat()


# ------------------------------------------------------------------------------ tests


def test_the_job_is_registered_for_the_schedules():
    assert REGISTRY.get(ROUTE).run is poll_rekindle


def test_rekindles_own_moves_become_two_events_once_and_reach_the_routes(
        relay_db, make_shop, rekindle, start_service, make_worker):  # noqa: F811
    shop = make_shop(scoring_authority="rekindle")
    rejoiner = start_service("rejoiner", rate_limits=False)
    connect(relay_db, shop, rekindle, rejoiner)
    worker = make_worker()
    # Sent through the gateway: 100 days after one purchase, Rekindle answers active.
    shop.act("update-customer", customer_body(
        "ann@example.com", "Ann Lee", gdpr=None, purchase_count=1, total_spent=30.0,
        last_purchase_date=days_before_today(100)))
    deliver(worker, shop)
    assert customer_row(shop, "ann@example.com").status == "active"

    first = poll(relay_db, shop)  # seeds
    assert emitted(first) == (0, 0)

    advance(rekindle, 40)  # 140 days: at_risk
    moved = poll(relay_db, shop)
    assert (moved["read"], *emitted(moved)) == (1, 1, 1)
    advance(rekindle, 120)  # 260 days: lapsed
    lapsed = poll(relay_db, shop)
    assert emitted(lapsed) == (1, 1)
    assert lapsed["queued"].get("rejoiner", 0) >= 1  # the win-back tag, planned at once
    assert status_events(shop) == [("rekindle", "at_risk", "active"),
                                   ("rekindle", "lapsed", "at_risk")]
    ids = [e.id for e in shop.events("customer.status_changed")]
    assert len(set(ids)) == 2

    again = poll(relay_db, shop)
    assert (again["read"], *emitted(again), again["skipped"]) == (1, 0, 0, 0)
    assert len(shop.events("customer.status_changed")) == 2

    # The events are the gateway's triggers' items, and the win-back route took the lapse.
    served = shop.client.get("/api/v1/triggers/customer-status", headers=shop.headers)
    assert served.status_code == 200
    assert sorted(i["id"] for i in served.json) == sorted(ids)
    assert customer_row(shop, "ann@example.com").status == "lapsed"
    deliver(worker, shop)
    assert "gw:winback" in held(rejoiner, "customers", "ann@example.com")["tags"]


def test_what_the_gateway_sent_and_reads_back_starts_nothing(
        relay_db, make_shop, rekindle, make_worker):  # noqa: F811
    shop = make_shop(scoring_authority="rekindle")
    connect(relay_db, shop, rekindle)
    worker = make_worker()
    assert emitted(poll(relay_db, shop)) == (0, 0)  # the seeding poll: nothing listed yet

    # 300 days after one purchase: Rekindle answers lapsed, and the answer is the event.
    shop.act("update-customer", customer_body(
        "rita@example.com", "Rita Rae", gdpr=None, purchase_count=1, total_spent=30.0,
        last_purchase_date=days_before_today(300)))
    deliver(worker, shop)
    assert status_events(shop) == [("rekindle", "lapsed", None)]

    echoed = poll(relay_db, shop)  # lists Rita, lapsed: the gateway's own echo
    assert echoed["read"] == 1
    assert (*emitted(echoed), echoed["skipped"]) == (0, 0, 0)  # not even a new key

    # Rekindle's win-back message, then an order through the gateway: the answer says
    # returned, and the customer-returned trigger lists that very return.
    sent = requests.post(f"{kit_root(rekindle.url)}/_sandbox/winback",
                         json={"email": "rita@example.com"}, timeout=10)
    assert sent.status_code == 200, sent.text
    shop.act("record-order", order_body("R-1", "rita@example.com",
                                        placed_at=datetime.now(timezone.utc)))
    deliver(worker, shop)
    assert len(shop.events("customer.returned")) == 1
    returned = poll(relay_db, shop)
    assert returned["read"] == 1  # in customer-returned; no longer in customer-status
    assert (*emitted(returned), returned["skipped"]) == (0, 0, 0)
    assert len(shop.events("customer.returned")) == 1
    assert len(shop.events("customer.status_changed")) == 2  # lapsed, then active: answers'

    # Back to active retired her status keys: a new lapse is news again.
    advance(rekindle, 300)
    lapsed_again = poll(relay_db, shop)
    assert emitted(lapsed_again) == (1, 1)
    assert status_events(shop)[-1] == ("rekindle", "lapsed", "active")


def test_the_first_poll_seeds_and_a_dry_run_changes_nothing(
        relay_db, make_shop, rekindle):  # noqa: F811
    shop = make_shop(scoring_authority="rekindle")
    # Known to the gateway before it had a Rekindle connection (nothing was sent), and
    # written to Rekindle by something else; a third customer the gateway never saw.
    for email in ("ada@example.com", "bo@example.com"):
        shop.act("update-customer", customer_body(email, "Known Person", gdpr=None))
    connect(relay_db, shop, rekindle)
    write_directly(rekindle, "ada@example.com", days_ago=150)  # at_risk
    write_directly(rekindle, "bo@example.com", days_ago=300)  # lapsed
    write_directly(rekindle, "stranger@example.com", days_ago=300)  # unknown here

    dry = poll(relay_db, shop, dry_run=True)
    with shop.engine.connect() as conn:
        assert not echo.is_seeded(conn, shop.id, echo.STATUS_SCOPE)  # nothing recorded
    seeded = poll(relay_db, shop)
    assert dry == seeded
    assert {k: seeded[k] for k in ("read", "seeded", "unknown", "changed", "events")} == {
        "read": 3, "seeded": 2, "unknown": 1, "changed": 0, "events": 0}
    assert shop.events("customer.status_changed") == []
    assert customer_row(shop, "bo@example.com").status is None  # a seeding poll emits nothing

    repeated = poll(relay_db, shop)
    assert (repeated["seeded"], repeated["unknown"], *emitted(repeated)) == (0, 1, 0, 0)

    advance(rekindle, 120)  # Ada: 270 days, lapsed; Bo and the stranger stay lapsed/lost
    progress: list[dict] = []
    dry = poll(relay_db, shop, dry_run=True, progress=progress.append)
    assert emitted(dry) == (1, 1) and shop.events("customer.status_changed") == []
    assert progress[-1] == dry and progress[0]["read"] == 3
    moved = poll(relay_db, shop)
    assert {k: moved[k] for k in COUNTS} == {k: dry[k] for k in COUNTS}
    ada = customer_row(shop, "ada@example.com")
    assert [(e.subject_id, e.item["status"]) for e in shop.events("customer.status_changed")
            ] == [(ada.id, "lapsed")]


def test_sync_runs_the_poll_with_a_dry_run_and_a_return_only_the_trigger_told(
        relay_db, make_shop, rekindle, start_service):  # noqa: F811
    shop = make_shop(scoring_authority="rekindle")
    shop.act("update-customer", customer_body("ria@example.com", "Ria Sol", gdpr=None))
    rejoiner = start_service("rejoiner", rate_limits=False)
    connect(relay_db, shop, rekindle, rejoiner)
    write_directly(rekindle, "ria@example.com", days_ago=300)  # lapsed, not via the gateway
    assert run_sync(relay_db.runtime, shop.id, ROUTE).counts["changed"] == 0  # seeds
    # Rekindle's win-back message, then a purchase the shop tells Rekindle itself about.
    sent = requests.post(f"{kit_root(rekindle.url)}/_sandbox/winback",
                         json={"email": "ria@example.com"}, timeout=10)
    assert sent.status_code == 200, sent.text
    came_back = write_directly(rekindle, "ria@example.com", days_ago=0)
    assert came_back["returned"] is True

    dry = run_sync(relay_db.runtime, shop.id, ROUTE, dry_run=True)
    assert shop.events("customer.returned") == []
    real = run_sync(relay_db.runtime, shop.id, ROUTE)
    assert (dry.counts["read"], dry.counts["changed"]) == (real.counts["read"], 1)
    assert {c: per["queued"] for c, per in dry.per_destination.items()} == {
        c: per["queued"] for c, per in real.per_destination.items()}
    assert real.settled and real.dead == 0
    [event] = shop.events("customer.returned")
    listed = held(rekindle, "customers", "ria@example.com")["returned_at"]
    assert event.source == "rekindle" and event.item["returned_at"] == listed
    assert customer_row(shop, "ria@example.com").returned_at == datetime.fromisoformat(
        listed.replace("Z", "+00:00"))
    assert run_sync(relay_db.runtime, shop.id, ROUTE).counts["changed"] == 0


def test_under_the_gateways_scoring_it_only_compares(
        relay_db, make_shop, rekindle, make_worker):  # noqa: F811
    shop = make_shop()  # scoring_authority: gateway
    connect(relay_db, shop, rekindle)
    worker = make_worker()
    assert emitted(poll(relay_db, shop)) == (0, 0)
    # The gateway scores an order 200 days old lapsed (its 60-day gap) and pushes the
    # customer; Rekindle's own rules answer at_risk.
    shop.act("update-customer", customer_body("gil@example.com", "Gil Moss", gdpr=None))
    shop.act("record-order", order_body("G-1", "gil@example.com",
                                        placed_at=datetime.now(timezone.utc)
                                        - timedelta(days=200)))
    deliver(worker, shop)
    gil = customer_row(shop, "gil@example.com")
    assert (gil.status, gil.rekindle_status) == ("lapsed", "at_risk")
    assert status_events(shop) == [("gateway", "lapsed", None)]

    echoed = poll(relay_db, shop)
    assert (echoed["read"], echoed["compared"], *emitted(echoed)) == (1, 0, 0, 0)

    advance(rekindle, 100)  # 300 days: Rekindle says lapsed too
    compared = poll(relay_db, shop)
    assert (compared["compared"], compared["disagreed"], *emitted(compared)) == (1, 0, 0, 0)
    gil = customer_row(shop, "gil@example.com")
    assert (gil.status, gil.rekindle_status) == ("lapsed", "lapsed")
    assert status_events(shop) == [("gateway", "lapsed", None)]  # only the gateway's own


def test_the_route_needs_its_switch_and_a_connection(relay_db, make_shop, rekindle):  # noqa: F811
    shop = make_shop(scoring_authority="rekindle")
    unconnected = poll(relay_db, shop)
    assert unconnected["read"] == 0 and "no Rekindle connection" in unconnected["note"]

    connect(relay_db, shop, rekindle)
    shop.settings(routes={ROUTE: False})
    before = sandbox_stats(rekindle.url)["requests"]
    off = poll(relay_db, shop)
    assert off["read"] == 0 and "off" in off["note"]
    assert sandbox_stats(rekindle.url)["requests"] == before  # not one request
    shop.settings(routes={ROUTE: True})
    assert "note" not in poll(relay_db, shop)
