"""One contract suite, run for all four connectors through their production clients.

Each case (``tests/connectors/cases/<name>.py``) starts nothing itself: the suite serves the
connector's sandbox on 127.0.0.1 and talks to it over real HTTP.

The rate-limit contract: a client whose ``time_scale`` matches the sandbox's ``rate_scale`` sends
:data:`RUNS` requests flat out; the sandbox logs the service-clock arrival time of every request
(``GET /_sandbox/requests-log``), and no window of any documented limit, at any position, may
hold more than the limit, and no 429 may be served (docs/connector-kit.md, "Decisions made while
building the kit").

Nothing here asserts how fast anything ran: a run is a number of requests, never a span of wall
time, so a busy machine makes it take longer, never test less. Throughput is measured in
``bench/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.http import AuthError, ConnectorError, RetryPolicy
from tests.connectors.conftest import (
    fast_retry,
    max_in_window,
    reset_sandbox,
    sandbox_log,
    sandbox_stats,
    set_faults,
)

ROOT = Path(__file__).resolve().parents[2]

#: How many requests each connector's flat-out run sends: ten times its tightest client window
#: (Rekindle 120 a minute, RCI 60 a minute, Replenit 100 a minute, Rejoiner 5 a second), so the
#: client's own budget must hold it back about ten times; the run takes as long as that takes.
RUNS = {"rekindle": 1200, "rci": 600, "replenit": 1000, "rejoiner": 200}
#: The service clock's speed-up for each run: the tightest window stays a few hundred
#: milliseconds of wall time or more, well above the client's margin for network delay.
SCALES = {"rekindle": 120, "rci": 120, "replenit": 300, "rejoiner": 20}
#: Scales for the two-process Redis run: every window a whole number of wall seconds.
REDIS_SCALES = {"rekindle": 30, "rci": 30, "replenit": 30, "rejoiner": 1}
#: Requests each of the two processes sends: together, twice the tightest documented window.
REDIS_RUNS = {"rekindle": 120, "rci": 60, "replenit": 100, "rejoiner": 10}


def _key(item: Any) -> Any:
    for attribute in ("id", "customer_id", "email"):
        value = getattr(item, attribute, None)
        if value is not None:
            return value
    if isinstance(item, dict):
        for attribute in ("id", "customer_id", "email"):
            if item.get(attribute) is not None:
                return item[attribute]
    return repr(item)


# ------------------------------------------------------------------------------- auth


def test_check_with_right_and_wrong_key(case, start_case_sandbox, closing):
    sandbox = start_case_sandbox(case)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    result = client.check()
    assert result.ok, result.detail

    secret = "wrong-key-" + uuid.uuid4().hex
    bad = closing(case.make_client(sandbox.url, api_key=secret, retry=fast_retry()))
    try:
        outcome = bad.check()
    except AuthError as exc:
        _assert_no_secret(exc, secret)
    else:
        assert not outcome.ok
        assert secret not in outcome.detail
    with pytest.raises(AuthError) as caught:
        case.one_request(bad)
    _assert_no_secret(caught.value, secret)
    assert sandbox_stats(sandbox.url)["requests"].get("401", 0) + sandbox_stats(
        sandbox.url)["requests"].get("403", 0) >= 1


def _assert_no_secret(error: ConnectorError, secret: str) -> None:
    for text in (str(error), repr(error), repr(error.args), json.dumps(error.body, default=str)):
        assert secret not in text


# ------------------------------------------------------------------------------ writes


def test_write_mixed_rejects_exactly_the_bad_records(case, start_case_sandbox, closing):
    if not case.writes:
        pytest.skip(f"{case.name} is read only")
    sandbox = start_case_sandbox(case)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    result, bad = case.write_mixed(client)
    assert bad, "write_mixed must include at least one invalid record"
    assert set(result.rejected) == bad
    assert result.accepted >= 1
    for index in bad:
        assert result.rejected[index], f"record {index} rejected without a message"


def test_validation_errors_are_not_retried(case, start_case_sandbox, closing):
    if not case.writes:
        pytest.skip(f"{case.name} is read only")
    sandbox = start_case_sandbox(case)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    reset_sandbox(sandbox.url)
    _, bad = case.write_mixed(client)
    requests_by_status = sandbox_stats(sandbox.url)["requests"]
    rejected = requests_by_status.get("400", 0) + requests_by_status.get("422", 0)
    # A batch service answers one 400 for the batch, a per-record one one 400 per bad record,
    # and a client that validates before sending sends none; a retried 400 would add more.
    assert rejected in {0, 1, len(bad)}, requests_by_status
    assert set(requests_by_status) <= {"200", "201", "202", "204", "400", "422"}


def test_upsert_is_idempotent(case, start_case_sandbox, closing):
    if not case.writes:
        pytest.skip(f"{case.name} is read only")
    sandbox = start_case_sandbox(case)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    keys = case.write_valid(client, 3)
    first = {key: case.read_back(client, sandbox.url, key) for key in keys}
    records = sandbox_stats(sandbox.url)["records"]
    assert all(value is not None for value in first.values())

    again = case.write_valid(client, 3)
    assert again == keys
    assert sandbox_stats(sandbox.url)["records"] == records
    for key in keys:  # the same record; a field stamped on each write only moves on
        now, before = case.read_back(client, sandbox.url, key), first[key]
        if case.stamped:
            assert all(now[k] >= before[k] for k in case.stamped)
            now, before = ({k: v for k, v in record.items() if k not in case.stamped}
                           for record in (now, before))
        assert now == before


def test_delete(case, start_case_sandbox, closing):
    if not case.deletes:
        pytest.skip(f"{case.name} has no delete")
    sandbox = start_case_sandbox(case)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    gone, kept = case.write_valid(client, 2)
    case.delete(client, gone)
    # The sandboxes apply a delete before they answer it (Replenit's, asynchronous at the
    # service, included: see its sandbox's docstring), so there is nothing to wait for.
    assert case.read_back(client, sandbox.url, gone) is None, f"{gone} still there after delete"
    assert case.read_back(client, sandbox.url, kept) is not None


# -------------------------------------------------------------------------- pagination


def test_pagination_walks_every_record_once(case, start_case_sandbox, closing):
    if not case.paginates:
        pytest.skip(f"{case.name} has no paginated listing")
    sandbox = start_case_sandbox(case, rate_limits=False)
    client = closing(case.make_client(sandbox.url, retry=fast_retry()))
    case.seed(sandbox.url, 250)
    keys = [_key(item) for item in case.walk(client)]
    assert len(keys) == 250
    assert len(set(keys)) == 250
    assert sandbox_stats(sandbox.url)["requests"].get("200", 0) >= 2  # really more than a page


# ----------------------------------------------------------------------------- fixtures


def test_fixtures_exist_and_parse(case):
    files = sorted(Path(case.fixtures).glob("**/*.json"))
    assert files, f"{case.fixtures} holds no JSON fixtures"
    for path in files:
        json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "faults",
    [
        # seed 4 draws 0.24, 0.10, 0.40, ...: the first two requests fail, then it may pass
        {"error_rate": 0.3, "seed": 4},
        {"reset_rate": 0.3, "seed": 4},
        {"hang_rate": 0.3, "hang_seconds": 0.6, "seed": 4},
        {"burst_429": 2, "retry_after": 1},
    ],
    ids=["errors", "resets", "hangs", "burst429"],
)
def test_faults_are_retried(case, start_case_sandbox, closing, faults):
    sandbox = start_case_sandbox(case, rate_scale=20)
    retry = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_cap=0.05, max_elapsed=30)
    client = closing(case.make_client(sandbox.url, retry=retry, timeout=(2.0, 0.3),
                                      time_scale=20))
    set_faults(sandbox.url, **faults)
    for _ in range(3):
        case.one_request(client)
    answered = sandbox_stats(sandbox.url)["requests"]
    arrivals = len(sandbox_log(sandbox.url)["timestamps"])
    assert arrivals >= 3 + 2, (answered, arrivals)  # the two faults were retried


def test_after_an_injected_429_nothing_is_sent_until_retry_after(case, start_case_sandbox,
                                                                 closing):
    scale = 10
    sandbox = start_case_sandbox(case, rate_scale=scale)
    client = closing(case.make_client(sandbox.url, retry=fast_retry(), time_scale=scale))
    set_faults(sandbox.url, burst_429=1, retry_after=10)  # 10 service seconds = 1 s wall
    case.one_request(client)
    case.one_request(client)
    log = sandbox_log(sandbox.url)["timestamps"]
    assert sandbox_stats(sandbox.url)["requests"].get("429") == 1
    assert len(log) >= 2
    assert log[1] - log[0] >= 10, log[:3]


# --------------------------------------------------------------------------- rate limits


@pytest.mark.slow
def test_flat_out_run_stays_within_every_documented_window(case, start_case_sandbox, closing):
    scale, runs = SCALES[case.name], RUNS[case.name]
    sandbox = start_case_sandbox(case, rate_scale=scale)
    client = closing(case.make_client(sandbox.url, retry=fast_retry(), time_scale=scale))
    case.one_request(client)  # warm up (imports, connections) before the log counts
    reset_sandbox(sandbox.url)
    for _ in range(runs):
        case.one_request(client)
    log = sandbox_log(sandbox.url)
    stats = sandbox_stats(sandbox.url)["requests"]
    assert log["dropped"] == 0
    assert "429" not in stats, stats
    timestamps = log["timestamps"]
    assert log["limits"], "the sandbox enforces no limits"
    # Every request arrived, and the run holds more than the tightest window allows at once: it
    # was the client's budget, not the run's length, that kept every window within its limit.
    assert len(timestamps) >= runs
    assert runs > min(log["limits"], key=lambda limit: limit["seconds"])["requests"]
    for limit in log["limits"]:
        worst = max_in_window(timestamps, limit["seconds"])
        assert worst <= limit["requests"], (limit, worst)


#: One of the two processes: it says "ready" once its client is built, waits for the test's "go"
#: on stdin (so both start together however long each took to start), sends its requests, and
#: prints how many it sent.
_TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    from tests.connectors.conftest import fast_retry, load_case
    name, url, storage, scale, runs = sys.argv[1:6]
    case = load_case(name)
    client = case.make_client(url, time_scale=float(scale), storage_uri=storage,
                              retry=fast_retry())
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(runs)):
        case.one_request(client)
    client.close()
    print(runs, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.redis
def test_two_processes_share_one_budget_through_redis(case, start_case_sandbox, redis_url):
    scale, runs = REDIS_SCALES[case.name], REDIS_RUNS[case.name]
    sandbox = start_case_sandbox(case, rate_scale=scale)
    env = {**os.environ, "GATEWAY_RATE_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
           "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _TWO_PROCESS_SCRIPT, case.name, sandbox.url, redis_url,
             str(scale), str(runs)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            ready = process.stdout.readline()  # type: ignore[union-attr]
            assert ready.strip() == "ready", process.stderr.read()[-2000:]  # type: ignore
        for process in processes:
            process.stdin.write("go\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        sent = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-2000:]
            sent.append(int(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert sent == [runs, runs]
    log = sandbox_log(sandbox.url)
    assert len(log["timestamps"]) >= 2 * runs
    stats = sandbox_stats(sandbox.url)["requests"]
    assert "429" not in stats, stats
    for limit in log["limits"]:
        worst = max_in_window(log["timestamps"], limit["seconds"])
        assert worst <= limit["requests"], (limit, worst, sent)
