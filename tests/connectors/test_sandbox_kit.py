"""The sandbox kit: sliding windows, the limiter, the clock, faults, stats, the common app."""

from __future__ import annotations

import pytest
import requests
from flask import Response, jsonify

from connectors.base import Limit
from connectors.sandbox_kit import (
    FaultPlan,
    RateLimiter,
    SandboxClock,
    SandboxConfig,
    SlidingWindow,
    Stats,
    build_sandbox,
    start_sandbox,
    synthetic_customers,
)
from tests.connectors.conftest import max_in_window


class FrozenClock(SandboxClock):
    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(1.0, start)
        self.t = start

    def now(self) -> float:
        return self.t


def test_sliding_window_is_exact_at_its_edge():
    window = SlidingWindow(2, 10)
    window.record(0.0)
    window.record(5.0)
    assert not window.has_room(9.999)
    assert window.free_at(9.999) == 10.0
    assert window.count(10.0) == 1  # the hit at 0 leaves at exactly 10 (window is (t-10, t])
    assert window.has_room(10.0)


def test_limiter_refuses_above_the_limit_and_counts_only_allowed_hits():
    clock = FrozenClock()
    limiter = RateLimiter([Limit(3, 60), Limit(5, 3600)], clock)
    assert [limiter.hit("k").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.hit("k")
    assert refused.retry_after == 60 and refused.remaining == 0 and refused.limit == 3
    assert limiter.hit("other").allowed  # per key
    clock.t += 60
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]
    hourly = limiter.hit("k")  # the hour window (5) is now the one in the way
    assert not hourly.allowed and hourly.limit == 5 and hourly.retry_after == 3600 - 60


def test_limiter_never_exceeds_any_window():
    clock = FrozenClock(0.0)
    limiter = RateLimiter([Limit(10, 7), Limit(25, 30)], clock)
    allowed = []
    for step in range(3000):
        clock.t = step * 0.037
        if limiter.hit("k").allowed:
            allowed.append(clock.t)
    assert max_in_window(allowed, 7) == 10
    assert max_in_window(allowed, 30) == 25


def test_clock_scales_and_advances():
    clock = SandboxClock(rate_scale=1000, start=0.0)
    first = clock.now()
    clock.advance(50)
    assert clock.now() - first >= 50
    assert clock.wall_seconds(60) == pytest.approx(0.06)
    with pytest.raises(ValueError):
        SandboxClock(rate_scale=0)


def test_fault_plan_validates_and_draws_reproducibly():
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.update({"error_rate": 2})
    with pytest.raises(ValueError):
        plan.update({"nonsense": 1})
    plan.update({"error_rate": 0.5, "seed": 42, "burst_429": 2})
    draws = [plan.draw(0.5) for _ in range(20)]
    plan.update({"seed": 42})
    assert [plan.draw(0.5) for _ in range(20)] == draws
    assert [plan.take_burst() for _ in range(3)] == [True, True, False]
    plan.update({"reject_keys": {"a@example.com": "blocked"}})
    assert plan.rejects("a@example.com") == "blocked" and plan.reject_keys
    plan.reset()
    assert plan.settings.error_rate == 0 and plan.rejects("a@example.com") is None


def test_stats_shape():
    stats = Stats()
    stats.count_request(200)
    stats.count_request(200)
    stats.count_request(429)
    assert stats.snapshot({"customers": 4}) == {
        "records": {"customers": 4}, "requests": {"200": 2, "429": 1}}


def test_synthetic_customers_are_deterministic_and_independent_of_n():
    three = list(synthetic_customers(3, seed=1))
    assert three == list(synthetic_customers(5, seed=1))[:3]
    many = list(synthetic_customers(200))
    assert len({c.email for c in many}) == 200
    assert any(c.redacted_at for c in many)
    assert {c.grade for c in many} <= set("ABCDF") and len({c.rfm for c in many}) > 10
    for person in many:
        assert person.ltv_cents == sum(order.total_cents for order in person.orders)


