"""Each route is on or off per tenant (the command line and the API), a route that is off plans
nothing, and a service the tenant has not connected gets nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from marshmallow import ValidationError

from gateway.store import tenants
from gateway.tenant_settings import SWITCHABLE_ROUTES
from tests.conftest import ROOT
from tests.connectors.conftest import sandbox_stats
from tests.relay import test_routes_kit as kit
from tests.relay.test_routes_kit import (
    API,
    connect,
    counted,
    customer_body,
    days_ago,
    deliver,
    held,
    order_body,
)

# The kit's fixtures, used here by name.
answer_handlers, destinations, gateway_app, make_shop, shop = (
    kit.answer_handlers, kit.destinations, kit.gateway_app, kit.make_shop, kit.shop)

PRODUCT = {"id": "P-9", "name": "Mug", "variants": [
    {"id": "V-9", "sku": "SKU-9", "name": "Mug", "price": "9.00", "currency": "USD"}]}


def routes_cli(relay_db, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.relay.routes_cli", "routes", *args],
                          cwd=ROOT, env=relay_db.env(), capture_output=True, text=True,
                          timeout=120)


def planned(shop) -> set[tuple[str, str]]:
    return {(r.connector, r.operation) for r in shop.rows()}


def test_a_route_switched_off_on_the_command_line_plans_nothing(relay_db, shop, destinations,
                                                                 make_worker):
    connect(relay_db, shop, destinations.replenit)
    off = routes_cli(relay_db, "disable", shop.id, "products")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["enabled"] is False
    listed = {r["name"]: r for r in json.loads(routes_cli(relay_db, "list", shop.id).stdout)}
    assert list(listed) == list(SWITCHABLE_ROUTES)
    assert listed["products"]["enabled"] is False and listed["orders"]["enabled"] is True
    assert listed["products"]["connected"] == ["replenit"]
    assert listed["winback"]["connected"] == []

    shop.act("upsert-products", PRODUCT)
    shop.act("update-customer", customer_body("pia@example.com", "Pia"))
    assert ("replenit", "products.upsert") not in planned(shop)
    assert ("replenit", "customers.upsert") in planned(shop)  # other routes still run

    assert routes_cli(relay_db, "enable", shop.id, "products").returncode == 0
    shop.act("upsert-products", {**PRODUCT, "name": "Big mug"})
    deliver(make_worker(), shop)
    assert held(destinations.replenit, "products", "P-9")["ProductName"] == "Big mug"


def test_the_routes_commands_refuse_what_they_do_not_know(relay_db, shop):
    unknown_route = routes_cli(relay_db, "disable", shop.id, "everything")
    assert unknown_route.returncode == 2
    assert "everything" in json.loads(unknown_route.stderr)["error"]
    unknown_tenant = routes_cli(relay_db, "list", "ten_nobody")
    assert unknown_tenant.returncode == 2
    assert json.loads(unknown_tenant.stderr) == {"error": "no tenant 'ten_nobody'"}


def test_a_service_the_tenant_has_not_connected_gets_nothing(relay_db, shop, destinations,
                                                             make_worker):
    connect(relay_db, shop, destinations.replenit)  # Rekindle and Rejoiner are up, not connected
    shop.act("update-customer", customer_body("nia@example.com", "Nia"))
    shop.act("record-order", order_body("N-1", "nia@example.com"))
    shop.act("unsubscribe", {"email": "nia@example.com"})
    assert {connector for connector, _ in planned(shop)} == {"replenit"}
    deliver(make_worker(), shop)
    assert counted(destinations.replenit)["orders"] == 1
    for service in (destinations.rekindle, destinations.rejoiner):
        stats = sandbox_stats(service.url)
        assert stats["requests"] == {} and set(stats["records"].values()) == {0}


def test_the_routes_over_the_api(relay_db, shop, destinations, new_key):
    connect(relay_db, shop, destinations.rejoiner)
    listed = shop.client.get(f"{API}/routes", headers=shop.headers)
    assert listed.status_code == 200
    by_name = {r["name"]: r for r in listed.json}
    assert set(by_name) == set(SWITCHABLE_ROUTES)
    assert all(r["enabled"] for r in listed.json)
    assert by_name["winback"]["events"] == ["customer.returned", "customer.status_changed"]
    assert by_name["winback"]["connected"] == ["rejoiner"]

    switched = shop.client.put(f"{API}/routes/winback", json={"enabled": False},
                               headers=shop.headers)
    assert switched.status_code == 200, switched.json
    assert switched.json["enabled"] is False
    again = {r["name"]: r["enabled"] for r in shop.client.get(
        f"{API}/routes", headers=shop.headers).json}
    assert again["winback"] is False and again["orders"] is True

    # Lapsed now, but the route is off: Rejoiner gets the profile without the tag.
    shop.act("record-order", order_body("W-1", "wes@example.com", placed_at=days_ago(200)))
    assert ("rejoiner", "customers.upsert") in planned(shop)
    assert all("gw:winback" not in json.dumps(r.payload) for r in shop.rows())

    for body, status in (({"enabled": "no"}, 400), ({"enabled": 1}, 400), ({}, 400),
                         ({"enabled": True, "more": 1}, 400)):
        answer = shop.client.put(f"{API}/routes/winback", json=body, headers=shop.headers)
        assert answer.status_code == status, (body, answer.json)
        assert "error" in answer.json
    missing = shop.client.put(f"{API}/routes/nowhere", json={"enabled": True},
                              headers=shop.headers)
    assert missing.status_code == 404 and "nowhere" in missing.json["error"]
    zapier = {"Authorization": f"Bearer {new_key(shop.id, 'zapier')}"}
    assert shop.client.get(f"{API}/routes", headers=zapier).status_code == 403
    assert shop.client.put(f"{API}/routes/orders", json={"enabled": False},
                           headers=zapier).status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"routes": {"nowhere": True}}, "routes"),
    ({"routes": {"orders": "yes"}}, "routes"),
    ({"routes": {"orders": 0}}, "routes"),
    ({"routes": ["orders"]}, "routes"),
])
def test_the_routes_setting_is_validated(relay_db, shop, change, field):
    with relay_db.engine.begin() as conn, pytest.raises(ValidationError) as refused:
        tenants.update_settings(conn, shop.id, change)
    assert field in refused.value.messages


def test_the_routes_setting_merges_per_route(relay_db, shop):
    with relay_db.engine.begin() as conn:
        tenants.update_settings(conn, shop.id, {"routes": {"orders": False}})
        tenants.update_settings(conn, shop.id, {"routes": {"consent": False}})
        routes = tenants.get_settings(conn, shop.id).routes
    assert routes == {**{name: True for name in SWITCHABLE_ROUTES}, "orders": False,
                      "consent": False}
