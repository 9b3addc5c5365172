"""The HTTP core against tiny throwaway sandboxes over real HTTP on 127.0.0.1."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests
from flask import jsonify, request

from connectors.base import Limit
from connectors.http import (
    AuthError,
    BearerAuth,
    Decision,
    FatalError,
    HeaderAuth,
    HttpClient,
    JsonApiCursorPaginator,
    NotFound,
    PageNumberPaginator,
    PaginationLoop,
    RateBudget,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
    decide,
    paginate,
    parse_retry_after,
)
from connectors.sandbox_kit import SandboxConfig, build_sandbox, start_sandbox
from tests.connectors.conftest import set_faults

SECRET = "sk_live_" + "s3cr3t" * 4


def _limited(decision):
    response = jsonify({"error": "too many requests"})
    response.status_code = 429
    response.headers["Retry-After"] = str(decision.retry_after)
    return response


def _toy(limits=(), rate_scale=1.0):
    """A throwaway service: /echo answers 200, /status/<n> answers n, /pages/<kind> paginates."""
    app = build_sandbox("toy", SandboxConfig(api_key=SECRET, limits=tuple(limits),
                                             rate_scale=rate_scale),
                        record_counts=dict, record_lookup=lambda k, key: None,
                        rate_limited=_limited)

    @app.get("/echo")
    def echo():
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            return jsonify({"error": f"bad key {request.headers.get('Authorization')}"}), 401
        return jsonify({"data": list(range(3))})

    @app.route("/status/<int:code>", methods=["GET", "POST"])
    def status(code):
        body = {"message": "nope", "errors": {"[1].Email": ["invalid"], "[3]": ["bad"]}}
        return jsonify(body), code

    @app.get("/jsonapi")
    def jsonapi():
        after = int(request.args.get("after", 0))
        loop = request.args.get("loop")
        items = list(range(after, min(after + 10, 35)))
        links = {}
        if after + 10 < 35:
            links["next"] = f"/jsonapi?after={0 if loop else after + 10}" + ("&loop=1" if loop
                                                                               else "")
        return jsonify({"data": items, "links": links})

    @app.get("/numbered")
    def numbered():
        page = int(request.args["page"])
        last = 3
        return jsonify({"count": 25, "results": list(range((page - 1) * 10, min(page * 10, 25))),
                        "next": f"x?page={page + 1}" if page < last else None,
                        "previous": None})

    return app


@pytest.fixture
def toy():
    sandbox = start_sandbox(_toy())
    yield sandbox
    sandbox.stop()


def _client(url, **kw):
    kw.setdefault("retry", RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.02))
    return HttpClient("toy", url, BearerAuth(SECRET), SECRET, kw.pop("limits", []), **kw)


# ------------------------------------------------------------------------- error table


@pytest.mark.parametrize("status, kind, decision", [
    (429, RateLimited, Decision.RETRY), (500, ServerError, Decision.RETRY),
    (503, ServerError, Decision.RETRY), (401, AuthError, Decision.FAIL),
    (403, AuthError, Decision.FAIL), (404, NotFound, Decision.DEAD_LETTER),
    (400, ValidationError, Decision.DEAD_LETTER), (422, ValidationError, Decision.DEAD_LETTER),
    (409, FatalError, Decision.DEAD_LETTER),
])
def test_error_table(toy, status, kind, decision):
    with _client(toy.url, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(kind) as caught:
            client.request("GET", f"status/{status}")
    error = caught.value
    assert decide(error) is decision
    assert error.status == status and error.body["message"] == "nope"


def test_decide_covers_transport_and_mapping_errors():
    assert decide(TransportError("x", "reset")) is Decision.RETRY
    assert decide(requests.ConnectionError()) is Decision.RETRY
    assert decide(ValueError("bad amount")) is Decision.DEAD_LETTER
    assert decide(PaginationLoop("x", "loop")) is Decision.FAIL
    assert decide(RuntimeError()) is Decision.FAIL


def test_validation_error_groups_by_record(toy):
    with _client(toy.url) as client, pytest.raises(ValidationError) as caught:
        client.request("POST", "status/400", json=[{}, {}])
    assert caught.value.field_errors == {"[1].Email": ["invalid"], "[3]": ["bad"]}
    assert caught.value.by_record == {1: {"Email": ["invalid"]}, 3: {"": ["bad"]}}


def test_errors_never_carry_the_secret(toy):
    with _client(toy.url, retry=RetryPolicy(max_attempts=1)):
        wrong = HttpClient("toy", toy.url, BearerAuth(SECRET + "x"), SECRET + "x", [])
        with pytest.raises(AuthError) as caught:
            wrong.json("GET", "echo")  # the toy echoes the presented key back
        wrong.close()
    error = caught.value
    for text in (str(error), repr(error), repr(error.args), repr(error.body), error.message):
        assert SECRET not in text
    assert SECRET not in repr(BearerAuth(SECRET)) and SECRET not in str(BearerAuth(SECRET))
    assert SECRET not in repr(HeaderAuth("x-replenit-auth-key", SECRET))
    assert SECRET not in repr(RateBudget("toy", SECRET, [Limit(1, 1)]))


# -------------------------------------------------------------------------- retry-after


def test_parse_retry_after_seconds_and_dates():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True),
                             now) == 90.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("") is None


def test_backoff_has_full_jitter_within_bounds_and_respects_retry_after():
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0, rng=random.Random(1))
    for attempt in range(1, 10):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        draws = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2
    assert all(policy.delay(1, 7.0) >= 7.0 for _ in range(50))


# ------------------------------------------------------------------------------ retries


@pytest.mark.parametrize("faults", [
    {"error_rate": 0.3, "error_status": 503, "seed": 4},
    {"reset_rate": 0.3, "seed": 4},
    {"hang_rate": 0.3, "hang_seconds": 0.5, "seed": 4},
    {"burst_429": 2, "retry_after": 0},
], ids=["5xx", "reset", "timeout", "429"])
def test_retriable_failures_are_retried_and_data_arrives(toy, faults):
    set_faults(toy.url, **faults)
    with _client(toy.url, timeout=(1.0, 0.25),
                 retry=RetryPolicy(max_attempts=6, backoff_base=0.01, backoff_cap=0.02)) as c:
        assert [c.json("GET", "echo") for _ in range(3)] == [{"data": [0, 1, 2]}] * 3
    arrivals = requests.get(f"{toy.url}/_sandbox/requests-log").json()["timestamps"]
    assert len(arrivals) == 3 + _failures_before(3, faults)


def _failures_before(successes: int, faults: dict) -> int:
    """How many requests the sandbox's seeded draws fail before ``successes`` pass."""
    if "burst_429" in faults:
        return faults["burst_429"]
    rate = next(v for k, v in faults.items() if k.endswith("_rate"))
    draws, failures = random.Random(faults["seed"]), 0
    while successes:
        if draws.random() < rate:
            failures += 1
        else:
            successes -= 1
    return failures


