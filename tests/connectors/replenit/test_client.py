"""The production client against the sandbox over real HTTP: check, chunks, resends, retries."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests

from connectors.base import ConnectionConfig
from connectors.http import AuthError, NotFound, RateLimited, ServerError, ValidationError
from connectors.replenit import CONNECTOR, wire
from connectors.replenit.client import ReplenitClient
from connectors.replenit.sandbox import create_sandbox
from connectors.sandbox_kit import SandboxConfig, start_sandbox
from gateway.model import Consent, Customer, Money, Order, OrderLine, Product, Variant
from tests.connectors.conftest import fast_retry

from .conftest import TENANT

CONTEXT = {"consent_basis": "consent"}


def requests_seen(base):
    return requests.get(f"{base}/_sandbox/stats", timeout=5).json()["requests"]


def stats(base):
    return requests.get(f"{base}/_sandbox/stats", timeout=5).json()["records"]


def record(base, kind, key):
    r = requests.get(f"{base}/_sandbox/records/{kind}/{key}", timeout=5)
    return wire.loads(r.content) if r.status_code == 200 else None


def faults(base, **settings):
    requests.post(f"{base}/_sandbox/faults", json=settings, timeout=5).raise_for_status()


def customer(i: int, **kw) -> Customer:
    return Customer(id=f"gw-{i}", email=f"c{i}@example.com", first_name="Ann",
                    consent=Consent(email=True, gdpr_processing=True), **kw)


def order(i: int, total="29.99", currency="USD") -> Order:
    price = Money.from_decimal(total, currency)
    return Order(id=f"O-{i}", placed_at=datetime(2025, 8, 22, 21, tzinfo=timezone.utc),
                 total=price, lines=[OrderLine("P-1", "SKU-1", 1, price)],
                 customer_external_id=f"C-{i}", customer_email=f"c{i}@example.com")


# --- check ------------------------------------------------------------------------------------


def test_check_tells_good_from_bad(make_client, base):
    assert make_client().check().ok
    bad_key = make_client(key="not-the-key").check()
    assert not bad_key.ok and "401" in bad_key.detail
    bad_tenant = make_client(tenant="11111111-1111-1111-1111-111111111111").check()
    assert not bad_tenant.ok and "tenant" in bad_tenant.detail
    assert stats(base)["customers"] == 0  # the check changes nothing


def test_connector_spec():
    assert CONNECTOR.name == "replenit" and CONNECTOR.reads == frozenset()
    assert {name: op.max_batch for name, op in CONNECTOR.operations.items()} == {
        "customers.upsert": 500, "customers.delete": 1, "orders.upsert": 200,
        "orders.delete": 1, "order_lines.delete": 1, "products.upsert": 100,
        "products.delete": 1, "variants.delete": 1}
    assert [(lim.requests, lim.seconds) for lim in CONNECTOR.limits] == [(100, 60), (5000, 3600)]


# --- upserts ----------------------------------------------------------------------------------


def test_upserts_in_chunks_of_the_documented_maximum(client, base):
    op = CONNECTOR.operations["customers.upsert"]
    result = op.send(client, [customer(i) for i in range(500)], CONTEXT)
    assert (result.accepted, result.rejected) == (500, {})
    assert client.upsert_customers([{"CustomerId": f"X-{i}"} for i in range(1001)]) == 1001
    assert requests_seen(base) == {"200": 4}
    assert stats(base)["customers"] == 1501


def test_chunk_error_indexes_count_over_the_whole_list(client, base):
    records = [{"CustomerId": f"X-{i}"} for i in range(600)]
    records[550] = {"Email": "bad"}
    with pytest.raises(ValidationError) as info:
        client.upsert_customers(records)
    assert info.value.field_errors == {"[550].Email": [wire.EMAIL_INVALID]}
    assert set(info.value.by_record) == {550}
    assert stats(base)["customers"] == 500  # the first chunk went through


def test_invalid_records_rejected_valid_ones_resent_once(client, base):
    batch = [customer(0), Customer(id="x" * 101, email="ok@example.com"), customer(2),
             Customer(id="gw-3", email=None, first_name="NoEmailButId"),
             Customer(id=None, email=None)]
    result = CONNECTOR.operations["customers.upsert"].send(client, batch, CONTEXT)
    assert result.rejected == {1: {"CustomerId": ["Maximum length is 100 characters."]},
                               4: {"Email": ["The Email field is required."]}}
    assert result.accepted == 3
    assert requests_seen(base) == {"400": 1, "200": 1}
    assert stats(base)["customers"] == 3
    assert record(base, "customers", "gw-3")["Name"] == "NoEmailButId"


def test_nested_item_errors_name_the_order(client, base):
    broken = order(1)
    broken.lines[0].sku = None  # a line naming neither SKU nor product: nothing to send as Sku
    broken.lines[0].product_id = None
    result = CONNECTOR.operations["orders.upsert"].send(client, [order(0), broken, order(2)],
                                                        CONTEXT)
    assert result.rejected == {1: {"OrderItems[0].ProductId": ["The ProductId field is required."],
                                   "OrderItems[0].Sku": ["The Sku field is required."]}}
    assert result.accepted == 2 and stats(base)["orders"] == 2


def test_unmappable_records_rejected_without_a_request(client, base):
    mixed = order(1)
    mixed.lines[0].unit_price = Money(100, "EUR")
    result = CONNECTOR.operations["orders.upsert"].send(client, [mixed, order(2)], CONTEXT)
    assert list(result.rejected) == [0] and "EUR" in result.rejected[0]["$"][0]
    assert result.accepted == 1 and requests_seen(base) == {"200": 1}


def test_faulted_records_are_the_only_ones_dead_lettered(client, base):
    faults(base, reject_keys={"gw-1": "Customer is blocked."})
    result = CONNECTOR.operations["customers.upsert"].send(
        client, [customer(i) for i in range(3)], CONTEXT)
    assert result.rejected == {1: {"CustomerId": ["Customer is blocked."]}}
    assert result.accepted == 2


def test_money_reaches_the_service_exactly(client, base):
    orders = [order(0, "19.99"), order(1, "0.10"), order(2, "1234", "JPY"),
              order(3, "1.005", "BHD"), order(4, "99999999999.99")]
    assert CONNECTOR.operations["orders.upsert"].send(client, orders, CONTEXT).accepted == 5
    assert record(base, "orders", "O-0")["TotalRevenue"] == Decimal("19.99")
    assert record(base, "orders", "O-1")["OrderItems"][0]["Price"] == Decimal("0.1")
    assert record(base, "orders", "O-2")["TotalRevenue"] == Decimal("1234")
    assert record(base, "orders", "O-3")["TotalRevenue"] == Decimal("1.005")
    assert record(base, "orders", "O-4")["TotalRevenue"] == Decimal("99999999999.99")


def test_gdpr_optin_follows_the_context(client, base):
    op = CONNECTOR.operations["customers.upsert"]
    unknown = Customer(id="gw-u", email="u@example.com")
    op.send(client, [unknown], {"consent_basis": "consent"})
    assert record(base, "customers", "gw-u")["GdprOptin"] is False
    op.send(client, [unknown], {"consent_basis": "lawful_basis"})
    assert record(base, "customers", "gw-u")["GdprOptin"] is True


def test_products_then_orders_link(client, base):
    product = Product(id="P-1", name="Tank", variants=[Variant(
        id="V-1", sku="SKU-1", name="S", price=Money(3499, "USD"))])
    CONNECTOR.operations["orders.upsert"].send(client, [order(0)], CONTEXT)
    assert stats(base)["unlinked_order_items"] == 1
    CONNECTOR.operations["products.upsert"].send(client, [product], CONTEXT)
    assert stats(base)["unlinked_order_items"] == 0


# --- deletes ----------------------------------------------------------------------------------


def test_delete_operations(client, base):
    ops = CONNECTOR.operations
    product = Product(id="P-1", name="Tank", variants=[
        Variant(id="V-1", sku="SKU-1", name="S", price=Money(1, "USD")),
        Variant(id="V-2", sku="SKU-2", name="M", price=Money(1, "USD"))])
    ops["products.upsert"].send(client, [product], CONTEXT)
    ops["customers.upsert"].send(client, [customer(1)], CONTEXT)
    ops["orders.upsert"].send(client, [order(1), order(2)], CONTEXT)

    assert ops["variants.delete"].send(client, [{"product_id": "P-1", "variant_id": "V-1"}],
                                       CONTEXT).accepted == 1
    assert stats(base)["variants"] == 1
    line = {"order_id": "O-2", "product_id": "P-1", "sku": "SKU-1"}
    assert ops["order_lines.delete"].send(client, [line], CONTEXT).accepted == 1
    assert record(base, "orders", "O-2")["OrderItems"] == []
    assert ops["orders.delete"].send(client, [order(2)], CONTEXT).accepted == 1
    assert ops["products.delete"].send(client, ["P-1"], CONTEXT).accepted == 1
    # erasure: by id and by email; orders of the customer go too
    assert ops["customers.delete"].send(client, [customer(1)], CONTEXT).accepted == 1
    assert stats(base)["customers"] == 0
    assert ops["customers.delete"].send(client, [{"email": "c1@example.com"}],
                                        CONTEXT).accepted == 1
    assert stats(base)["orders"] == 0
    # idempotent
    assert ops["orders.delete"].send(client, ["O-404"], CONTEXT).accepted == 1
    assert ops["customers.delete"].key(customer(1)) == "gw-1"
    assert ops["order_lines.delete"].key(line) == "O-2/P-1/SKU-1"


def test_delete_rejections(client, base):
    ops = CONNECTOR.operations
    result = ops["customers.delete"].send(client, [Customer(id=None, email=None)], CONTEXT)
    assert result.accepted == 0 and list(result.rejected) == [0]
    result = ops["orders.delete"].send(client, ["A/B"], CONTEXT)
    assert result.accepted == 0 and "path segment" in result.rejected[0]["$"][0]
    assert requests_seen(base) == {}


# --- errors, retries and the budget -------------------------------------------------------


def test_no_secret_in_errors(make_client, api_key):
    bad = make_client(key="secret-key-that-is-wrong")
    with pytest.raises(AuthError) as info:
        bad.upsert_customers([{"CustomerId": "C"}])
    text = str(info.value) + repr(info.value) + repr(info.value.body) + repr(bad.http.auth)
    assert "secret-key-that-is-wrong" not in text
    with pytest.raises(NotFound):
        make_client(tenant="other").delete_order("O-1")


def test_retries_429_and_5xx_honouring_retry_after(make_client, base):
    client = make_client(time_scale=100.0)  # Retry-After 60 service seconds = 0.6 s
    faults(base, burst_429=2)
    assert client.upsert_customers([{"CustomerId": "C-1"}]) == 1
    assert requests_seen(base) == {"429": 2, "200": 1}
    faults(base, error_rate=1.0, error_status=503)
    with pytest.raises(ServerError):
        client.delete_order("O-1")
    assert requests_seen(base)["503"] == 3  # max_attempts of make_client's default retry


def test_gives_up_on_429_after_its_attempts(make_client, base):
    client = make_client(time_scale=1000.0, retry=fast_retry(2))
    faults(base, burst_429=5, retry_after=1)
    with pytest.raises(RateLimited) as info:
        client.delete_product("P-1")
    assert info.value.retry_after == 1


def test_no_retry_on_other_4xx(client, base):
    with pytest.raises(ValidationError):
        client.upsert_orders([{"OrderId": "O-1"}])
    with pytest.raises(ValidationError):
        client.delete_customer(email="not-an-email")
    assert requests_seen(base) == {"400": 2}


def test_retries_resets(make_client, base):
    client = make_client(retry=fast_retry(6))
    faults(base, reset_rate=0.5, seed=7)
    for i in range(6):
        client.delete_order(f"O-{i}")
    assert requests_seen(base)["200"] == 6


@pytest.fixture
def fast_sandbox(api_key):
    running = start_sandbox(create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT,
                                                         rate_scale=60.0)))
    yield running
    running.stop()


def test_budget_keeps_under_the_minute_limit(fast_sandbox, api_key):
    """120 requests at 60x: the client waits for the window instead of meeting a 429."""
    client = ReplenitClient(ConnectionConfig(fast_sandbox.url, {"api_key": api_key},
                                             {"tenant_id": TENANT}),
                            time_scale=60.0, retry=fast_retry(1))
    try:
        for i in range(120):
            client.delete_order(f"O-{i}")
    finally:
        client.close()
    assert requests_seen(fast_sandbox.url) == {"200": 120}


@pytest.mark.redis
def test_budget_shared_through_redis(fast_sandbox, api_key):
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    config = ConnectionConfig(fast_sandbox.url, {"api_key": api_key}, {"tenant_id": TENANT})
    try:
        clients = [ReplenitClient(config, time_scale=60.0, storage_uri=redis_url,
                                  retry=fast_retry(1)) for _ in range(2)]
    except Exception as exc:  # pragma: no cover - no Redis here
        pytest.skip(f"no Redis: {exc}")
    try:
        for i in range(110):
            clients[i % 2].delete_order(f"O-{i}")
    except RateLimited:
        pytest.fail("two clients on one Redis budget met a 429")
    finally:
        for c in clients:
            c.close()
    assert requests_seen(fast_sandbox.url) == {"200": 110}
