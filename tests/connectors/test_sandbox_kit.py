"""The sandbox kit: sliding windows, the limiter, the clock, faults, stats, the common app,
credentials, the bounded JSON body parser; and, for all four sandboxes, what the limiter keys on.
"""

from __future__ import annotations

import importlib
import json
import uuid
from decimal import Decimal

import pytest
import requests
from flask import Flask, Response, jsonify
from flask import request as flask_request

from connectors.base import Limit
from connectors.sandbox_kit import (
    BEARER,
    BodyError,
    FaultPlan,
    HeaderCredential,
    ManualClock,
    RateLimiter,
    SandboxClock,
    SandboxConfig,
    SlidingWindow,
    Stats,
    build_sandbox,
    parse_json_body,
    start_sandbox,
    synthetic_customers,
)
from tests.connectors.conftest import CASE_NAMES, load_case, max_in_window


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


def test_manual_clock_moves_only_when_advanced():
    clock = ManualClock(start=500.0)
    assert clock.now() == 500.0 == clock.now()
    clock.advance(60)
    assert clock.now() == 560.0


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
    sandbox = start_sandbox(_toy_app(SandboxConfig(api_key="k", limits=(Limit(3, 60),),
                                                   clock=ManualClock()),
                                     rate_headers=True))
    yield sandbox
    sandbox.stop()


def test_app_limits_counts_and_serves_its_routes(toy):
    session = requests.Session()
    answers = [session.get(f"{toy.url}/api/thing", headers={"Authorization": "Bearer k"})
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
    assert session.get(f"{toy.url}/api/thing", headers={"Authorization": "Bearer k"}).ok
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


# ---- credentials ------------------------------------------------------------------------------


def _read(credential: HeaderCredential, headers: dict[str, str]) -> str | None:
    with Flask("probe").test_request_context(headers=headers):
        return credential.read(flask_request)


@pytest.mark.parametrize("headers, presented", [
    ({"Authorization": "Bearer tok"}, "tok"),
    ({"Authorization": "bearer tok"}, "tok"),
    ({"Authorization": "BEARER tok"}, "tok"),
    ({"authorization": "Bearer   tok"}, "tok"),
    ({"Authorization": "Bearer"}, None),
    ({"Authorization": "Bearer a b"}, None),
    ({"Authorization": "Basic tok"}, None),
    ({"Authorization": "tok"}, None),
    ({"X-Api-Key": "tok", "Idempotency-Key": "tok"}, None),
    ({}, None),
])
def test_a_scheme_credential_is_the_key_after_its_scheme_in_any_case(headers, presented):
    assert _read(BEARER, headers) == presented


def test_a_header_credential_is_that_header_only():
    credential = HeaderCredential("x-replenit-auth-key")
    assert _read(credential, {"X-Replenit-Auth-Key": "k 1"}) == "k 1"
    assert _read(credential, {"x-replenit-auth-key": ""}) is None
    assert _read(credential, {"Authorization": "Bearer k", "X-Auth-Key": "k"}) is None
    assert credential.headers_for("k") == {"x-replenit-auth-key": "k"}
    assert BEARER.headers_for("k", "bearer") == {"Authorization": "bearer k"}


# ---- what the toy's limiter keys on --------------------------------------------------------------


@pytest.fixture
def frozen_toy(serve):
    """The toy at 3 requests a minute on a clock that never moves: no request can age out."""
    return serve(_toy_app(SandboxConfig(api_key="k", limits=(Limit(3, 60),),
                                        clock=ManualClock())))


def _statuses(url: str, header_sets: list[dict[str, str]]) -> list[int]:
    with requests.Session() as session:
        return [session.get(f"{url}/api/thing", headers=h, timeout=10).status_code
                for h in header_sets]


def test_toy_scheme_spellings_share_one_budget(frozen_toy):
    spellings = ["Bearer k", "bearer k", "BEARER k", "Bearer k"]
    assert _statuses(frozen_toy.url, [{"Authorization": a} for a in spellings]) == [
        200, 200, 200, 429]


def test_toy_other_headers_do_not_split_the_budget(frozen_toy):
    # The varying headers come first: a limiter that keyed on the first header "looking like" a
    # credential would key on them and let every request through.
    headers = [{"Idempotency-Key": uuid.uuid4().hex, "X-Foo-Key": uuid.uuid4().hex,
                "X-Auth-Whatever": uuid.uuid4().hex, "Authorization": "Bearer k"}
               for _ in range(4)]
    assert _statuses(frozen_toy.url, headers) == [200, 200, 200, 429]


def test_toy_requests_without_the_key_share_the_address_budget_not_the_keys(frozen_toy):
    wrong = [{"Authorization": f"Bearer wrong-{uuid.uuid4().hex}"} for _ in range(2)]
    anonymous = [{}, {"X-Api-Key": uuid.uuid4().hex}]
    # The toy answers 200 to all; only the limiter tells them apart.
    assert _statuses(frozen_toy.url, wrong + anonymous) == [200, 200, 200, 429]
    assert _statuses(frozen_toy.url, [{"Authorization": "Bearer k"}] * 4) == [200, 200, 200, 429]


# ---- the bounded body parser -------------------------------------------------------------------


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def test_parser_refuses_deep_nesting_before_it_recurses():
    for text in (_nested(1000), '{"a": ' * 1000 + "1" + "}" * 1000, _nested(100_000)):
        with pytest.raises(BodyError) as caught:
            parse_json_body(text.encode())
        assert caught.value.reason == BodyError.TOO_DEEP
        assert "64 levels" in str(caught.value)
    assert parse_json_body(_nested(64).encode()) == json.loads(_nested(64))
    # brackets inside strings are text, not nesting
    assert parse_json_body(json.dumps({"s": "[" * 1000}).encode()) == {"s": "[" * 1000}


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "[1e400]",
                                  '{"a": [-1e999]}'])