def test_client_errors_are_not_retried(toy):
    with _client(toy.url) as client, pytest.raises(ValidationError):
        client.request("POST", "status/400", json=[])
    stats = requests.get(f"{toy.url}/_sandbox/stats").json()
    assert stats["requests"] == {"400": 1}


def test_gives_up_after_max_attempts(toy):
    set_faults(toy.url, error_rate=1.0)
    with _client(toy.url) as client, pytest.raises(ServerError):
        client.request("GET", "echo")
    assert requests.get(f"{toy.url}/_sandbox/stats").json()["requests"] == {"500": 4}


def test_after_a_429_no_client_of_the_credential_sends_until_retry_after():
    sandbox = start_sandbox(_toy(limits=[Limit(1000, 1)], rate_scale=1.0))
    try:
        set_faults(sandbox.url, burst_429=1, retry_after=1)
        first, second = _client(sandbox.url), _client(sandbox.url)
        results = []
        started = threading.Event()

        def other():
            started.wait()
            time.sleep(0.1)  # well inside the pause
            results.append(second.json("GET", "echo"))

        thread = threading.Thread(target=other)
        thread.start()
        started.set()
        first.json("GET", "echo")
        thread.join(10)
        assert results == [{"data": [0, 1, 2]}]
        log = requests.get(f"{sandbox.url}/_sandbox/requests-log").json()["timestamps"]
        assert len(log) == 3
        assert min(log[1:]) - log[0] >= 1.0, log
        first.close()
        second.close()
    finally:
        sandbox.stop()


# ------------------------------------------------------------------------------- budget


def _paced(budget: RateBudget, n: int) -> list[tuple[float, float]]:
    """When each of ``n`` sequential acquisitions began and returned: the budget admitted the
    request somewhere in between (a busy machine may pause the thread on either side)."""
    spans = []
    for _ in range(n):
        before = time.time()
        budget.acquire()
        spans.append((before, time.time()))
    return spans


def _surely_over(spans: list[tuple[float, float]], limit: int, seconds: float) -> bool:
    """True when more than ``limit`` admissions fall in one window however their instants lie
    within their spans: all of them began at or after some ``a`` and returned before
    ``a + seconds`` (the best ``a`` for a set is its earliest start, so trying every start is
    enough)."""
    return any(
        sum(1 for before, after in spans if before >= start and after < start + seconds) > limit
        for start, _ in spans
    )


