"""The demo's own installation: settings written out in full (nothing read from the user's
``GATEWAY_*`` environment, so a real database is never touched), a fresh embedded SQLite
database in a folder of its own, and one tenant wired to the sandboxes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gateway import connections
from gateway.relay.routes_switches import list_routes
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import keys, tenants
from gateway.store.db import write_transaction
from gateway.webhooks.secrets import ensure_secret

from .sandboxes import DemoSandbox

SHOP_NAME = "Demo shop"
#: The tenant settings the demo declares (printed as it sets them).
SHOP_SETTINGS = {
    # Replenit receives only customers with a consent basis: the shop declares a lawful basis
    # for all of them (the default, "consent", sends only those with recorded consent).
    "consent_basis": "lawful_basis",
    # The REST-hook subscriber is a local server on 127.0.0.1, over plain http.
    "allow_private_targets": True,
}


class FolderNotEmpty(ValueError):
    """``--folder`` names a folder that already holds a gateway database."""


def demo_folder(given: str | None) -> Path:
    """The folder the demo's database lives in: ``given`` (created if missing; refused when it
    already holds a database, which the demo never reuses), or a new temporary folder."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="gateway-demo-")).resolve()
    folder = Path(given).expanduser().resolve()
    if (folder / "gateway.db").exists():
        raise FolderNotEmpty(f"{folder} already holds a gateway database; "
                             "the demo starts from an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def demo_settings(folder: Path, rate_scale: float) -> Settings:
    """Process settings for the demo, from no environment at all: the embedded SQLite default
    in ``folder``, rate budgets scaled with the sandboxes, and short waits so each step
    shows at once (a partial batch leaves after 0.2 s, the schedule tick is every second)."""
    return Settings.from_env(
        {}, instance_path=folder, database_url=None, secret_key=None, redis_url=None,
        rate_time_scale=rate_scale, batch_linger_seconds=0.2, tick_seconds=1.0,
        worker_poll_seconds=0.2, connection_pause_seconds=5.0)


@dataclass
class Shop:
    """The demo's tenant: its id, its admin API key and its webhook signing secret."""

    tenant_id: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    routes: list[dict]


def create_shop(runtime: Runtime, sandboxes: dict[str, DemoSandbox]) -> Shop:
    """A tenant with an admin key, :data:`SHOP_SETTINGS`, a webhook secret, and a connection
    to each sandbox (every route is on by default)."""
    with write_transaction(runtime.engine) as conn:
        tenant = tenants.create_tenant(conn, SHOP_NAME)
        api_key = keys.create_key(conn, tenant.id, "admin").api_key
        tenants.update_settings(conn, tenant.id, SHOP_SETTINGS)
        secret = ensure_secret(conn, runtime.vault, tenant.id).current
    runtime.forget_settings(tenant.id)
    for name, sandbox in sandboxes.items():
        connections.set_connection(runtime.engine, runtime.vault, tenant.id, name,
                                   credentials=sandbox.credentials, base_url=sandbox.url,
                                   options=sandbox.options or None, set_via="cli")
    with runtime.engine.connect() as conn:
        routes = list_routes(conn, tenant.id)
    return Shop(tenant.id, api_key, secret, routes)
