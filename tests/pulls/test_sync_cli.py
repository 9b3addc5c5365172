"""``python app.py sync``: errors, the summary and its JSON line, the exit status, and the
walk's memory (peak RSS of the command for 20,000 customers within 1.5x that for 2,000).

The memory test runs ``sync rci-customers --dry-run`` against an RCI sandbox without rate
limits (the real run would spend most of a minute on the destinations' limits): the walk, the
store writes, the planning and the diff all run, in transactions rolled back."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.pulls.conftest import connect_rci, start_rci

ROUTE = "rci-customers"


def app(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_unknown_route_or_tenant_is_one_line_and_exit_2(relay_db, new_tenant):
    tenant = new_tenant()
    env = relay_db.env()
    for args in (("sync", "no-such-route", "--tenant", tenant),
                 ("sync", ROUTE, "--tenant", "ten_missing")):
        done = app(env, *args)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in json.loads(lines[0])
        assert "Traceback" not in done.stderr


def test_sync_prints_a_summary_and_a_json_line(shop, relay_db):
    s = shop(customers=50)
    env = relay_db.env(GATEWAY_RATE_TIME_SCALE="1000")
    dry = app(env, "sync", ROUTE, "--tenant", s.tenant_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "example rejoiner customers.upsert" in dry.stdout
    planned = json.loads(dry.stdout.strip().splitlines()[-1])
    real = app(env, "sync", ROUTE, "--tenant", s.tenant_id)
    assert real.returncode == 0, real.stderr
    assert "destination" in real.stdout and "rekindle" in real.stdout
    counts = json.loads(real.stdout.strip().splitlines()[-1])
    assert {"read", "changed", "sent", "failed", "dead", "skipped"} <= set(counts)
    assert counts["read"] == 50 and counts["dead"] == 0
    assert counts["sent"] == sum(per["queued"] for per in planned["per_destination"].values())
    assert "read 50" in real.stderr  # the plain progress lines (not a terminal)
    runs = app(env, "runs", "--tenant", s.tenant_id, "--route", ROUTE)
    assert json.loads(runs.stdout)[0]["counts"]["sent"] == counts["sent"]


def _peak_rss_kib(env: dict, tenant: str) -> int:
    """Peak RSS of ``python app.py sync ... --dry-run`` in a fresh parent, so that
    RUSAGE_CHILDREN covers that one command only."""
    probe = ("import resource, subprocess, sys; "
             "done = subprocess.run([sys.executable, 'app.py', 'sync', 'rci-customers', "
             f"'--tenant', {tenant!r}, '--dry-run'], capture_output=True, text=True); "
             "assert done.returncode == 0, done.stderr[-2000:]; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_the_walks_memory_is_flat_in_the_number_of_customers(relay_db, new_tenant,
                                                             start_service, stopping):
    env = relay_db.env(GATEWAY_RATE_TIME_SCALE="100000")
    peaks = {}
    for customers in (2_000, 20_000):
        tenant = new_tenant(f"Memory {customers}")
        rci, key = start_rci(stopping, customers, rate_limits=False)
        connect_rci(relay_db, tenant, rci, key)
        for name in ("replenit", "rekindle", "rejoiner"):
            start_service(name, rate_limits=False).connect(relay_db.engine,
                                                           relay_db.runtime.vault, tenant)
        peaks[customers] = _peak_rss_kib(env, tenant)
    assert peaks[20_000] <= 1.5 * peaks[2_000], peaks
