"""Ticker processes (``python -m gateway.schedule``) on one database: two of them with
one-second schedules for twenty seconds run each schedule once per slot, and a process killed
mid-run leaves its schedule to the other once its lease has passed.

The jobs (tests/schedule/jobs_for_tests.py) record every run, with its slot, in a file. What is
asserted is what a correct program guarantees on any machine: no slot ran twice, slots only
move forward on their grid, every run was recorded; never how many runs fitted in the time.
Every wait is bounded and for an observable state; only the processes started here are
stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.schedule import slots
from tests.conftest import ROOT
from tests.schedule.conftest import run_rows, schedule_row, wait_for

pytestmark = pytest.mark.slow

TEST_JOBS = "tests.schedule.jobs_for_tests"


def _start(sched_db, tmp_path: Path, name: str, started: list, **env: str) -> subprocess.Popen:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.schedule"], cwd=ROOT,
            env=sched_db.env(GATEWAY_TEST_JOBS=TEST_JOBS, GATEWAY_TICK_SECONDS="0.2", **env),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started.append(process)
    wait_for(lambda: "ready" in log_path.read_text(errors="replace")
             or process.poll() is not None, 60, f"ticker {name} to start")
    assert process.poll() is None, log_path.read_text()
    return process


def _stop(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            return None
    return process.returncode


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        _stop(process)


def _runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_processes_run_each_one_second_schedule_once_per_slot(
        sched_db, new_tenant, tmp_path, processes):
    tenants = [new_tenant("shop one"), new_tenant("shop two")]
    routes = ["test-a", "test-b"]
    runs_file = tmp_path / "runs.jsonl"
    env = dict(GATEWAY_TEST_ROUTES=",".join(routes), GATEWAY_TEST_RUNS_FILE=str(runs_file),
               GATEWAY_TEST_INTERVAL_SECONDS="1", GATEWAY_LEASE_SECONDS="10")
    first = _start(sched_db, tmp_path, "one", processes, **env)
    second = _start(sched_db, tmp_path, "two", processes, **env)
    began = time.monotonic()

    def enough() -> bool:
        runs = _runs(runs_file)
        per = defaultdict(int)
        for run in runs:
            per[(run["tenant"], run["route"])] += 1
        return (time.monotonic() - began >= 20
                and all(per[(t, r)] >= 5 for t in tenants for r in routes)
                and {run["pid"] for run in runs} == {first.pid, second.pid})

    try:  # a liveness wait: generous, since a busy machine slows both processes' ticks
        wait_for(enough, 240, "twenty seconds of runs from both processes")
    except AssertionError:
        runs = _runs(runs_file)
        per_pid = defaultdict(int)
        for run in runs:
            per_pid[run["pid"]] += 1
        raise AssertionError(
            f"after {time.monotonic() - began:.0f}s: {len(runs)} runs, per process "
            f"{dict(per_pid)} (first {first.pid}, second {second.pid}; alive: "
            f"{first.poll() is None}, {second.poll() is None})") from None
    assert _stop(first) == 0 and _stop(second) == 0  # SIGTERM: the runs in progress finish

    runs = _runs(runs_file)
    by_schedule: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        by_schedule[(run["tenant"], run["route"])].append(run)
    assert set(by_schedule) == {(t, r) for t in tenants for r in routes}
    for (tenant, route), mine in by_schedule.items():
        slot_list = [datetime.fromisoformat(run["slot"]) for run in mine]
        assert len(slot_list) == len(set(slot_list)), f"a slot of {route} ran twice: {mine}"
        assert slot_list == sorted(slot_list)  # one run at a time, slots only move forward
        offset = slots.offset_seconds(tenant, route, 1)
        assert all(slots.on_grid(s, 1, offset) for s in slot_list[1:])  # the first: at once
        assert all(datetime.fromisoformat(run["now"]) >= datetime.fromisoformat(run["slot"])
                   for run in mine)  # never before its slot
        recorded = [row for row in run_rows(sched_db.engine, tenant, route)]
        assert all(row.status == "ok" for row in recorded)
        assert sorted(row.counts["slot"] for row in recorded) == sorted(r["slot"] for r in mine)
        row = schedule_row(sched_db.engine, tenant, route)
        assert row.lease_token is None  # both stopped cleanly: nothing left leased


def test_a_process_killed_mid_run_leaves_the_schedule_to_the_other_after_its_lease(
        sched_db, new_tenant, tmp_path, processes):
    tenant = new_tenant()
    runs_file = tmp_path / "runs.jsonl"
    env = dict(GATEWAY_TEST_ROUTES="test-block", GATEWAY_TEST_RUNS_FILE=str(runs_file),
               GATEWAY_TEST_INTERVAL_SECONDS="1", GATEWAY_LEASE_SECONDS="3")
    doomed = _start(sched_db, tmp_path, "doomed", processes,
                    GATEWAY_TEST_BLOCK_ROUTE="test-block", **env)
    wait_for(lambda: _runs(runs_file), 60, "the run that will be cut short")
    [cut] = _runs(runs_file)
    assert cut["pid"] == doomed.pid

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    left = schedule_row(sched_db.engine, tenant, "test-block")
    assert left.lease_owner == cut["owner"] and left.lease_token is not None
    assert left.next_run_at == datetime.fromisoformat(cut["slot"]) and left.last_run_at is None
    expiry = left.lease_expires_at

    survivor = _start(sched_db, tmp_path, "survivor", processes, **env)
    wait_for(lambda: any(r["pid"] == survivor.pid for r in _runs(runs_file)), 60,
             "the other process to take the schedule over")
    taken = next(r for r in _runs(runs_file) if r["pid"] == survivor.pid)
    assert taken["slot"] == cut["slot"]  # the slot the killed run did not finish
    assert datetime.fromisoformat(taken["now"]) >= expiry  # only once the lease had passed
    wait_for(lambda: schedule_row(sched_db.engine, tenant, "test-block").last_run_at
             is not None, 60, "the taken-over run to finish")
    assert _stop(survivor) == 0

    recorded = run_rows(sched_db.engine, tenant, "test-block")
    assert recorded and all(row.counts["worker"] != cut["owner"] for row in recorded)
    assert recorded[0].counts["slot"] == cut["slot"] and recorded[0].status == "ok"
    slots_run = [r["slot"] for r in _runs(runs_file) if r["pid"] == survivor.pid]
    assert len(slots_run) == len(set(slots_run))
