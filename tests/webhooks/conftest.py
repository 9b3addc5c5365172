"""What the webhook tests share: a tenant with a signing secret, signed headers, orders."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.store import keys, tenants
from gateway.store.db import write_transaction
from gateway.store.tables import webhook_inbox
from gateway.webhooks import signatures
from gateway.webhooks.secrets import ensure_secret, secret_cache
from tests.relay.conftest import (  # noqa: F401 - the delivery engine's fixtures, reused
    make_worker,
    new_tenant,
    relay_db,
    start_service,
    stopping,
)

API = "/api/v1"


@dataclass
class SignedTenant:
    id: str
    secret: str
    key: str  # an admin key

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def headers(self, body: bytes, webhook_id: str, *, timestamp: int | None = None,
                secret: str | None = None) -> dict[str, str]:
        stamp = int(time.time()) if timestamp is None else timestamp
        return {"content-type": "application/json", "webhook-id": webhook_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signatures.sign(secret or self.secret, webhook_id, stamp,
                                                     body)}


@pytest.fixture()
def signed_tenant(engine, runtime) -> SignedTenant:
    with write_transaction(engine) as conn:
        tenant = tenants.create_tenant(conn, "Webhook shop")
        tenants.update_settings(conn, tenant.id, {"api_rate_limit_per_minute": 100_000})
        key = keys.create_key(conn, tenant.id, "admin").api_key
        secret = ensure_secret(conn, runtime.vault, tenant.id).current
    runtime.forget_settings(tenant.id)
    secret_cache(runtime).forget(tenant.id)
    return SignedTenant(tenant.id, secret, key)


def order(order_id: str, email: str = "ann@example.com") -> dict[str, Any]:
    return {"id": order_id, "placed_at": "2026-11-20T10:00:00Z", "total": "20.00",
            "currency": "USD", "customer_email": email,
            "lines": [{"product_id": "P-1", "sku": "SKU-1", "quantity": 1,
                       "unit_price": "20.00"}]}


def body_of(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def inbox_count(engine, tenant_id: str) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(webhook_inbox).where(
            webhook_inbox.c.tenant_id == tenant_id)).scalar()
