"""Turning a tenant's routes on and off, and saying what each does for the tenant.

The switches are the tenant setting ``routes`` (``{route: bool}``, every route on unless
switched off; :mod:`gateway.tenant_settings`), so they are read with the tenant's other
settings in the same query and written through the same validated, locked update. The
switchable routes are the event routes (:data:`gateway.relay.routes.ROUTES`) and the scheduled
pulls (``rci-customers``, ``rekindle-poll``), which read the same switch.

``python app.py routes list|enable|disable TENANT [ROUTE]`` and ``GET /api/v1/routes``,
``PUT /api/v1/routes/NAME`` are the ways in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gateway.relay.routes import BY_NAME
from gateway.relay.routes_context import PlanContext, open_context
from gateway.store import tenants as tenant_store
from gateway.tenant_settings import SWITCHABLE_ROUTES

#: The scheduled routes' services (their pulls are built on the schedules, not here).
_SCHEDULED = {
    "rci-customers": ("the scheduled RCI customer walk: profiles, consent, value and RFM to "
                      "Replenit, Rekindle and Rejoiner; redacted customers erased",
                      ("replenit", "rekindle", "rejoiner"), ("rci",)),
    "rekindle-poll": ("the scheduled poll of Rekindle's triggers, a backstop for transitions "
                      "no answer carried", (), ("rekindle",)),
}


class UnknownRoute(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown route {name!r}; routes: {', '.join(SWITCHABLE_ROUTES)}")


def _describe(name: str, context: PlanContext) -> dict[str, Any]:
    route = BY_NAME.get(name)
    if route is not None:
        description, events, to, reads = (route.description, sorted(route.events),
                                           route.destinations, ())
    else:
        description, to, reads = _SCHEDULED[name]
        events = []
    services = (*reads, *to)
    return {
        "name": name,
        "enabled": context.route_on(name),
        "kind": "events" if route is not None else "scheduled",
        "events": events,
        "to": list(to),
        "connected": [c for c in dict.fromkeys(services) if context.is_connected(c)],
        "description": description,
    }


def list_routes(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    """Every switchable route with its switch for the tenant, what it takes, where it writes
    and which of those services the tenant has connected. :class:`UnknownTenant` for an
    unknown tenant."""
    tenant_store.get_tenant(conn, tenant_id)
    context = open_context(conn, tenant_id)
    return [_describe(name, context) for name in SWITCHABLE_ROUTES]


def get_route(conn: Connection, tenant_id: str, name: str) -> dict[str, Any]:
    if name not in SWITCHABLE_ROUTES:
        raise UnknownRoute(name)
    tenant_store.get_tenant(conn, tenant_id)
    return _describe(name, open_context(conn, tenant_id))


def set_route(conn: Connection, tenant_id: str, name: str, enabled: bool) -> dict[str, Any]:
    """Switch the tenant's route on or off (in the caller's transaction, under the settings'
    lock); the route as it is now. Other routes keep their switches."""
    if name not in SWITCHABLE_ROUTES:
        raise UnknownRoute(name)
    if enabled is not True and enabled is not False:
        raise ValueError("enabled must be true or false")
    tenant_store.update_settings(conn, tenant_id, {"routes": {name: enabled}})
    return _describe(name, open_context(conn, tenant_id))
