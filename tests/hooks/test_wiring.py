"""Every event-writing path plans its REST-hook deliveries in its own transaction: ingest (the
actions and webhooks) through ``plan_deliveries``, and the tenant re-score's bulk writer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway import ingest
from gateway.hooks import store as hook_store
from gateway.scoring import rescore_tenant
from tests.hooks.conftest import hook_rows

LONG_AGO = datetime.now(timezone.utc) - timedelta(days=400)
RECENT = datetime.now(timezone.utc) - timedelta(days=5)


def _order(order_id: str, email: str, placed_at: datetime) -> dict:
    return {"id": order_id, "customer_email": email,
            "placed_at": placed_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "total": "10.00",
            "currency": "USD", "lines": [{"product_id": "p1", "sku": "SKU-1", "quantity": 1,
                                          "unit_price": "10.00"}]}


def _subscribe(engine, runtime, tenant_id: str, event: str) -> str:
    with engine.begin() as conn:
        sub, _secret = hook_store.create_subscription(
            conn, runtime.vault, tenant_id, event=event, target_url="http://127.0.0.1:9/hook")
    return sub.id


def test_an_ingested_order_plans_its_hook_delivery(engine, runtime, make_hook_tenant):
    tenant = make_hook_tenant(allow_private=True)
    hook_id = _subscribe(engine, runtime, tenant.id, "order.placed")
    with engine.begin() as conn:
        result = ingest.ingest(conn, tenant.id, "orders", "canonical",
                               _order("o-hook-1", "hooked@example.com", LONG_AGO))
    placed = [e for e in result.emitted if e.type == "order.placed"]
    rows = hook_rows(engine, tenant.id)
    assert [(r.operation, r.payload["event_id"]) for r in rows] == [(hook_id, placed[0].id)]
    assert rows[0].payload["body"]["id"] == placed[0].id


def test_status_changes_of_the_tenant_rescore_plan_hook_deliveries(engine, runtime,
                                                                    make_hook_tenant):
    tenant = make_hook_tenant(allow_private=True)
    with engine.begin() as conn:  # orders written before anyone listens: no hook rows
        for i in range(3):
            ingest.ingest(conn, tenant.id, "orders", "canonical",
                          _order(f"o-bulk-{i}", f"bulk{i}@example.com", RECENT))
    before = {r.payload["event_id"] for r in hook_rows(engine, tenant.id)}
    hook_id = _subscribe(engine, runtime, tenant.id, "customer.status_changed")
    # A year later by the re-score's clock every one of them has moved on.
    rescore_tenant(engine, tenant.id, now=datetime.now(timezone.utc) + timedelta(days=365))
    planned = [r for r in hook_rows(engine, tenant.id) if r.payload["event_id"] not in before]
    assert len(planned) == 3
    assert {r.operation for r in planned} == {hook_id}
    assert all(r.payload["type"] == "customer.status_changed" for r in planned)
