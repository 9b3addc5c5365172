"""Fixtures for the pulls: the relay's (a fresh database per test, sandboxes on 127.0.0.1,
workers), an RCI sandbox seeded with synthetic customers, and a tenant connected to all four
services with some customers' processing consent recorded beforehand (Replenit takes only
those under the default ``consent`` basis)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest

from connectors.rci.sandbox import BASE_PATH as RCI_BASE
from connectors.rci.sandbox import create_sandbox as rci_sandbox
from connectors.sandbox_kit import SandboxConfig, start_sandbox, synthetic_customers
from gateway.ingest import ingest
from gateway.store.connections import save_connection
from tests.relay.conftest import (  # noqa: F401 - fixtures
    Service,
    fresh_key,
    make_worker,
    new_tenant,
    relay_db,
    start_service,
    stopping,
)

#: Rate windows divided by this in the pulls' tests: the documented limits, in milliseconds.
SCALE = 1000.0


@dataclass
class Shop:
    """A tenant wired to an RCI sandbox and the three destination sandboxes."""

    tenant_id: str
    runtime: Any
    rci: Any  # the RCI sandbox (RunningSandbox)
    replenit: Service
    rekindle: Service
    rejoiner: Service
    consented: set[str]

    @property
    def rci_store(self) -> Any:
        return self.rci.app.extensions["rci"].store

    def requests(self, service: Service) -> int:
        """Service requests the sandbox answered (any status)."""
        snapshot = service.state.stats.snapshot({})
        return sum(snapshot["requests"].values())


def start_rci(stopping: Callable[[Any], Any], customers: int, **config: Any) -> tuple[Any, str]:  # noqa: F811
    key = fresh_key("rci")
    sandbox = start_sandbox(rci_sandbox(SandboxConfig(api_key=key, seed_customers=customers,
                                                      **config)))
    stopping(sandbox)
    return sandbox, key


def connect_rci(relay_db: Any, tenant_id: str, sandbox: Any, key: str) -> None:  # noqa: F811
    with relay_db.engine.begin() as conn:
        save_connection(conn, relay_db.runtime.vault, tenant_id, "rci", sandbox.url + RCI_BASE,
                        {"api_token": key})


def record_consent(relay_db: Any, tenant_id: str, emails: list[str]) -> None:  # noqa: F811
    """Processing consent for these customers, recorded before any service is connected."""
    with relay_db.engine.begin() as conn:
        ingest(conn, tenant_id, "customers", "canonical",
               [{"email": e, "consent": {"gdpr_processing": True}} for e in emails])


@pytest.fixture
def shop(relay_db, new_tenant, start_service, stopping) -> Callable[..., Shop]:  # noqa: F811
    """``shop(customers=300, consent_every=3)``: a connected tenant; every
    ``consent_every``-th synthetic customer has processing consent."""

    def make(customers: int = 300, consent_every: int = 3) -> Shop:
        tenant_id = new_tenant("Pull shop")
        consented = [p.email for p in synthetic_customers(customers)
                     if p.index % consent_every == 0 and p.redacted_at is None]
        record_consent(relay_db, tenant_id, consented)
        rci, key = start_rci(stopping, customers, rate_scale=SCALE)
        connect_rci(relay_db, tenant_id, rci, key)
        services = {}
        for name in ("replenit", "rekindle", "rejoiner"):
            services[name] = start_service(name, rate_scale=SCALE)
            services[name].connect(relay_db.engine, relay_db.runtime.vault, tenant_id)
        runtime = relay_db.runtime_with(rate_time_scale=SCALE)
        return Shop(tenant_id, runtime, rci, services["replenit"], services["rekindle"],
                    services["rejoiner"], set(consented))

    return make
