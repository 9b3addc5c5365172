"""The production RCI client against its sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import requests

from connectors.base import ConnectionConfig
from connectors.http import (
    AuthError,
    PaginationLoop,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
)
from connectors.rci import CONNECTOR, wire
from connectors.rci.client import CursorPaginator, InvalidResponse, RciClient
from connectors.rci.sandbox import BASE_PATH, create_sandbox
from connectors.sandbox_kit import SandboxConfig, start_sandbox
from gateway.model import Customer

FAST_RETRY = dict(max_attempts=3, backoff_base=0.01, backoff_cap=0.05, max_elapsed=10)


def client_for(base: str, key: str, **kw) -> RciClient:
    return RciClient(ConnectionConfig(base_url=base, credentials={"api_token": key}), **kw)


def post(sandbox, path: str, body: dict) -> None:
    r = requests.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=5)
    assert r.status_code == 200, r.text


def stats(sandbox) -> dict:
    return requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["requests"]


def test_spec_is_declared_as_data():
    assert CONNECTOR.name == "rci" and CONNECTOR.operations == {} and not CONNECTOR.writes
    assert CONNECTOR.reads == {"customers"}
    assert CONNECTOR.default_base_url.endswith(".com/api/v1")
    assert [(limit.requests, limit.seconds) for limit in CONNECTOR.limits] == [(60, 60)]
    assert CONNECTOR.credential_fields == ("api_token",)


def test_check_tells_a_good_token_from_a_bad_one(sandbox, base, api_key):
    with client_for(base, api_key) as good, client_for(base, "not-the-token") as bad:
        assert good.check().ok
        result = bad.check()
        assert not result.ok and "401" in result.detail and "not-the-token" not in result.detail
    assert stats(sandbox) == {"404": 1, "401": 1}  # one request each, no retry of a 401


def test_check_refuses_a_base_url_that_is_not_the_api(sandbox, api_key):
    with client_for(sandbox.url + "/api", api_key) as wrong:
        assert not wrong.check().ok


def test_walk_all_pages_whatever_the_page_size(sandbox, base, api_key):
    post(sandbox, "seed", {"customers": 230})
    post(sandbox, "page-size", {"size": 7})
    with client_for(base, api_key) as client:
        ids = [r["id"] for r in client.customers()]
    assert len(ids) == 230 == len(set(ids))
    assert stats(sandbox) == {"200": 33}  # ceil(230 / 7)


def test_walk_is_lazy(sandbox, base, api_key):
    post(sandbox, "seed", {"customers": 250})
    with client_for(base, api_key) as client:
        walk = client.customers()
        assert stats(sandbox) == {}
        first = next(walk)
        assert first["id"] == "cus_000000"
        assert stats(sandbox) == {"200": 1}
        walk.close()


def test_read_customers_gives_canonical_records_and_redactions(sandbox, base, api_key):
    post(sandbox, "seed", {"customers": 120})
    with client_for(base, api_key) as client:
        customers = list(client.read_customers())
    assert len(customers) == 120 and all(isinstance(c, Customer) for c in customers)
    redacted = [c for c in customers if c.redacted_at]
    assert redacted and all(c.email is None and c.lifetime_value is None for c in redacted)
    live = [c for c in customers if not c.redacted_at]
    assert all(c.email and c.lifetime_value.currency == "USD" for c in live)
    assert all(c.external_ids["rci"].startswith("cus_") for c in customers)


def test_customer_by_id(sandbox, base, api_key):
    resource = {
        "type": "customer",
        "id": "a/b c",
        "attributes": {a: None for a in wire.ATTRIBUTES}
        | {"created_at": "2020-01-01T00:00:00.000Z", "updated_at": "2020-01-01T00:00:00.000Z",
           "ltv_cents": 0, "ltv_currency": "EUR", "orders_count": 0, "segments": []},
    }
    post(sandbox, "seed", {"customers": 3, "records": [resource]})
    with client_for(base, api_key) as client:
        assert client.customer("cus_000001")["id"] == "cus_000001"
        assert client.customer("a/b c")["attributes"]["ltv_currency"] == "EUR"
        assert client.customer("nobody") is None


def test_memory_is_bounded_by_the_page_not_the_walk(sandbox, base, api_key):
    def peak(n: int) -> int:
        post(sandbox, "seed", {"customers": n})
        with client_for(base, api_key) as client:
            tracemalloc.start()
            count = sum(1 for _ in client.customers())
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert count == n
        return top

    small, large = peak(200), peak(2000)
    assert large < small * 1.5, (small, large)


def test_401_is_not_retried_and_carries_no_secret(sandbox, base):
    secret = "sk_very_secret_value"
    with client_for(base, secret) as client:
        with pytest.raises(AuthError) as info:
            list(client.customers())
    assert info.value.status == 401
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in repr(client.http.auth)
    assert stats(sandbox) == {"401": 1}


def test_429_is_retried_honouring_retry_after(sandbox, base, api_key):
    post(sandbox, "faults", {"burst_429": 2, "retry_after": 1})
    # time_scale 10: the client reads Retry-After as service seconds, a tenth of a wall second.
    with client_for(base, api_key, retry=RetryPolicy(**FAST_RETRY), time_scale=10) as client:
        started = time.monotonic()
        assert client.customer("cus_000000") is None
        assert time.monotonic() - started >= 0.19  # two waits of Retry-After: 1
    assert stats(sandbox) == {"429": 2, "404": 1}


def test_429_gives_up_after_the_policy(sandbox, base, api_key):
    post(sandbox, "faults", {"burst_429": 5, "retry_after": 0})
    with client_for(base, api_key, retry=RetryPolicy(**FAST_RETRY), time_scale=10) as client:
        with pytest.raises(RateLimited) as info:
            client.customer("x")
    assert info.value.body["errors"][0]["status"] == "429"
    assert stats(sandbox) == {"429": 3}


def test_5xx_is_retried_then_raised(sandbox, base, api_key):
    post(sandbox, "faults", {"error_rate": 1.0, "error_status": 503})
    with client_for(base, api_key, retry=RetryPolicy(**FAST_RETRY)) as client:
        with pytest.raises(ServerError):
            list(client.customers())
    assert stats(sandbox) == {"503": 3}


def test_resets_and_timeouts_are_transport_errors(sandbox, base, api_key):
    post(sandbox, "faults", {"reset_rate": 1.0})
    with client_for(base, api_key, retry=RetryPolicy(**FAST_RETRY)) as client:
        with pytest.raises(TransportError):
            client.customer("x")
    post(sandbox, "faults", {"reset_rate": 0.0, "hang_rate": 1.0, "hang_seconds": 1.0})
    with client_for(base, api_key, retry=RetryPolicy(**FAST_RETRY), timeout=(1.0, 0.2)) as client:
        with pytest.raises(TransportError):
            client.customer("x")


def test_proactive_rate_limit_no_429(api_key):
    """At 60x speed the 60/min window is one wall second: 90 requests, none refused."""
    app = create_sandbox(SandboxConfig(api_key=api_key, rate_scale=60))
    with start_sandbox(app) as running:
        with client_for(running.url + BASE_PATH, api_key, time_scale=60) as client:
            started = time.monotonic()
            for _ in range(90):
                client.customer("x")
            assert time.monotonic() - started >= 0.9
        assert stats(running) == {"404": 90}


@pytest.mark.redis
def test_budget_in_redis_is_shared_by_clients_of_one_credential(api_key):
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping()
    except Exception:  # pragma: no cover - no Redis here
        pytest.skip("no Redis at 127.0.0.1:6379")
    key = f"{api_key}_{time.time_ns()}"
    app = create_sandbox(SandboxConfig(api_key=key, rate_scale=60))
    with start_sandbox(app) as running:
        kw = dict(time_scale=60, storage_uri="redis://127.0.0.1:6379/0")
        with client_for(running.url + BASE_PATH, key, **kw) as one, \
                client_for(running.url + BASE_PATH, key, **kw) as two:
            for _ in range(45):
                one.customer("x")
                two.customer("x")
        assert stats(running) == {"404": 90}


def test_next_link_on_another_host_is_rebased_and_loops_are_caught():
    pager = CursorPaginator("http://127.0.0.1:1/api/v1")
    assert pager.first() == ("customers", {})
    page = {"links": {"next": "https://elsewhere.example/api/v1/customers?page%5Bcursor%5D=c1"}}
    assert pager.advance(page) == ("customers", {"page[cursor]": "c1"})
    assert pager.advance({"links": {"next": None}}) is None
    assert pager.advance({"links": {}}) is None
    with pytest.raises(PaginationLoop):
        pager.advance(page)
    with pytest.raises(InvalidResponse):
        pager.advance({"links": {"next": "https://elsewhere.example/api/v1/customers?p=2"}})


def test_a_document_off_the_reference_is_refused(base, api_key):
    with client_for(base, api_key) as client:
        bad = {"data": [{"type": "person", "id": "1"}], "links": {"first": base},
               "jsonapi": {"version": "1.0"}}
        with pytest.raises(InvalidResponse) as info:
            client._page_items(bad)
        assert "data.0.type" in str(info.value)
