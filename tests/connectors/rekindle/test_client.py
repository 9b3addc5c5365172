"""The production client against the sandbox over real HTTP: reads, writes, errors, limits."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from connectors.base import ConnectionConfig
from connectors.http import (
    AuthError,
    FatalError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
)
from connectors.rekindle import CONNECTOR, RekindleClient
from connectors.rekindle.mapping import MappingError
from gateway.model import Customer, Money

from .conftest import API_KEY, FAST_RETRY, REFERENCE_NOW

UPSERT = CONNECTOR.operations["customers.upsert"]


def jane(**changes) -> Customer:
    fields = dict(email="jane@example.com", first_name="Mary Ann", last_name="van der Berg",
                  phone="+27821234567", lifetime_value=Money(420000, "USD"), order_count=7,
                  last_order_at=datetime(2024, 9, 1, 15, 30, tzinfo=timezone.utc))
    fields.update(changes)
    return Customer(**fields)


def test_spec_is_declared_as_data():
    assert CONNECTOR.name == "rekindle"
    assert CONNECTOR.default_base_url == "https://rekindle.business/api/zapier"
    assert CONNECTOR.credential_fields == ("api_key",)
    assert CONNECTOR.option_fields == ("currency",)
    assert [(lim.requests, lim.seconds) for lim in CONNECTOR.limits] == [(120, 60)]
    assert CONNECTOR.reads == frozenset({"customers"})
    assert CONNECTOR.writes == frozenset({"customers.upsert"})
    assert UPSERT.key(Customer(email="Jane@Example.com")) == "jane@example.com"


def test_check_tells_a_good_key_from_a_bad_one(sandbox, make_sandbox):
    with sandbox.client() as good:
        assert good.check().ok
    with sandbox.client(api_key="rk_live_wrong") as bad:
        result = bad.check()
        assert not result.ok and "401" in result.detail and "rk_live_wrong" not in result.detail
    plan = make_sandbox(no_api_plan=True)
    with plan.client() as client:
        result = client.check()
        assert not result.ok and "Scale plan" in result.detail
        with pytest.raises(AuthError, match="plan has no API access") as caught:
            client.customer_status()
        assert caught.value.status == 403


def test_update_find_and_triggers_through_the_client(sandbox):
    with sandbox.client() as client:
        customer, returned = client.update_customer(jane())
        assert returned is False
        assert customer.name == "Mary Ann van der Berg"
        assert customer.lifetime_value == Money(420000, "USD")
        assert customer.last_order_at == datetime(2024, 9, 1, tzinfo=timezone.utc)
        assert customer.status == "lapsed" and customer.updated_at == REFERENCE_NOW
        rekindle_id = customer.external_ids["rekindle"]

        found = client.find_customer("jane@example.com")
        assert found.external_ids == {"rekindle": rekindle_id} and found.order_count == 7
        assert client.find_customer("nobody@example.com") is None

        [listed] = client.customer_status()
        assert listed.email == "jane@example.com" and listed.phone == "+27821234567"
        assert client.customer_returned() == []

        sandbox.control("POST", "winback", json={"email": "jane@example.com"})
        back, returned = client.update_customer(jane(
            order_count=8, last_order_at=REFERENCE_NOW + timedelta(hours=1),
            lifetime_value=Money(470000, "USD")))
        assert returned is True and back.returned_at == back.updated_at
        [won] = client.customer_returned()
        assert won.returned_at == back.returned_at and won.status == "active"


def test_money_goes_out_exactly_in_the_connection_currency(sandbox):
    with sandbox.client(currency="BHD") as client:
        customer, _ = client.update_customer(jane(lifetime_value=Money(1234567, "BHD")))
        assert customer.lifetime_value == Money(1234567, "BHD")
        record = sandbox.control("GET", "records/customers/jane@example.com")
        assert b'"total_spent":1234.567' in record.content
        with pytest.raises(MappingError, match="USD.*BHD"):
            client.update_customer(jane(lifetime_value=Money(1, "USD")))
    huge = Money(10000000000000001, "USD")  # 17 significant digits: no float holds them
    with sandbox.client() as client:
        customer, _ = client.update_customer(jane(lifetime_value=huge))
    assert customer.lifetime_value == huge
    record = sandbox.control("GET", "records/customers/jane@example.com")
    assert b'"total_spent":100000000000000.01' in record.content


def test_send_rejects_only_the_bad_records(sandbox):
    sandbox.control("POST", "faults", json={"reject_keys": {"blocked@example.com": "Blocked"}})
    records = [jane(), Customer(email="not-an-email", first_name="X"),
               Customer(email="nameless@example.com"),
               jane(email="blocked@example.com"), jane(email="other@example.com"),
               jane(email="eur@example.com", lifetime_value=Money(5, "EUR"))]
    with sandbox.client() as client:
        result = UPSERT.send(client, records, {"currency": "USD"})
    assert result.accepted == 2 and set(result.answers) == {0, 4}
    assert set(result.rejected) == {1, 2, 3, 5}
    assert "email" in result.rejected[1] and "name" in result.rejected[2]
    assert result.rejected[3] == {"": ["Blocked"]}
    assert "EUR" in result.rejected[5][""][0]
    customer, returned = result.answers[4]
    assert customer.email == "other@example.com" and returned is False
    # Records known to be invalid cost no request; the service refused one (400), once.
    assert sandbox.control("GET", "stats").json()["requests"] == {"200": 2, "400": 1}


def test_retries_429_honouring_retry_after_then_succeeds(make_sandbox):
    sandbox = make_sandbox()
    sandbox.control("POST", "faults", json={"burst_429": 2})
    with sandbox.client(time_scale=300) as client:  # Retry-After: 30 -> 0.1 s
        started = time.monotonic()
        assert client.customer_returned() == []
        assert time.monotonic() - started >= 0.2
    assert sandbox.control("GET", "stats").json()["requests"] == {"429": 2, "200": 1}


def test_gives_up_on_429_with_a_typed_error(sandbox):
    sandbox.control("POST", "faults", json={"burst_429": 10})
    with sandbox.client(time_scale=3000) as client:
        with pytest.raises(RateLimited) as caught:
            client.customer_status()
    assert caught.value.retry_after == 30.0
    assert caught.value.message == "Too many requests. Please slow down and try again shortly."


def test_retries_server_errors_but_not_other_4xx(sandbox):
    sandbox.control("POST", "faults", json={"error_rate": 0.5, "seed": 3})
    retry = RetryPolicy(max_attempts=12, backoff_base=0.001, backoff_cap=0.01)
    with sandbox.client(retry=retry) as client:
        for _ in range(5):
            client.customer_status()
    requests_seen = sandbox.control("GET", "stats").json()["requests"]
    assert requests_seen["200"] == 5 and requests_seen.get("500", 0) > 0

    sandbox.control("POST", "reset")
    sandbox.control("POST", "faults", json={"error_rate": 1.0})
    with sandbox.client() as client, pytest.raises(ServerError):
        client.customer_status()
    assert sandbox.control("GET", "stats").json()["requests"] == {"500": FAST_RETRY.max_attempts}

    sandbox.control("POST", "reset")
    with sandbox.client(api_key="rk_live_wrong") as client, pytest.raises(AuthError):
        client.customer_status()
    with sandbox.client() as client, pytest.raises(ValidationError):
        client.update_customer_wire({"name": "A", "email": "a@example.com",
                                     "purchase_count": -1})
    sandbox.control("POST", "faults", json={"reject_keys": {"a@example.com": "no"}})
    with sandbox.client() as client, pytest.raises(ValidationError):
        client.update_customer_wire({"name": "A", "email": "a@example.com"})
    assert sandbox.control("GET", "stats").json()["requests"] == {"401": 1, "400": 1}


def test_timeouts_and_resets_are_retried_then_typed(sandbox):
    sandbox.control("POST", "faults", json={"reset_rate": 1.0})
    with sandbox.client() as client, pytest.raises(TransportError):
        client.customer_status()
    sandbox.control("POST", "reset")
    sandbox.control("POST", "faults", json={"hang_rate": 1.0, "hang_seconds": 0.5})
    retry = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.01)
    with sandbox.client(timeout=(1.0, 0.2), retry=retry) as client:
        # A hang longer than the read timeout ends in a timeout, not in the late answer.
        with pytest.raises(TransportError, match="timed out"):
            client.customer_status()


def test_errors_carry_no_secret(sandbox):
    secret = "rk_live_do_not_leak_4e1f"
    with sandbox.client(api_key=secret) as client:
        with pytest.raises(AuthError) as caught:
            client.customer_status()
        assert secret not in str(caught.value) and secret not in repr(caught.value)
        assert secret not in repr(client) and secret not in repr(client.http.auth)
        assert secret not in str(caught.value.body)


def test_a_wrong_base_path_is_not_customer_not_found(sandbox):
    config = ConnectionConfig(sandbox.url + "/api/zapeir", {"api_key": API_KEY})
    with RekindleClient(config, retry=FAST_RETRY) as client:
        with pytest.raises(NotFound):
            client.find_customer("jane@example.com")


def test_an_answer_of_the_wrong_shape_is_refused(sandbox):
    sandbox.upsert({"name": "A", "email": "a@example.com"})
    with sandbox.client() as client:
        # The sandbox is the service: its answers hold. A bad one would raise FatalError.
        assert client.find_customer_wire("a@example.com")["email"] == "a@example.com"
        with pytest.raises(FatalError, match="unexpected customer-status answer"):
            client._hold(client_items(), [{"id": "x"}], "customer-status")


def client_items():
    from connectors.rekindle import wire
    return wire.CustomerItem(many=True)


def test_paces_itself_below_the_limit(make_sandbox):
    sandbox = make_sandbox(rate_scale=60)  # 60 s of the service's window is 1 s of ours
    with sandbox.client(time_scale=60) as client:
        for _ in range(150):
            client.customer_returned_wire()
    stats = sandbox.control("GET", "stats").json()["requests"]
    assert stats == {"200": 150}
    log = sandbox.control("GET", "requests-log").json()["timestamps"]
    assert max(sum(1 for t in log if start <= t < start + 60) for start in log) <= 120


@pytest.mark.redis
def test_two_clients_share_the_budget_in_redis(make_sandbox):
    url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis")
    sandbox = make_sandbox(rate_scale=60)
    prefix = f"rekindle-test-{os.getpid()}-{time.monotonic_ns()}"
    one = sandbox.client(time_scale=60, storage_uri=url, key_prefix=prefix)
    two = sandbox.client(time_scale=60, storage_uri=url, key_prefix=prefix)
    try:
        for _ in range(70):
            one.customer_returned_wire()
            two.customer_returned_wire()
    finally:
        one.close()
        two.close()
    assert sandbox.control("GET", "stats").json()["requests"] == {"200": 140}
