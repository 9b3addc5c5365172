"""What the tests of the Zapier-facing API share: tenants with a ``zapier`` key (and a rate limit
the tests cannot reach), canonical records to post, and reading a ``Link`` header."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.store import keys, tenants
from gateway.store.tables import customers, events, orders

API = "/api/v1"
HIGH_RATE_LIMIT = 100_000
_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


@dataclass
class ZapierTenant:
    id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture()
def make_zapier(engine, runtime):
    """A factory of tenants, each with a ``zapier`` key."""

    def make(name: str = "Zapier shop") -> ZapierTenant:
        with engine.begin() as conn:
            tenant = tenants.create_tenant(conn, name)
            tenants.update_settings(conn, tenant.id,
                                    {"api_rate_limit_per_minute": HIGH_RATE_LIMIT})
            key = keys.create_key(conn, tenant.id, "zapier").api_key
        runtime.forget_settings(tenant.id)
        return ZapierTenant(tenant.id, key)

    return make


@pytest.fixture()
def shop(make_zapier) -> ZapierTenant:
    return make_zapier()


def days_ago(days: float, *, now: datetime | None = None) -> datetime:
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def order(order_id: str, email: str, *, placed_at: datetime | None = None,
          total: str = "20.00", **extra: Any) -> dict[str, Any]:
    """A canonical order of one line."""
    return {"id": order_id, "placed_at": iso(placed_at or days_ago(1)), "total": total,
            "currency": "USD", "customer_email": email,
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}], **extra}


def next_link(response) -> str | None:
    """The URL of a ``Link: <URL>; rel="next"`` header, or None."""
    header = response.headers.get("Link")
    if header is None:
        return None
    match = _LINK.match(header)
    assert match, f"not a Link header of one next page: {header!r}"
    return match.group(1)


def counts(engine, tenant_id: str) -> dict[str, int]:
    """Customers, orders and events a tenant holds."""
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(table).where(
            table.c.tenant_id == tenant_id)).scalar_one()
            for name, table in (("customers", customers), ("orders", orders),
                                ("events", events))}