def test_budget_in_memory_never_exceeds_any_window():
    budget = RateBudget("toy", f"cred-{uuid.uuid4()}", [Limit(5, 1), Limit(12, 3)],
                        "memory://", time_scale=10, margin=0)
    spans = _paced(budget, 40)
    assert not _surely_over(spans, 5, 0.1)
    assert not _surely_over(spans, 12, 0.3)
    assert spans[-1][1] - spans[0][0] >= 0.9  # 40 requests at 12 per 0.3 s take about a second


def test_the_window_check_catches_an_unlimited_budget():
    unlimited = RateBudget("toy", f"cred-{uuid.uuid4()}", [], "memory://")
    assert _surely_over(_paced(unlimited, 40), 5, 0.1)


def test_budget_windows_must_be_whole_seconds_in_redis(redis_url):
    with pytest.raises(ValueError, match="whole seconds"):
        RateBudget("toy", "c", [Limit(120, 60)], redis_url, time_scale=7)


def test_budget_in_redis_is_shared_by_two_processes(redis_url):
    script = textwrap.dedent("""
        import sys, time
        from connectors.base import Limit
        from connectors.http import RateBudget
        budget = RateBudget("toy", "shared-credential", [Limit(4, 60)], sys.argv[1],
                            time_scale=60, margin=0, key_prefix=sys.argv[2])
        time.sleep(max(0, float(sys.argv[3]) - time.time()))
        for _ in range(10):
            before = time.time()
            budget.acquire()
            print(before, time.time(), flush=True)
    """)
    prefix, start_at = f"test-{uuid.uuid4().hex}", time.time() + 1.5
    processes = [subprocess.Popen([sys.executable, "-c", script, redis_url, prefix,
                                   str(start_at)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    spans = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        spans += [tuple(map(float, line.split())) for line in out.splitlines()]
    assert len(spans) == 20
    # Without the shared budget a window would surely hold 8.
    assert not _surely_over(spans, 4, 1.0)
    assert max(a for _, a in spans) - min(b for b, _ in spans) >= 4.0  # 20 at 4 a second


def test_pause_is_shared_through_the_storage():
    credential = f"cred-{uuid.uuid4()}"
    one = RateBudget("toy", credential, [Limit(100, 1)], "memory://")
    two = RateBudget("toy", credential, [Limit(100, 1)], "memory://")
    one.pause_until(time.time() + 0.3)
    started = time.time()
    two.acquire()
    assert time.time() - started >= 0.25


def test_pause_is_shared_through_redis(redis_url):
    credential = f"cred-{uuid.uuid4()}"
    one = RateBudget("toy", credential, [Limit(100, 1)], redis_url)
    two = RateBudget("toy", credential, [Limit(100, 1)], redis_url)
    one.pause_until(time.time() + 0.3)
    one.pause_until(time.time() + 0.1)  # a shorter pause never shortens a longer one
    started = time.time()
    two.acquire()
    assert time.time() - started >= 0.25


# ---------------------------------------------------------------------------- paginators


def test_jsonapi_cursor_walk_and_loop_detection(toy):
    with _client(toy.url) as client:
        items = list(paginate(client, JsonApiCursorPaginator("toy", "jsonapi"),
                              lambda page: page["data"]))
        assert items == list(range(35))
        with pytest.raises(PaginationLoop):
            list(paginate(client, JsonApiCursorPaginator("toy", "jsonapi", {"loop": "1"}),
                          lambda page: page["data"]))


def test_page_number_walk_and_loop_detection(toy):
    with _client(toy.url) as client:
        items = list(paginate(client, PageNumberPaginator("toy", "numbered"),
                              lambda page: page["results"]))
        assert items == list(range(25))
    paginator = PageNumberPaginator("toy", "numbered")
    paginator.first()
    assert paginator.advance({"results": [1], "next": "a"}) == ("numbered", {"page": 2})
    with pytest.raises(PaginationLoop):
        paginator.advance({"results": [1], "next": "a"})
    with pytest.raises(PaginationLoop):
        paginator.advance({"results": [], "next": "b"})


@pytest.mark.parametrize("lead_in, cycle", [(0, 1), (0, 2), (3, 1), (5, 7), (100, 333)])
def test_loop_detector_finds_any_cycle_in_constant_memory(lead_in, cycle):
    from connectors.http import LoopDetector

    links = [f"lead-{i}" for i in range(lead_in)] + [f"cyc-{i}" for i in range(cycle)] * 10
    detector = LoopDetector()
    found_at = next((i for i, link in enumerate(links) if detector.seen_again(link)), None)
    assert found_at is not None and found_at <= 2 * (lead_in + cycle) + cycle
    assert found_at >= lead_in + cycle  # never before the cycle has really begun


def test_loop_detector_never_flags_distinct_links():
    from connectors.http import LoopDetector

    detector = LoopDetector()
    assert not any(detector.seen_again(f"cursor-{i}") for i in range(20_000))
