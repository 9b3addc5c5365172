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
from flask import Flask, jsonify, request

from connectors.base import Limit
from connectors.http import (
    AddressNotFound,
    AuthError,
    BearerAuth,
    ConfigurationError,
    Deadline,
    DeadlineExceeded,
    Decision,
    FatalError,
    ForeignOrigin,
    HeaderAuth,
    HttpClient,
    JsonApiCursorPaginator,
    NotFound,
    PageNumberPaginator,
    PaginationLoop,
    RateBudget,
    RateLimited,
    RecordRejected,
    Redirected,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationError,
    current_deadline,
    deadline_scope,
    decide,
    origin_of,
    paginate,
    parse_retry_after,
    same_origin,
)
from connectors.sandbox_kit import SandboxConfig, build_sandbox, start_sandbox
from gateway.crypto import CredentialsError
from gateway.money import MoneyError
from gateway.settings import SettingsError
from tests.connectors.conftest import max_in_window, set_faults

SECRET = "sk_live_" + "s3cr3t" * 4


def _limited(decision):
    response = jsonify({"error": "too many requests"})
    response.status_code = 429
    response.headers["Retry-After"] = str(decision.retry_after)
    return response


def _toy(limits=(), rate_scale=1.0):
    """A throwaway service: /echo answers 200, /status/<n> answers n, /jsonapi and /numbered
    paginate, /elsewhere names a next page of the caller's choosing, /redirect?to= redirects."""
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

    @app.get("/elsewhere")
    def elsewhere():  # a listing whose next page names another origin
        return jsonify({"data": [1], "links": {"next": request.args["next"]}})

    @app.get("/redirect")
    def redirect():
        return "", int(request.args.get("status", 302)), {"Location": request.args["to"]}

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


def _recorder():
    """Another origin that answers 200 to anything and remembers every request's headers."""
    app = Flask("foreign")
    app.config["seen"] = seen = []

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def anything(path):
        seen.append({"path": "/" + path, "headers": dict(request.headers)})
        return jsonify({"data": [], "links": {}})

    return app


@pytest.fixture
def foreign():
    """A server on another origin (another port of 127.0.0.1); ``foreign.seen`` its log."""
    server = start_sandbox(_recorder())
    server.seen = server.app.config["seen"]
    yield server
    server.stop()


def _client(url, **kw):
    kw.setdefault("retry", RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.02))
    return HttpClient("toy", url, BearerAuth(SECRET), SECRET, kw.pop("limits", []), **kw)


# ------------------------------------------------------------------------- error table