def _toy_app(config: SandboxConfig, **kwargs):
    records = {"things": {"a": {"id": "a"}}}

    def limited(decision) -> Response:
        response = jsonify({"error": "rate limited"})
        response.status_code = 429
        response.headers["Retry-After"] = str(decision.retry_after)
        return response

    app = build_sandbox(
        "toy", config,
        record_counts=lambda: {kind: len(items) for kind, items in records.items()},
        record_lookup=lambda kind, key: records.get(kind, {}).get(key),
        rate_limited=limited, **kwargs)

    @app.get("/api/thing")
    def thing():
        return jsonify({"ok": True})

    return app


@pytest.fixture
def toy():
    sandbox = start_sandbox(_toy_app(SandboxConfig(api_key="k", limits=(Limit(3, 60),)),
                                     rate_headers=True))
    yield sandbox
    sandbox.stop()


def test_app_limits_counts_and_serves_its_routes(toy):
    session = requests.Session()
    answers = [session.get(f"{toy.url}/api/thing", headers={"Authorization": "x"})
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    assert answers[3].headers["Retry-After"] == "60"
    stats = session.get(f"{toy.url}/_sandbox/stats").json()
    assert stats == {"records": {"things": 1}, "requests": {"200": 3, "429": 1}}
    log = session.get(f"{toy.url}/_sandbox/requests-log").json()
    assert len(log["timestamps"]) == 4 and log["limits"] == [{"requests": 3, "seconds": 60}]
    assert session.get(f"{toy.url}/_sandbox/records/things/a").json() == {"id": "a"}
    assert session.get(f"{toy.url}/_sandbox/records/things/b").status_code == 404
    session.post(f"{toy.url}/_sandbox/clock", json={"advance": 60})
    assert session.get(f"{toy.url}/api/thing", headers={"Authorization": "x"}).ok
    session.post(f"{toy.url}/_sandbox/reset")
    assert session.get(f"{toy.url}/_sandbox/stats").json()["requests"] == {}


def test_app_fault_knobs(toy):
    session = requests.Session()
    assert session.post(f"{toy.url}/_sandbox/faults", json={"error_rate": 7}).status_code == 400
    shown = session.post(f"{toy.url}/_sandbox/faults",
                         json={"error_rate": 1.0, "error_status": 503}).json()
    assert shown["error_rate"] == 1.0 and shown["error_status"] == 503
    assert session.get(f"{toy.url}/api/thing").status_code == 503
    session.post(f"{toy.url}/_sandbox/faults", json={"error_rate": 0.0, "burst_429": 1,
                                                    "retry_after": 7})
    burst = session.get(f"{toy.url}/api/thing")
    assert burst.status_code == 429 and burst.headers["Retry-After"] == "7"
    session.post(f"{toy.url}/_sandbox/faults", json={"reset_rate": 1.0})
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{toy.url}/api/thing", timeout=2)
    session.post(f"{toy.url}/_sandbox/faults", json={"reset_rate": 0.0, "hang_rate": 1.0,
                                                    "hang_seconds": 0.5})
    with pytest.raises(requests.Timeout):
        requests.get(f"{toy.url}/api/thing", timeout=(1, 0.2))
    session.post(f"{toy.url}/_sandbox/faults", json={"hang_rate": 0.0, "latency_ms": 50})
    assert session.get(f"{toy.url}/api/thing").elapsed.total_seconds() >= 0.05
    assert session.get(f"{toy.url}/_sandbox/stats").json()["requests"]["503"] == 1


def test_rate_limits_off_for_benchmarks():
    sandbox = start_sandbox(_toy_app(SandboxConfig(api_key="k", limits=(Limit(1, 60),),
                                                   rate_limits=False)))
    try:
        assert all(requests.get(f"{sandbox.url}/api/thing").ok for _ in range(5))
    finally:
        sandbox.stop()
