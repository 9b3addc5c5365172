"""The per-key limit: X-RateLimit-* on every authenticated answer (errors and the 429
included), none on a refused one, and a limiter whose state does not grow with the limit."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace

import pytest
import redis
from limits import RateLimitItemPerMinute

from gateway import create_app
from gateway.runtime import LocalSlidingWindowLimiter, Runtime
from gateway.store import db, keys

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture()
def isolated_runtime(runtime, settings):
    rt = Runtime.open(settings)
    yield rt
    rt.close()


def _limits(response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in HEADERS)


def test_a_success_carries_the_keys_budget(client, tenant):
    first = client.get("/api/v1/me", headers=tenant.auth)
    second = client.get("/api/v1/me", headers=tenant.auth)
    assert first.status_code == second.status_code == 200
    limit, remaining, reset = _limits(first)
    assert limit == 120 and remaining == 119 and 1 <= reset <= 60
    assert _limits(second)[:2] == (120, 118)


def test_errors_after_authentication_carry_the_headers_too(client, engine, tenant):
    with engine.begin() as conn:
        zapier = keys.create_key(conn, tenant.id, "zapier").api_key
    forbidden = client.get("/api/v1/settings", headers={"Authorization": f"Bearer {zapier}"})
    assert forbidden.status_code == 403 and _limits(forbidden)[:2] == (120, 119)
    invalid = client.patch("/api/v1/settings", headers=tenant.auth,
                           json={"default_gap_days": "soon"})
    assert invalid.status_code == 422 and _limits(invalid)[:2] == (120, 119)
    not_json = client.patch("/api/v1/settings", headers=tenant.auth, data="[1]",
                            content_type="application/json")
    assert not_json.status_code == 400 and _limits(not_json)[:2] == (120, 118)


def test_the_429_carries_them_with_retry_after(client, tenant):
    assert client.patch("/api/v1/settings", headers=tenant.auth,
                        json={"api_rate_limit_per_minute": 2}).status_code == 200
    statuses = [client.get("/api/v1/me", headers=tenant.auth) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert [_limits(r)[:2] for r in statuses] == [(2, 1), (2, 0), (2, 0)]
    limited = statuses[-1]
    assert limited.is_json and "2 requests per minute" in limited.json["error"]
    assert int(limited.headers["Retry-After"]) == _limits(limited)[2] >= 1


def test_refused_requests_carry_no_budget(client):
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert not any(name in response.headers for name in HEADERS)


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_in_memory_limiter_is_the_local_sliding_window(isolated_runtime):
    assert isinstance(isolated_runtime.api_limiter, LocalSlidingWindowLimiter)


def test_the_limiters_state_does_not_grow_with_the_limit():
    """A moving window keeps an entry per request in the window; this keeps two counts per
    key, however high the limit and however many requests."""
    limiter = LocalSlidingWindowLimiter(clock=FakeTime(6_000.0))
    item = RateLimitItemPerMinute(100_000)
    for _ in range(5_000):
        assert limiter.hit(item, "api-key", "key_a")
    assert len(limiter) == 1
    assert limiter.get_window_stats(item, "api-key", "key_a").remaining == 95_000


def test_the_sliding_window_weighs_the_previous_minute():
    clock = FakeTime(6_000.0)  # the start of a minute (6000 = 100 * 60)
    limiter = LocalSlidingWindowLimiter(clock=clock)
    item = RateLimitItemPerMinute(10)
    assert [limiter.hit(item, "k") for _ in range(11)] == [True] * 10 + [False]
    stats = limiter.get_window_stats(item, "k")
    assert stats.remaining == 0 and stats.reset_time == 6_060.0  # this minute's count ends
    clock.now = 6_060.0 + 15  # a quarter into the next minute: 3/4 of the 10 still count
    assert limiter.get_window_stats(item, "k").remaining == 3  # 10 - floor(7.5)
    assert [limiter.hit(item, "k") for _ in range(3)] == [True, True, True]
    assert limiter.hit(item, "k") is False
    assert limiter.test(item, "k") is False
    clock.now = 6_120.0 + 60  # two minutes on: nothing weighs any more
    assert limiter.test(item, "k") and limiter.get_window_stats(item, "k").remaining == 10


def test_idle_keys_are_swept():
    clock = FakeTime(6_000.0)
    limiter = LocalSlidingWindowLimiter(clock=clock)
    limiter.SWEEP_EVERY = 100
    item = RateLimitItemPerMinute(5)
    for i in range(99):
        limiter.hit(item, "address", str(i))
    assert len(limiter) == 99
    clock.now += 121  # both windows of all of them are over
    limiter.hit(item, "address", "new")  # the 100th new key sweeps
    assert len(limiter) == 1
    for i in range(50):  # test() and window stats do not store anything
        limiter.test(item, "address", f"probe{i}")
        limiter.get_window_stats(item, "address", f"probe{i}")
    assert len(limiter) == 1


def test_the_api_limiter_is_shared_through_redis_when_configured(settings):
    url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    shared = replace(settings, redis_url=url)
    one, two = (Runtime(settings=shared, engine=db.make_engine(shared.effective_database_url))
                for _ in range(2))
    item, key = RateLimitItemPerMinute(3), f"key_{secrets.token_hex(6)}"
    try:
        results = [rt.api_limiter.hit(item, "api-key", key) for rt in (one, two, one, two)]
        assert results == [True, True, True, False]
    finally:
        one.api_limiter.clear(item, "api-key", key)
        one.close()
        two.close()


def test_an_unreachable_redis_degrades_to_per_process_limits_not_500s(runtime, tenant):
    """With the shared store down, the API keeps answering (and keeps limiting, per process)."""
    from socket import socket

    with socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Runtime(settings=replace(runtime.settings, redis_url=f"redis://127.0.0.1:{port}/0"),
                   engine=runtime.engine)
    app = create_app(runtime=down)
    app.config["TESTING"] = True
    client = app.test_client()
    answers = [client.get("/api/v1/me", headers=tenant.auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [
        int(answers[0].headers["X-RateLimit-Limit"]) - n for n in (1, 2, 3)]
    refused = client.get("/api/v1/me", headers={"Authorization": "Bearer gk_live_nope"})
    assert refused.status_code == 401 and refused.is_json
