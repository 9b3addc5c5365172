"""Hook targets: refused at subscribe and at every connect when private targets are not
allowed (loopback, metadata, link-local, private, CGNAT, a name resolving to one), with no
connection opened; accepted, with plain http, where they are allowed."""

from __future__ import annotations

import pytest

from gateway.hooks import store as hook_store
from tests.hooks.conftest import hook_rows, status_item, subscribe, write_events

SSRF_HOSTS = ["127.0.0.1", "169.254.169.254", "[::1]", "10.0.0.1", "100.64.0.1",
              "[64:ff9b::a00:1]", "localhost"]


@pytest.mark.parametrize("host", SSRF_HOSTS)
def test_a_private_target_is_refused_at_subscribe(client, make_hook_tenant, host):
    tenant = make_hook_tenant(allow_private=False)
    answer = subscribe(client, tenant, f"https://{host}/hook")
    assert answer.status_code == 422
    [reason] = answer.get_json()["errors"]["target_url"]
    assert "public addresses" in reason
    assert client.get("/api/v1/hooks", headers=tenant.auth).get_json() == []


def test_plain_http_needs_private_targets(client, make_hook_tenant, subscriber):
    closed = make_hook_tenant(allow_private=False)
    answer = subscribe(client, closed, "http://example.com/hook")
    assert answer.status_code == 422 and "https" in answer.get_json()["errors"]["target_url"][0]
    assert subscriber.connections == 0
    open_ = make_hook_tenant(allow_private=True)
    assert subscribe(client, open_, subscriber.url).status_code == 201


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_refused_at_connect_time_without_opening_a_connection(
        client, engine, runtime, clock, make_hook_tenant, subscriber, make_sender, host):
    """Subscribed while private targets were allowed; switched off since: the next attempt
    is refused before any socket is opened."""
    from gateway.store import tenants

    tenant = make_hook_tenant(allow_private=True)
    url = f"https://{host}:{subscriber.port}/hook"  # the address check, not the scheme
    assert subscribe(client, tenant, url).status_code == 201
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    with engine.begin() as conn:
        tenants.update_settings(conn, tenant.id, {"allow_private_targets": False})
    runtime.forget_settings(tenant.id)
    make_sender().run_once()
    assert subscriber.connections == 0 and subscriber.received == []
    [row] = hook_rows(engine, tenant.id)
    assert row.status == "pending" and row.attempt == 1
    assert "refused" in row.last_error and "public addresses" in row.last_error


@pytest.mark.parametrize("address", ["169.254.169.254", "::1", "10.0.0.1", "100.64.0.1",
                                     "127.0.0.1", "fd00:ec2::254"])
def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect(
        engine, runtime, clock, make_hook_tenant, make_sender, address):
    """DNS rebinding: the name resolved to a public address when it was subscribed; at the
    attempt it answers a private one, and the connect-time check refuses it."""
    tenant = make_hook_tenant(allow_private=False)
    with engine.begin() as conn:
        hook_store.create_subscription(conn, runtime.vault, tenant.id,
                                       event="customer.status_changed",
                                       target_url="https://hooks.example.test/h")
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return [address]

    make_sender(resolver=rebinding).run_once()
    assert asked == ["hooks.example.test"]
    [row] = hook_rows(engine, tenant.id)
    assert row.attempt == 1 and "refused" in row.last_error and address in row.last_error


def test_the_global_setting_allows_private_targets(engine, runtime, clock, make_hook_tenant,
                                                   subscriber):
    from gateway.hooks.sender import HookSender
    from gateway.runtime import Runtime
    from tests.hooks.conftest import fast_settings

    tenant = make_hook_tenant(allow_private=False)
    with engine.begin() as conn:
        hook_store.create_subscription(conn, runtime.vault, tenant.id,
                                       event="customer.status_changed",
                                       target_url=subscriber.url)
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    from dataclasses import replace

    opened = Runtime(settings=replace(runtime.settings, allow_private_targets=True),
                     engine=runtime.engine)
    HookSender(opened, config=fast_settings(), clock=clock).run_once()
    assert [r.answered for r in subscriber.received] == [200]
