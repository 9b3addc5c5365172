"""Structured logs from real processes with ``GATEWAY_LOG_JSON=1``: every line on standard
error is one JSON object (ts, level, logger, event, message and the step's fields); a drain, a
dead letter, a breaker opening and a schedule's run each say so in one line; no key or secret
reaches the output.

``python app.py worker`` runs against a Replenit sandbox that first refuses one order (a dead
letter) and then answers 503 to everything (the breaker opens); ``python -m gateway.schedule``
runs a job that logs and fails with credentials in its messages (tests/relay/log_jobs.py).
Every wait is for a line or a state to appear, bounded; only the processes started here are
stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TEST_SECRET_KEY
from tests.connectors.conftest import set_faults
from tests.relay.conftest import queue_orders, statuses, stop_process, wait_for

REQUIRED = ("ts", "level", "logger", "event", "message")


def _json_lines(path: Path) -> list[dict]:
    """Every line of ``path`` as JSON (a line that is not JSON fails the test)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        obj = json.loads(line)
        assert all(key in obj for key in REQUIRED), line
        parsed.append(obj)
    return parsed


def _events(path: Path, name: str) -> list[dict]:
    return [line for line in _json_lines(path) if line["event"] == name]


def _start(command: list[str], env: dict[str, str], tmp_path: Path, name: str
           ) -> tuple[subprocess.Popen, Path]:
    stderr = tmp_path / f"{name}.stderr"
    with open(tmp_path / f"{name}.stdout", "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err,
                                   start_new_session=True)
    return process, stderr


def test_the_worker_logs_drains_dead_letters_and_breakers_as_json(
        relay_db, new_tenant, start_service, stopping, tmp_path):
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, reject_keys={"O-1": "This order is not accepted."})
    queue_orders(relay_db.engine, tenant, 5)
    env = relay_db.env(GATEWAY_LOG_JSON="1", GATEWAY_BREAKER_FAILURES="1",
                       GATEWAY_BREAKER_COOLDOWN_SECONDS="0.5", GATEWAY_HTTP_ATTEMPTS="1",
                       GATEWAY_TICK_SECONDS="0.2")
    process, stderr = _start([sys.executable, str(ROOT / "app.py"), "worker"], env, tmp_path,
                             "worker")
    stopping(process)

    wait_for(lambda: statuses(relay_db.engine, tenant) == {"done": 4, "dead": 1}, 60,
             "the first batch to settle")
    wait_for(lambda: _events(stderr, "relay.dead_letter") and _events(stderr, "relay.drain"),
             30, "the dead letter and the drain to be logged")
    set_faults(replenit.url, reject_keys={}, error_rate=1.0, error_status=503)
    queue_orders(relay_db.engine, tenant, 1, start=10, prefix="B")
    wait_for(lambda: _events(stderr, "relay.breaker_open"), 60, "the breaker to open")
    wait_for(lambda: any(e["route"] == "retention" for e in _events(stderr, "schedule.run")),
             60, "a schedule run to be logged")
    stop_process(process)

    (dead,) = [e for e in _events(stderr, "relay.dead_letter") if e["tenant_id"] == tenant]
    assert dead["level"] == "WARNING" and dead["logger"] == "gateway.relay"
    assert (dead["connector"], dead["operation"], dead["count"]) == (
        "replenit", "orders.upsert", 1)
    assert len(dead["refused_ids"]) == 1
    drains = _events(stderr, "relay.drain")
    assert sum(d["sent"] for d in drains) == 4 and sum(d["dead"] for d in drains) == 1
    assert all(d["destinations"].keys() == {tenant} for d in drains)
    opened = _events(stderr, "relay.breaker_open")[0]
    assert (opened["tenant_id"], opened["connector"]) == (tenant, "replenit")
    assert opened["failures"] >= 1 and opened["cooldown_seconds"] == 0.5
    run = next(e for e in _events(stderr, "schedule.run") if e["route"] == "retention")
    assert run["tenant_id"] == tenant and run["status"] == "ok" and "seconds" in run
    text = stderr.read_text()
    assert TEST_SECRET_KEY not in text and replenit.api_key not in text


def test_keys_and_secrets_in_messages_are_masked(relay_db, new_tenant, stopping, tmp_path):
    new_tenant("leaky shop")
    api_key = "gk_live_ab12cd_" + "Q" * 32
    hook_secret = "whsec_" + "c2VjcmV0" * 5
    leak = f"Authorization: Bearer {api_key}, {hook_secret}, key {TEST_SECRET_KEY}"
    env = relay_db.env(GATEWAY_LOG_JSON="1", GATEWAY_TEST_JOBS="tests.relay.log_jobs",
                       GATEWAY_TEST_LEAK=leak, GATEWAY_TICK_SECONDS="0.2")
    process, stderr = _start([sys.executable, "-m", "gateway.schedule"], env, tmp_path,
                             "ticker")
    stopping(process)
    wait_for(lambda: any(e["route"] == "log-leak" for e in _events(stderr, "schedule.run")),
             60, "the leaking job to run")
    stop_process(process)

    lines = _json_lines(stderr)
    text = stderr.read_text()
    for secret in (api_key, hook_secret, TEST_SECRET_KEY, "Q" * 32):
        assert secret not in text
    said = next(e for e in lines if e["logger"] == "gateway.tests")
    assert said["message"].startswith("calling the service with Authorization: Bearer ***")
    assert "whsec_***" in said["message"]
    run = next(e for e in lines if e["event"] == "schedule.run" and e["route"] == "log-leak")
    assert run["level"] == "WARNING" and run["status"] == "failed"
    assert "Bearer ***, whsec_***, key ***" in run["error"] and "RuntimeError" in run["error"]
