"""Erasure at the services: Replenit's sandbox no longer holds the customer, Rejoiner has them
unsubscribed, the writes still queued for them were cancelled (and the settled rows about them
hold no personal data), and the "manual erasure needed" item for Rekindle is listed - over the
API and the command line - until an operator marks it done, which wipes it."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import select

from gateway.store import records
from gateway.store.tables import deliveries
from tests.conftest import ROOT
from tests.relay import test_routes_kit as kit
from tests.relay.test_routes_kit import (
    API,
    connect,
    counted,
    customer_body,
    deliver,
    held,
    order_body,
)

# The kit's fixtures, used here by name.
answer_handlers, destinations, gateway_app, make_shop, shop = (
    kit.answer_handlers, kit.destinations, kit.gateway_app, kit.make_shop, kit.shop)


def customer_id(shop, email: str) -> str:
    with shop.engine.connect() as conn:
        return records.customer_id_for(conn, shop.id, email=email)


def known_customer(shop, worker, email: str, name: str, **extra) -> str:
    """A customer the three services hold (delivered), with one order; their gateway id."""
    shop.act("update-customer", customer_body(email, name, phone="+27825550000", **extra))
    shop.act("record-order", order_body(f"{name}-1", email))
    deliver(worker, shop)
    return customer_id(shop, email)


def queue_changes(shop, email: str, name: str) -> list[int]:
    """Change the customer without delivering it: upserts queued for all three services."""
    shop.act("update-customer", customer_body(email, name, phone="+27825551111"))
    pending = [r for r in shop.rows(status="pending")]
    assert {(r.connector, r.operation) for r in pending} >= {
        ("replenit", "customers.upsert"), ("rekindle", "customers.upsert"),
        ("rejoiner", "customers.upsert")}
    return [r.id for r in pending]


def erasures_cli(relay_db, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.relay.routes_cli", "erasures", *args],
                          cwd=ROOT, env=relay_db.env(), capture_output=True, text=True,
                          timeout=120)


def holds_email(row, email: str) -> bool:
    return email in json.dumps([row.payload, row.record_key, row.idempotency_key,
                                row.last_error])


def test_the_delete_customer_action_erases_at_the_services_it_can(
        relay_db, shop, destinations, make_worker):
    connect(relay_db, shop, destinations.replenit, destinations.rekindle, destinations.rejoiner)
    worker = make_worker()
    erin = known_customer(shop, worker, "erin@example.com", "Erin")
    assert held(destinations.replenit, "customers", erin) is not None
    assert held(destinations.replenit, "orders", "Erin-1") is not None
    queued = queue_changes(shop, "erin@example.com", "Erin")

    answer = shop.post("/actions/delete-customer", {"email": "erin@example.com"})
    assert answer.status_code == 200, answer.json

    with shop.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(deliveries).where(
            deliveries.c.tenant_id == shop.id))}
    assert {rows[i].status for i in queued} == {"cancelled"}
    assert not any(holds_email(rows[i], "erin@example.com") for i in queued)
    assert not any(holds_email(r, "erin@example.com") for r in rows.values()
                   if r.status == "done")  # what was delivered before is scrubbed too
    listed = shop.client.get(f"{API}/erasures", headers=shop.headers)
    assert listed.status_code == 200
    assert [(i["connector"], i["customer_id"], i["status"]) for i in listed.json] == \
        [("rekindle", erin, "open")]
    deliver(worker, shop)
    assert held(destinations.replenit, "customers", erin) is None
    assert held(destinations.replenit, "orders", "Erin-1") is None
    assert counted(destinations.replenit)["customers"] == 0
    # Rekindle has no delete: it still holds her, which is why the item is listed.
    assert held(destinations.rekindle, "customers", "erin@example.com") is not None


def test_the_delete_customer_action_unsubscribes_them_at_rejoiner(
        relay_db, shop, destinations, make_worker):
    connect(relay_db, shop, destinations.rejoiner)
    worker = make_worker()
    known_customer(shop, worker, "una@example.com", "Una")
    assert held(destinations.rejoiner, "customers", "una@example.com")["is_unsubscribed"] is False
    assert shop.post("/actions/delete-customer", {"email": "una@example.com"}).status_code == 200
    deliver(worker, shop)
    assert held(destinations.rejoiner, "customers", "una@example.com")["is_unsubscribed"] is True


def test_an_erasure_by_id_reaches_all_three_by_their_own_ids_and_the_item_is_worked_off(
        relay_db, shop, destinations, make_worker):
    connect(relay_db, shop, destinations.replenit, destinations.rekindle, destinations.rejoiner)
    worker = make_worker()
    # Ivy is known to Replenit by the shop's own id, and to Rekindle by its id.
    ivy = known_customer(shop, worker, "ivy@example.com", "Ivy",
                         external_ids={"replenit": "SHOP-77", "rekindle": "rk-ivy"})
    assert held(destinations.replenit, "customers", "SHOP-77") is not None
    queued = queue_changes(shop, "ivy@example.com", "Ivy")

    answer = shop.post("/actions/delete-customer", {"customer_id": ivy})
    assert answer.status_code == 200, answer.json

    assert {r.status for r in shop.rows() if r.id in queued} == {"cancelled"}
    erasing = shop.rows(status="pending")
    assert {(r.connector, r.operation, r.priority) for r in erasing} == {
        ("replenit", "customers.delete", 0), ("rejoiner", "consent.unsubscribe", 0)}
    assert all("ivy@example.com" not in (r.record_key + r.idempotency_key) for r in erasing)
    deliver(worker, shop)
    assert held(destinations.replenit, "customers", "SHOP-77") is None
    assert counted(destinations.replenit)["customers"] == 0
    assert held(destinations.rejoiner, "customers", "ivy@example.com")["is_unsubscribed"] is True
    assert {r.status for r in shop.rows() if r.id in queued} == {"cancelled"}
    assert {r.status for r in shop.rows() if r.id not in queued} == {"done", "manual"}

    listed = erasures_cli(relay_db, "list", shop.id)
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)
    assert (item["customer_id"], item["emails"], item["rekindle_id"], item["status"]) == (
        ivy, ["ivy@example.com"], "rk-ivy", "open")
    marked = shop.post(f"/erasures/{item['id']}/done", None)
    assert marked.status_code == 200, marked.json
    assert (marked.json["status"], marked.json["emails"], marked.json["rekindle_id"]) == (
        "done", [], None)
    assert json.loads(erasures_cli(relay_db, "list", shop.id).stdout) == []
    [again] = json.loads(erasures_cli(relay_db, "list", shop.id, "--all").stdout)
    assert again["status"] == "done"
    [row] = shop.rows(id=item["id"])
    assert not holds_email(row, "ivy@example.com")


def test_manual_erasure_items_belong_to_their_tenant(relay_db, make_shop, destinations,
                                                     make_worker):
    mine, theirs = make_shop("Mine"), make_shop("Theirs")
    for shop in (mine, theirs):
        connect(relay_db, shop, destinations.rekindle)
    worker = make_worker()
    known_customer(mine, worker, "zed@example.com", "Zed")
    assert mine.post("/actions/delete-customer", {"email": "zed@example.com"}).status_code == 200
    [item] = mine.client.get(f"{API}/erasures", headers=mine.headers).json
    assert theirs.client.get(f"{API}/erasures", headers=theirs.headers).json == []
    assert theirs.post(f"/erasures/{item['id']}/done", None).status_code == 404
    assert mine.post("/erasures/999999/done", None).status_code == 404
    missing = erasures_cli(relay_db, "done", theirs.id, str(item["id"]))
    assert missing.returncode == 2 and "no manual erasure item" in json.loads(
        missing.stderr)["error"]
    bad = mine.client.get(f"{API}/erasures?all=maybe", headers=mine.headers)
    assert bad.status_code == 400