@pytest.mark.parametrize("status, kind, decision", [
    (429, RateLimited, Decision.RETRY), (500, ServerError, Decision.RETRY),
    (503, ServerError, Decision.RETRY), (408, TransportError, Decision.RETRY),
    (401, AuthError, Decision.FAIL), (403, AuthError, Decision.FAIL),
    (404, NotFound, Decision.DEAD_LETTER), (400, ValidationError, Decision.DEAD_LETTER),
    (422, ValidationError, Decision.DEAD_LETTER), (409, RecordRejected, Decision.DEAD_LETTER),
    (410, RecordRejected, Decision.DEAD_LETTER),
    # statuses that say nothing about a record: we are talking wrongly to the service
    (405, FatalError, Decision.FAIL), (413, FatalError, Decision.FAIL),
    (415, FatalError, Decision.FAIL),
])
def test_error_table(toy, status, kind, decision):
    with _client(toy.url, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(kind) as caught:
            client.request("GET", f"status/{status}")
    error = caught.value
    assert decide(error) is decision
    assert error.status == status and error.body["message"] == "nope"
    if decision is not Decision.DEAD_LETTER:
        assert not isinstance(error, RecordRejected)


@pytest.mark.parametrize("error, decision", [
    (TransportError("x", "reset"), Decision.RETRY),
    (DeadlineExceeded("x", "deadline"), Decision.RETRY),
    (requests.ConnectionError(), Decision.RETRY),
    (requests.Timeout(), Decision.RETRY),
    (ValidationError("x", "bad email", status=400), Decision.DEAD_LETTER),
    (NotFound("x", "no such order", status=404), Decision.DEAD_LETTER),
    (RecordRejected("x", "conflict", status=409), Decision.DEAD_LETTER),
    (AuthError("x", "bad key", status=401), Decision.FAIL),
    (AddressNotFound("x", "Tenant not found.", status=404), Decision.FAIL),
    (ConfigurationError("x", "options['tenant_id'] is required"), Decision.FAIL),
    (ForeignOrigin("x", "another host"), Decision.FAIL),
    (Redirected("x", "moved", status=301), Decision.FAIL),
    (PaginationLoop("x", "loop"), Decision.FAIL),
    (FatalError("x", "unexpected document", status=200), Decision.FAIL),
    # the gateway's own configuration errors are ValueErrors: never a record's fault
    (CredentialsError("stored credentials cannot be decrypted"), Decision.FAIL),
    (SettingsError("GATEWAY_SECRET_KEY is malformed"), Decision.FAIL),
    (MoneyError("unknown currency 'XXY'"), Decision.FAIL),
    (ValueError("bad amount"), Decision.FAIL),
    (TypeError("a bug"), Decision.FAIL),
    (KeyError("a bug"), Decision.FAIL),
    (RuntimeError(), Decision.FAIL),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None)
def test_only_a_services_answer_about_a_record_dead_letters_it(error, decision):
    assert decide(error) is decision


def test_an_address_404_is_still_a_not_found_and_a_configuration_error_a_value_error():
    # Code that catches NotFound (a client's "no such customer") or ValueError (a bad argument)
    # keeps working; only the table's answer differs.
    address = AddressNotFound.from_error(NotFound("x", "Tenant not found.", status=404,
                                                  body={"message": "Tenant not found."}))
    assert isinstance(address, NotFound) and address.status == 404
    assert address.body == {"message": "Tenant not found."}
    assert isinstance(ConfigurationError("x", "missing"), ValueError)


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
        paused = threading.Event()

        def first_sleep(seconds: float) -> None:
            # The first client sleeps only after its 429 came back and it paused the
            # credential: from here on the other client must hold back too.
            paused.set()
            time.sleep(seconds)

        first, second = _client(sandbox.url, sleep=first_sleep), _client(sandbox.url)
        results = []

        def other():
            assert paused.wait(30)
            results.append(second.json("GET", "echo"))

        thread = threading.Thread(target=other)
        thread.start()
        first.json("GET", "echo")
        thread.join(30)
        assert results == [{"data": [0, 1, 2]}]
        log = requests.get(f"{sandbox.url}/_sandbox/requests-log").json()["timestamps"]
        assert len(log) == 3
        assert min(log[1:]) - log[0] >= 1.0, log
        first.close()
        second.close()
    finally:
        sandbox.stop()


# ----------------------------------------------------------------- the credential's origin


def _requests_seen(sandbox) -> int:
    return len(requests.get(f"{sandbox.url}/_sandbox/requests-log").json()["timestamps"])


def test_origins_compare_scheme_host_and_port_with_default_ports_normalised():
    assert same_origin("http://EXAMPLE.com:80/a?b", "http://example.com/api")
    assert same_origin("https://example.com/x", "https://example.com:443/api/v1")
    assert not same_origin("https://example.com/x", "http://example.com/api")
    assert not same_origin("http://example.com:8080/x", "http://example.com/api")
    assert not same_origin("http://example.com.evil.test/x", "http://example.com/api")
    assert not same_origin("http://example.com:notaport/x", "http://example.com/api")
    assert str(origin_of("HTTPS://Example.com:443/p")) == "https://example.com"
    assert str(origin_of("http://127.0.0.1:8001/p")) == "http://127.0.0.1:8001"


@pytest.mark.parametrize("auth", ["bearer", "header"])
def test_no_credential_is_sent_to_another_origin(toy, foreign, auth):
    credential = (BearerAuth(SECRET) if auth == "bearer"
                  else HeaderAuth("x-replenit-auth-key", SECRET))
    host_port = foreign.url.split("://", 1)[1]
    with HttpClient("toy", toy.url, credential, SECRET, []) as client:
        for target in (f"{foreign.url}/steal", f"//{host_port}/steal",
                       f"HTTP://{host_port}/steal", toy.url.replace("http:", "https:") + "/echo"):
            with pytest.raises(ForeignOrigin) as caught:
                client.request("GET", target)
            assert decide(caught.value) is Decision.FAIL
            assert SECRET not in str(caught.value)
        # the same origin, absolute, is fine
        assert client.request("GET", f"{toy.url}/status/200").status_code == 200
    assert foreign.seen == []  # nothing was sent to the other origin at all
    assert _requests_seen(toy) == 1


def test_a_next_link_to_another_origin_is_refused_before_it_is_fetched(toy, foreign):
    with _client(toy.url) as client:
        walk = paginate(client, JsonApiCursorPaginator(
            "toy", "elsewhere", {"next": f"{foreign.url}/page2"}), lambda page: page["data"])
        assert next(walk) == 1
        with pytest.raises(ForeignOrigin):
            next(walk)
    assert foreign.seen == []


@pytest.mark.parametrize("auth", ["bearer", "header"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_and_carry_no_credential(toy, foreign, auth, status):
    credential = (BearerAuth(SECRET) if auth == "bearer"
                  else HeaderAuth("x-replenit-auth-key", SECRET))
    with HttpClient("toy", toy.url, credential, SECRET, [],
                    retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(Redirected) as caught:
            client.request("GET", "redirect",
                           params={"to": f"{foreign.url}/landing?token={SECRET}",
                                   "status": status})
    error = caught.value
    assert error.status == status and decide(error) is Decision.FAIL
    assert foreign.url in error.message and SECRET not in str(error)
    assert foreign.seen == []
    assert _requests_seen(toy) == 1  # not retried either


def test_a_redirect_within_the_origin_is_not_followed_either(toy):
    with _client(toy.url) as client, pytest.raises(Redirected):
        client.request("GET", "redirect", params={"to": "/echo"})
    assert _requests_seen(toy) == 1


def test_a_redirect_the_caller_expects_is_returned(toy):
    with _client(toy.url) as client:
        response = client.request("GET", "redirect", params={"to": "/echo"}, ok=(302,))
    assert response.status_code == 302 and response.headers["Location"] == "/echo"


# -------------------------------------------------------------------------------- deadlines


def _clocked(url, clock: FakeClock, **kw):
    """A client on a fake clock, with budget keys (windows, pauses) of its own: the other
    tests' pauses are instants on other clocks."""
    return _client(url, clock=clock, sleep=clock.sleep, key_prefix=f"test-{uuid.uuid4().hex}",
                   **kw)


def test_a_long_retry_after_fails_fast_with_deadline_exceeded(toy):
    set_faults(toy.url, burst_429=1, retry_after=3600)
    clock = FakeClock()
    with _clocked(toy.url, clock, retry=RetryPolicy(max_attempts=5, max_elapsed=1e6)) as client:
        with pytest.raises(DeadlineExceeded) as caught:
            client.request("GET", "echo", deadline=clock() + 30)
        assert clock.sleeps == []  # it never waited for the hour
        error = caught.value
        assert decide(error) is Decision.RETRY  # the record stays queued
        assert error.status == 429 and error.retry_after == pytest.approx(3600)
        assert isinstance(error.__cause__, RateLimited)
        assert _requests_seen(toy) == 1
        # The 429 paused the credential: the next send with a deadline does not even wait.
        with pytest.raises(DeadlineExceeded) as again:
            client.request("GET", "echo", deadline=Deadline.after(60, clock))
        assert again.value.retry_after == pytest.approx(3600)
    assert clock.sleeps == [] and _requests_seen(toy) == 1


def test_without_a_deadline_the_retry_after_is_honoured(toy):
    set_faults(toy.url, burst_429=1, retry_after=3600)
    clock = FakeClock()
    with _clocked(toy.url, clock, retry=RetryPolicy(max_attempts=5, max_elapsed=1e6)) as client:
        assert client.json("GET", "echo") == {"data": [0, 1, 2]}
    assert sum(clock.sleeps) >= 3600 and _requests_seen(toy) == 2


def test_a_deadline_already_past_sends_nothing(toy):
    clock = FakeClock()
    with _clocked(toy.url, clock) as client:
        with pytest.raises(DeadlineExceeded):
            client.request("GET", "echo", deadline=clock() - 1)
        with pytest.raises(DeadlineExceeded):
            list(paginate(client, JsonApiCursorPaginator("toy", "jsonapi"),
                          lambda page: page["data"], deadline=clock()))
    assert _requests_seen(toy) == 0 and clock.sleeps == []


def test_the_rate_budget_wait_stops_at_the_deadline(toy):
    clock = FakeClock()
    with _clocked(toy.url, clock, limits=[Limit(1, 60)], margin=0) as client:
        assert client.json("GET", "echo") == {"data": [0, 1, 2]}
        with pytest.raises(DeadlineExceeded) as caught:
            client.request("GET", "echo", deadline=clock() + 10)
        assert caught.value.retry_after == pytest.approx(60)
        assert "rate budget" in caught.value.message
        assert clock.sleeps == []
        # with room for the wait, it waits (on its clock) and sends
        assert client.json("GET", "echo", deadline=clock() + 120) == {"data": [0, 1, 2]}
        assert sum(clock.sleeps) == pytest.approx(60)
    assert _requests_seen(toy) == 2


def test_each_attempt_is_cut_off_at_the_time_left(toy):
    # The service takes 3 s to answer and the client would wait 30; only 0.2 s are left (the
    # fake clock stands still), so the attempt's read timeout is 0.2 s and it times out.
    set_faults(toy.url, hang_rate=1.0, hang_seconds=3)
    clock = FakeClock()
    with _clocked(toy.url, clock, timeout=(5.0, 30.0), retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(TransportError, match="timed out"):
            c.request("GET", "echo", deadline=clock() + 0.2)


def test_a_retry_that_would_end_after_the_deadline_is_not_tried(toy):
    set_faults(toy.url, error_rate=1.0, error_status=503)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=50, backoff_base=1.0, backoff_cap=4.0, max_elapsed=1e6,
                         rng=random.Random(3))
    with _clocked(toy.url, clock, retry=policy) as client:
        with pytest.raises(DeadlineExceeded) as caught:
            client.request("GET", "echo", deadline=clock() + 10)
    assert isinstance(caught.value.__cause__, ServerError) and caught.value.status == 503
    assert clock() <= 1000.0 + 10  # every wait it made ended before the deadline
    assert 1 < _requests_seen(toy) < 50


def test_deadline_scopes_nest_and_only_tighten():
    clock = FakeClock()
    assert current_deadline() is None
    with deadline_scope(clock() + 100, clock) as outer:
        assert current_deadline() is outer and outer.remaining() == 100
        with deadline_scope(clock() + 500, clock):
            assert current_deadline() is outer  # an inner scope cannot extend the outer one
        with deadline_scope(clock() + 5, clock) as inner:
            assert current_deadline() is inner and inner.remaining() == 5
        with deadline_scope(None):
            assert current_deadline() is outer
        assert current_deadline() is outer
    assert current_deadline() is None


def test_a_deadline_scope_bounds_every_request_inside_it(toy):
    set_faults(toy.url, burst_429=1, retry_after=3600)
    clock = FakeClock()
    with _clocked(toy.url, clock, retry=RetryPolicy(max_elapsed=1e6)) as client:
        with client.deadline(clock() + 30), pytest.raises(DeadlineExceeded):
            client.request("GET", "echo")
        assert current_deadline() is None
    assert clock.sleeps == []


def test_a_scope_does_not_reach_another_thread(toy):
    clock = FakeClock()
    results = []
    with _clocked(toy.url, clock) as client, client.deadline(clock() - 1):
        thread = threading.Thread(target=lambda: results.append(client.json("GET", "echo")))
        thread.start()
        thread.join(30)
    assert results == [{"data": [0, 1, 2]}]


def test_the_clients_default_deadline(toy):
    set_faults(toy.url, burst_429=1, retry_after=3600)
    clock = FakeClock()
    with _clocked(toy.url, clock, deadline_seconds=30,
                  retry=RetryPolicy(max_elapsed=1e6)) as client:
        with pytest.raises(DeadlineExceeded):
            client.request("GET", "echo")
    assert clock.sleeps == []


# ------------------------------------------------------------------------------- budget


def _surely_over(spans: list[tuple[float, float]], limit: int, seconds: float) -> bool:
    """True when more than ``limit`` admissions fall in one window however their instants lie
    within their spans: all of them began at or after some ``a`` and returned before
    ``a + seconds`` (the best ``a`` for a set is its earliest start, so trying every start is
    enough)."""
    return any(
        sum(1 for before, after in spans if before >= start and after < start + seconds) > limit
        for start, _ in spans
    )


class FakeClock:
    """Epoch seconds that move only when someone sleeps: what the budget, the retries and the
    deadlines of a client built with ``clock=fake, sleep=fake.sleep`` see."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def _admissions(budget: RateBudget, clock: FakeClock, n: int) -> list[float]:
    """The clock's reading at each of ``n`` sequential admissions."""
    times = []
    for _ in range(n):
        assert budget.acquire() is True
        times.append(clock())
    return times


def _budget(limits, clock: FakeClock, **kw) -> RateBudget:
    return RateBudget("toy", f"cred-{uuid.uuid4()}", limits, "memory://", clock=clock,
                      sleep=clock.sleep, **kw)


def test_budget_in_memory_never_exceeds_any_window_and_uses_all_of_it():
    clock = FakeClock()
    budget = _budget([Limit(5, 1), Limit(12, 3)], clock, time_scale=10, margin=0)
    times = _admissions(budget, clock, 40)
    # 1e-9 keeps float rounding of the clock's sums out of the window edges
    assert max_in_window(times, 0.1 - 1e-9) == 5
    assert max_in_window(times, 0.3 - 1e-9) == 12
    assert times[-1] - times[0] >= 0.9 - 1e-9  # 40 at 12 per 0.3 s: three windows at least
    assert clock.sleeps and all(wait > 0 for wait in clock.sleeps)


def test_the_window_check_catches_an_unlimited_budget():
    clock = FakeClock()
    times = _admissions(_budget([], clock), clock, 40)
    assert max_in_window(times, 0.1) == 40 and clock.sleeps == []


def test_budget_margin_widens_every_window():
    clock = FakeClock()
    budget = _budget([Limit(2, 1)], clock, margin=0.25)
    times = _admissions(budget, clock, 3)
    assert times[2] - times[0] == pytest.approx(1.25)


def test_budget_gives_up_at_once_when_the_wait_would_pass_the_deadline():
    clock = FakeClock()
    budget = _budget([Limit(1, 60)], clock, margin=0)
    assert budget.acquire() is True
    assert budget.wait() == pytest.approx(60)
    assert budget.acquire(within=10) is False
    assert clock.sleeps == [] and clock() == 1000.0  # it never waited
    assert budget.acquire(within=61) is True  # the wait fits: it waits, then takes the slot
    assert sum(clock.sleeps) == pytest.approx(60)
    assert budget.wait() == pytest.approx(60)  # and that slot is taken


def test_a_held_slot_leaves_the_window_a_length_after_its_request_ended():
    # The service counts a request when it arrives, somewhere between send and answer: a slot
    # that left the client's window a length after the send could leave before the service's.
    clock = FakeClock()
    budget = _budget([Limit(1, 1)], clock, margin=0)
    held = budget.hold(longest=30)
    clock.sleep(5)  # the request takes 5 s to be answered
    assert budget.wait() > 0  # in flight, it still counts
    held.release()
    assert budget.wait() == pytest.approx(1)  # a window after the answer, not after the send
    held.release()  # a second release changes nothing
    assert budget.wait() == pytest.approx(1)
    clock.sleep(1)
    lost = budget.hold(longest=30)  # never released: it leaves by longest + a window
    assert lost is not None and budget.wait() == pytest.approx(31)
    assert budget.hold(within=10) is None and budget.wait() == pytest.approx(31)


def test_budgets_of_one_credential_share_windows_in_memory():
    clock = FakeClock()
    credential = f"cred-{uuid.uuid4()}"
    one, two = (RateBudget("toy", credential, [Limit(3, 1)], "memory://", clock=clock,
                           sleep=clock.sleep, margin=0) for _ in range(2))
    times = [clock() for budget in (one, two, one, two) if budget.acquire()]
    assert max_in_window(times, 1 - 1e-9) == 3 and times[3] - times[0] == pytest.approx(1)


def test_pause_is_shared_through_the_storage():
    clock = FakeClock()
    credential = f"cred-{uuid.uuid4()}"
    one = RateBudget("toy", credential, [Limit(100, 1)], "memory://", clock=clock,
                     sleep=clock.sleep)
    two = RateBudget("toy", credential, [Limit(100, 1)], "memory://", clock=clock,
                     sleep=clock.sleep)
    started = clock()
    one.pause_until(started + 0.3)
    one.pause_until(started + 0.1)  # a shorter pause never shortens a longer one
    two.acquire()
    assert clock() >= started + 0.3  # the instant the pause ends, as the budget computes it
    assert sum(clock.sleeps) == pytest.approx(0.3)


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
