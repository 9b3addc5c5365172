"""Benchmark: ``record-order`` and ``update-customer`` requests/s under gunicorn, with p50/p99
and the peak memory of the server's processes.

    python bench/bench_actions.py                  # embedded SQLite in a temporary folder
    python bench/bench_actions.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

It makes a fresh instance folder (with ``--database-url``, migrates that scratch database),
creates a tenant with the largest ``api_rate_limit_per_minute`` the settings accept and a
``zapier`` key, starts ``gunicorn app:app`` with ``--workers`` sync workers on 127.0.0.1, and
loads each action for ``--duration`` seconds with ``wrk`` (a Lua script makes every request a
new order of a new customer, or a new customer, so each one writes: records, events, re-score).
Peak memory is each gunicorn process's high-water RSS (``VmHWM`` in ``/proc``), read at the
end, summed over master and workers. Any answer that is not a 2xx makes the run report it (an
error answer is cheaper than a write and would flatter the figure).

Needs ``wrk`` on the PATH (``apt-get install wrk``). Nothing here is part of the tests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_RATE_LIMIT = 100_000
SECRET = "bench-secret-key-" + "b" * 32

#: wrk's Lua: each thread numbers its requests; the body is built per request.
LUA = r"""
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  local tag = string.format("%s-%d-%d", RUN, tid, counter)
  return wrk.format("POST", PATH, HEADERS, string.format(BODY, tag, tag))
end
"""

BODIES = {
    "record-order": (
        '{"id":"O-%s","placed_at":"2026-10-01T12:00:00Z","total":"59.97","currency":"USD",'
        '"customer_email":"c-%s@example.com","lines":[{"sku":"SKU-1","quantity":3,'
        '"unit_price":"19.99"}]}'),
    "update-customer": (
        '{"name":"Jane %s","email":"u-%s@example.com","phone":"+27821234567",'
        '"last_purchase_date":"2026-08-01","total_spent":4700.0,"purchase_count":8}'),
}


@dataclass
class Figures:
    action: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(instance: Path, database_url: str | None) -> tuple[dict[str, str], str]:
    """The server's environment, and a zapier key of a fresh tenant."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_INSTANCE_PATH=str(instance), GATEWAY_SECRET_KEY=SECRET,
               PYTHONPATH=str(ROOT))
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.store import keys, tenants

    runtime = Runtime.open(Settings.from_env(env), migrate=True)
    with runtime.engine.begin() as conn:
        tenant = tenants.create_tenant(conn, "Bench shop")
        tenants.update_settings(conn, tenant.id, {"api_rate_limit_per_minute": MAX_RATE_LIMIT})
        key = keys.create_key(conn, tenant.id, "zapier").api_key
    runtime.close()
    return env, key


def _wait_until_up(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _percentile(out: str, q: int) -> float:
    """A percentile of wrk's ``--latency`` distribution (its lines ``  50%  195.85ms``)."""
    return _ms(re.search(rf"^ +{q}% +(\S+) *$", out, re.M).group(1))


def _wrk(port: int, action: str, key: str, seconds: float, connections: int,
         run: str) -> Figures:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    script = LUA.replace("RUN", json.dumps(run)).replace(
        "PATH", json.dumps(f"/api/v1/actions/{action}")).replace(
        "HEADERS", "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    ).replace("BODY", json.dumps(BODIES[action]))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
             "-s", handle.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    finally:
        os.unlink(handle.name)
    requests_ = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    duration = re.search(r"\d+ requests in ([\d.]+)(m?s|m)\b", out)
    elapsed = float(duration.group(1)) * {"s": 1, "ms": 0.001, "m": 60}[duration.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  wrk: socket errors: {errors.group(1)}", file=sys.stderr)
    return Figures(action, requests_, elapsed, _percentile(out, 50), _percentile(out, 99),
                   int(non_2xx.group(1)) if non_2xx else 0)


def _peak_rss_mib(master_pid: int) -> tuple[float, int]:
    """The summed high-water RSS of the master and its children, and how many there are."""
    pids = [master_pid]
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    return total / 1024, len(pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a scratch PostgreSQL database (else SQLite)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per action")
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on the PATH: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="bench-actions-") as folder:
        env, key = _prepare(Path(folder) / "instance", args.database_url)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
             f"127.0.0.1:{port}", "--log-level", "warning", "app:app"],
            cwd=ROOT, env=env)
        try:
            _wait_until_up(port, server)
            load = os.getloadavg()[0]
            for action in BODIES:  # warm both workers up (imports, statement caches)
                _wrk(port, action, key, 2, args.connections, f"warm-{action}")
            results = [_wrk(port, action, key, args.duration, args.connections, f"run-{action}")
                       for action in BODIES]
            rss, processes = _peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    database = "PostgreSQL" if args.database_url else "SQLite (embedded file, WAL)"
    print(f"actions under gunicorn: {args.workers} sync workers, {database}; wrk -t2 "
          f"-c{args.connections}, {args.duration:g} s per action, one new record per request; "
          f"python {platform.python_version()}, {os.cpu_count()} cores; load average "
          f"{load:.2f} at start")
    print(f"{'action':<18}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'non-2xx':>10}")
    for fig in results:
        print(f"{fig.action:<18}{fig.requests:>10,}{fig.rate:>10.1f}{fig.p50_ms:>10.1f}"
              f"{fig.p99_ms:>10.1f}{fig.non_2xx:>10}")
    print(f"peak RSS (VmHWM), {processes} gunicorn processes together: {rss:.1f} MiB")
    return 1 if any(fig.non_2xx for fig in results) else 0


if __name__ == "__main__":
    sys.exit(main())