def test_parser_refuses_what_rfc_8259_cannot_write_back(text):
    with pytest.raises(BodyError) as caught:
        parse_json_body(text.encode())
    assert caught.value.reason == BodyError.NOT_FINITE


def test_parser_exact_mode_reads_decimals_and_still_refuses_constants():
    assert parse_json_body(b'{"a": 19.99, "b": 1e400, "c": 3}', exact=True) == {
        "a": Decimal("19.99"), "b": Decimal("1e400"), "c": 3}
    with pytest.raises(BodyError):
        parse_json_body(b'{"a": NaN}', exact=True)


@pytest.mark.parametrize("data", [b"", b"{nope", b'"\xff', b"\xff\xfe{}", b"[1,]",
                                  b"1" * 5000])
def test_parser_says_what_is_not_json(data):
    with pytest.raises(BodyError) as caught:
        parse_json_body(data)
    assert caught.value.reason == BodyError.INVALID and str(caught.value)


def test_kit_routes_answer_deep_or_non_finite_json_with_a_json_400(toy):
    for body in (_nested(1000), '{"advance": NaN}', '{"advance": 1e400}'):
        for route in ("faults", "clock"):
            response = requests.post(f"{toy.url}/_sandbox/{route}", data=body, timeout=10,
                                     headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (route, body[:20], response.text[:200])
            assert "error" in response.json()


# ---- all four sandboxes: the limit is on the service's credential and nothing else ----------


#: A cheap request each service answers 200 with the right key (paths from the sandbox root).
PROBES = {
    "rekindle": ("GET", "/api/zapier/triggers/customer-returned", None),
    "rejoiner": ("GET", "/api/v1/{site}/ping/", None),
    "rci": ("GET", "/api/v1/customers", None),
    "replenit": ("POST", "/customers/{tenant}", []),
}


class Service:
    """One connector's sandbox at 3 requests a minute on a frozen clock, served on 127.0.0.1."""

    def __init__(self, name: str, serve) -> None:
        self.name = name
        module = importlib.import_module(f"connectors.{name}.sandbox")
        self.spec = module.SANDBOX
        self.config = load_case(name).sandbox_config(limits=(Limit(3, 60),),
                                                     clock=ManualClock())
        self.running = serve(self.spec.create(self.config))
        method, path, self.body = PROBES[name]
        self.method = method
        self.url = self.running.url + path.format(site=self.config.site_id,
                                                  tenant=self.config.tenant_id)

    def key_headers(self, spelling: int = 0) -> dict[str, str]:
        """The right key, its scheme (or, without one, its header name) spelled three ways."""
        credential = self.spec.credential
        styles = (str, str.lower, str.upper)
        if credential.scheme is None:
            return {styles[spelling % 3](credential.header): self.config.api_key}
        return credential.headers_for(self.config.api_key,
                                      styles[spelling % 3](credential.scheme))

    def statuses(self, header_sets: list[dict[str, str]]) -> list[int]:
        with requests.Session() as session:
            return [session.request(self.method, self.url, json=self.body, headers=h,
                                    timeout=10).status_code for h in header_sets]


@pytest.fixture(params=CASE_NAMES)
def service(request, serve) -> Service:
    return Service(request.param, serve)


def test_every_spelling_of_the_credential_is_one_budget(service):
    assert service.statuses([service.key_headers(i) for i in range(4)]) == [200, 200, 200, 429]


def test_other_varying_headers_do_not_evade_the_limit(service):
    def varying() -> dict[str, str]:
        return {"Idempotency-Key": uuid.uuid4().hex, "X-Foo-Key": uuid.uuid4().hex,
                "X-Auth-Whatever": uuid.uuid4().hex, **service.key_headers()}

    assert service.statuses([varying() for _ in range(4)]) == [200, 200, 200, 429]


def test_wrong_keys_share_one_budget_and_leave_the_keys_alone(service):
    credential = service.spec.credential
    wrong = [credential.headers_for(f"wrong-{uuid.uuid4().hex}") for _ in range(3)]
    refused = service.statuses(wrong + [{}])
    assert refused[:3] == [401, 401, 401] and refused[3] == 429
    assert service.statuses([service.key_headers()] * 4) == [200, 200, 200, 429]
