"""REST-hook fixtures: a scripted subscriber on 127.0.0.1, a movable clock, tenants with a
zapier key, and a helper that writes events and plans their hook deliveries in one
transaction (as ingest does through the relay's planning)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from gateway.hooks import HOOKS
from gateway.hooks import store as hook_store
from gateway.hooks.config import HookSettings
from gateway.hooks.planning import plan_hook_deliveries
from gateway.hooks.sender import HookSender
from gateway.model import Event
from gateway.store import keys, tenants
from gateway.store.events import append_events
from gateway.store.tables import deliveries


class Clock:
    """Epoch seconds that move only when told (starting at the real time, so a receiver's
    ±5 minute check on the signatures' timestamps holds)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    answered: int


@dataclass
class Subscriber:
    """A test HTTP server: answers from ``script`` (status, headers) in turn, then 200."""

    server: ThreadingHTTPServer
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Event | None = None  # when set up, each answer waits for it (bounded)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def _handler(sub: Subscriber) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            sub.arrived.set()
            if sub.gate is not None:
                sub.gate.wait(20)
            with sub.lock:
                status, headers = sub.script.pop(0) if sub.script else (200, {})
                sub.received.append(Received(self.path, dict(self.headers), body, status))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    return Handler


@pytest.fixture()
def subscriber_factory() -> Iterator[Any]:
    made: list[Subscriber] = []

    def make() -> Subscriber:
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        server.daemon_threads = True
        sub = Subscriber(server)
        server.RequestHandlerClass = _handler(sub)

        def verify_request(request: Any, address: Any) -> bool:  # every accepted connection
            with sub.lock:
                sub.connections += 1
            return True

        server.verify_request = verify_request  # type: ignore[method-assign]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.server.shutdown()
        sub.server.server_close()


@pytest.fixture()
def subscriber(subscriber_factory) -> Subscriber:
    return subscriber_factory()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@dataclass
class HookTenant:
    id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture()
def make_hook_tenant(engine, runtime) -> Iterator[Any]:
    made: list[str] = []

    def make(*, allow_private: bool) -> HookTenant:
        with engine.begin() as conn:
            tenant = tenants.create_tenant(conn, "Hook shop")
            tenants.update_settings(conn, tenant.id, {"allow_private_targets": allow_private})
            key = keys.create_key(conn, tenant.id, "zapier").api_key
        runtime.forget_settings(tenant.id)
        made.append(tenant.id)
        return HookTenant(tenant.id, key)

    yield make
    with engine.begin() as conn:  # nothing of this test is left for another test's sender
        for tenant_id in made:
            for sub in hook_store.list_subscriptions(conn, tenant_id):
                hook_store.delete_subscription(conn, tenant_id, sub.id, reason="test over")
            conn.execute(deliveries.update().where(
                deliveries.c.tenant_id == tenant_id, deliveries.c.connector == HOOKS,
                deliveries.c.status.in_(["pending", "in_flight"])).values(status="cancelled"))


def fast_settings(**overrides: Any) -> HookSettings:
    values: dict[str, Any] = dict(retry_schedule=(1.0,) * 7, jitter=0.0, rate_per_second=1000.0,
                                  disable_after_seconds=5 * 86_400.0, timeout_seconds=5.0,
                                  lease_seconds=30.0)
    values.update(overrides)
    return HookSettings(**values)


@pytest.fixture()
def make_sender(runtime, clock) -> Any:
    def make(**overrides: Any) -> HookSender:
        resolver = overrides.pop("resolver", None)
        return HookSender(runtime, config=fast_settings(**overrides), clock=clock,
                          resolver=resolver, rng=lambda: 0.5)

    return make


def status_item(customer: str, status: str, previous: str) -> dict[str, Any]:
    """A customer-status item (Rekindle's field names)."""
    return {"customer_id": customer, "name": "Jane Smith", "email": f"{customer}@example.com",
            "phone": None, "status": status, "previous_status": previous,
            "engagement_score": 30, "last_purchase_date": "2026-01-01", "total_spent": 42.5,
            "purchase_count": 3, "returned_at": None, "updated_at": "2026-12-01T00:00:00Z",
            "changed_at": "2026-12-01T00:00:00Z"}


def write_events(engine, tenant_id: str, planned: list[tuple[str, str | None, dict]],
                 clock: Clock) -> list[Event]:
    """Write events and plan their hook deliveries in one transaction, at ``clock``'s now."""
    when = datetime.fromtimestamp(clock.now, timezone.utc)
    with engine.begin() as conn:
        ids = append_events(conn, tenant_id, planned, occurred_at=when, source="test")
        events = [Event(id=event_id, tenant_id=tenant_id, type=type_, subject_id=subject,
                        occurred_at=when, source="test", item={"id": event_id, **item})
                  for event_id, (type_, subject, item) in zip(ids, planned)]
        plan_hook_deliveries(conn, tenant_id, events, now=when)
    return events


def hook_rows(engine, tenant_id: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(deliveries).where(
            deliveries.c.tenant_id == tenant_id, deliveries.c.connector == HOOKS)
            .order_by(deliveries.c.id)).all()


def subscribe(client, tenant: HookTenant, url: str, event: str = "customer.status_changed",
              **extra: Any) -> Any:
    return client.post("/api/v1/hooks", headers=tenant.auth,
                       data=json.dumps({"event": event, "target_url": url, **extra}),
                       content_type="application/json")
