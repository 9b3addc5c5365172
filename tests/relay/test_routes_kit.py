"""What the routes' end-to-end tests share: the gateway app on the test's own database, a shop
with an admin key, the three destination sandboxes on 127.0.0.1 with the shop's connections to
them, the sandboxes' own views (stats and stored records over HTTP), and the worker's drain.

Everything is real: actions go through the Flask test client and ``ingest``, deliveries through
the outbox and H's worker over HTTP to the sandboxes, which count what they hold. The few tests
here hold the win-back rule the planners and the answer handler share.

The other ``test_routes_*`` modules import these fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import select

from gateway import create_app
from gateway.relay import routes_answers
from gateway.relay.routes_context import WinbackState
from gateway.store import tenants
from gateway.store.tables import deliveries, events
from tests.connectors.conftest import kit_root, sandbox_stats
from tests.relay.conftest import Service, all_settled, drain

API = "/api/v1"
NOW = datetime.now(timezone.utc)


@pytest.fixture(autouse=True)
def answer_handlers():
    """The routes' answer handlers (another test may have replaced one with its own)."""
    routes_answers.install()
    yield
    routes_answers.install()


@dataclass
class Shop:
    """A tenant with an admin key, and the app's test client."""

    id: str
    key: str
    client: Any
    engine: Any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: Any, **query: str) -> Any:
        url = f"{API}{path}"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return self.client.post(url, json=body, headers=self.headers)

    def act(self, action: str, body: Any, **query: str) -> Any:
        """An action that must succeed (200 or 201); its JSON answer."""
        answer = self.post(f"/actions/{action}", body, **query)
        assert answer.status_code in (200, 201), (action, answer.status_code, answer.json)
        return answer.json

    def settings(self, **changes: Any) -> None:
        with self.engine.begin() as conn:
            tenants.update_settings(conn, self.id, changes)

    def rows(self, **where: Any) -> list[Any]:
        query = select(deliveries).where(deliveries.c.tenant_id == self.id)
        for column, value in where.items():
            query = query.where(deliveries.c[column] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(deliveries.c.id)))

    def events(self, type_: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(events).where(
                events.c.tenant_id == self.id, events.c.type == type_).order_by(events.c.seq)))


@pytest.fixture
def gateway_app(relay_db):
    app = create_app(runtime=relay_db.runtime)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def make_shop(relay_db, new_tenant, new_key, gateway_app) -> Callable[..., Shop]:
    def make(name: str = "Routes shop", **settings: Any) -> Shop:
        tenant = new_tenant(name)
        shop = Shop(tenant, new_key(tenant), gateway_app.test_client(), relay_db.engine)
        shop.settings(api_rate_limit_per_minute=100_000, **settings)
        relay_db.runtime.forget_settings(tenant)
        return shop

    return make


@pytest.fixture
def shop(make_shop) -> Shop:
    return make_shop()


@dataclass
class Destinations:
    replenit: Service
    rekindle: Service
    rejoiner: Service


@pytest.fixture
def destinations(start_service) -> Destinations:
    """The three destination sandboxes, limits off (what is counted is what arrived)."""
    return Destinations(replenit=start_service("replenit", rate_limits=False),
                        rekindle=start_service("rekindle", rate_limits=False),
                        rejoiner=start_service("rejoiner", rate_limits=False))


def connect(relay_db, shop: Shop, *services: Service) -> None:
    for service in services:
        service.connect(relay_db.engine, relay_db.runtime.vault, shop.id)


def deliver(worker, shop: Shop) -> None:
    """Drain passes until none of the shop's deliveries is pending or in flight."""
    drain(worker, until=all_settled(shop.engine, shop.id))


def held(service: Service, kind: str, key: str) -> dict | None:
    """The record the sandbox holds (its own view, over HTTP), or None."""
    answer = requests.get(f"{kit_root(service.url)}/_sandbox/records/{kind}/"
                          f"{quote(key, safe='')}", timeout=10)
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()


def counted(service: Service) -> dict[str, int]:
    """The records the sandbox counts it holds."""
    return sandbox_stats(service.url)["records"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def days_ago(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)


def order_body(order_id: str, email: str, *, placed_at: datetime | None = None,
               total: str = "25.00", sku: str = "SKU-1", product: str = "P-1") -> dict:
    return {"id": order_id, "placed_at": iso(placed_at or days_ago(2)), "total": total,
            "currency": "USD", "customer_email": email,
            "lines": [{"product_id": product, "sku": sku, "quantity": 1, "unit_price": total}]}


def customer_body(email: str, name: str = "Ann Buyer", *, gdpr: bool | None = True,
                  **extra: Any) -> dict:
    """update-customer's body (Rekindle's fields, plus canonical consent)."""
    body: dict[str, Any] = {"name": name, "email": email, **extra}
    if gdpr is not None:
        body["consent"] = {"email": True, "gdpr_processing": gdpr}
    return body


# --------------------------------------------------------------------------- the win-back rule


T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("state, in_winback, recorded", [
    (WinbackState("lapsed", T0, None, None), True, False),
    (WinbackState("lost", T0, None, T0 + timedelta(hours=1)), True, True),
    (WinbackState("lost", T0 + timedelta(days=90), None, T0), True, False),  # a new lapse
    (WinbackState("lapsed", T0, T0 - timedelta(days=400), None), True, False),  # old return
    (WinbackState("lapsed", T0, T0 + timedelta(days=1), None), False, False),  # returned since
    (WinbackState("active", T0, None, None), False, False),
    (WinbackState("at_risk", T0, None, None), False, False),
    (WinbackState(None, None, None, None), False, False),
])
def test_the_winback_journey_is_lapsed_or_lost_and_not_returned_since(state, in_winback,
                                                                       recorded):
    assert state.in_winback is in_winback
    assert state.message_recorded is recorded
