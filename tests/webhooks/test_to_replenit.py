"""Orders posted as webhooks in Replenit, Rejoiner and canonical formats all reach the Replenit
sandbox (real HTTP on 127.0.0.1), through the inbox, ingest, the routes and the worker's
``run_once``: exactly once per order key, even when each is posted twice."""

from __future__ import annotations

import json
import time

import requests
from sqlalchemy import select

from gateway import create_app
from gateway.store import tenants
from gateway.store.db import write_transaction
from gateway.store.tables import deliveries
from gateway.webhooks import drain, signatures
from gateway.webhooks.secrets import ensure_secret
from tests.connectors.conftest import kit_root, sandbox_stats
from tests.relay.conftest import all_settled
from tests.relay.conftest import drain as drain_deliveries

REPLENIT = [{"OrderId": "RP-1", "CustomerId": "C-rp", "Email": "rp@example.com",
             "OrderDate": "2026-11-20T10:00:00Z", "TotalRevenue": 10.0, "Currency": "USD",
             "OrderItems": [{"ProductId": "P-1", "Sku": "S-1", "Quantity": 1, "Price": 10.0}]}]
REJOINER = {"email": "rj@example.com", "cart_data": {"cart_value": 2000, "cart_item_count": 1,
                                                     "order_number": "RJ-1"},
            "cart_items": [{"product_id": "P-1", "price": 2000, "item_qty": 1,
                            "qty_price": 2000}]}
CANONICAL = {"id": "CN-1", "placed_at": "2026-11-20T10:00:00Z", "total": "20.00",
             "currency": "USD", "customer_email": "cn@example.com",
             "lines": [{"product_id": "P-1", "sku": "S-1", "quantity": 1,
                        "unit_price": "20.00"}]}


def test_orders_in_three_formats_reach_replenit_once_per_order_key(
        relay_db, new_tenant, start_service, make_worker):
    tenant = new_tenant("Webhook relay shop")
    with write_transaction(relay_db.engine) as conn:
        tenants.update_settings(conn, tenant, {"consent_basis": "lawful_basis"})
        secret = ensure_secret(conn, relay_db.runtime.vault, tenant).current
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    client = create_app(runtime=relay_db.runtime).test_client()

    for attempt in range(2):  # each order twice, under a new webhook-id: ingest dedupes by key
        for fmt, payload in (("replenit", REPLENIT), ("rejoiner", REJOINER),
                             ("canonical", CANONICAL)):
            body = json.dumps(payload).encode()
            stamp, webhook_id = int(time.time()), f"msg_{fmt}_{attempt}"
            answer = client.post(
                f"/api/v1/webhooks/{tenant}/orders?format={fmt}", data=body,
                headers={"content-type": "application/json", "webhook-id": webhook_id,
                         "webhook-timestamp": str(stamp),
                         "webhook-signature": signatures.sign(secret, webhook_id, stamp, body)})
            assert answer.status_code == 202, answer.get_json()
        assert drain.drain_inbox(relay_db.runtime).done == 3
        drain_deliveries(make_worker(), until=all_settled(relay_db.engine, tenant))

    stats = sandbox_stats(replenit.url)
    assert stats["records"]["orders"] == 3
    for key in ("RP-1", "RJ-1", "CN-1"):
        found = requests.get(f"{kit_root(replenit.url)}/_sandbox/records/orders/{key}",
                             timeout=10)
        assert found.status_code == 200, key
    with relay_db.engine.connect() as conn:
        sent = conn.execute(select(deliveries.c.record_key, deliveries.c.status).where(
            deliveries.c.tenant_id == tenant, deliveries.c.connector == "replenit",
            deliveries.c.operation == "orders.upsert")).all()
    assert sorted(sent) == [("CN-1", "done"), ("RJ-1", "done"), ("RP-1", "done")]
