"""Benchmark: signed webhook posts/s durably accepted under gunicorn, beside /healthz.

    python bench/bench_webhooks.py                  # embedded SQLite in a temporary folder
    python bench/bench_webhooks.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

It makes a fresh instance (with ``--database-url``, migrates that scratch database), a tenant
with a signing secret, starts gunicorn (``--workers`` sync workers, 127.0.0.1) on this module's
:func:`serve_app` (the app with the webhook limits raised out of the way) and one drainer
process (as a worker process would run it), and loads it with ``wrk`` at each of
``--connections``: first ``GET /healthz``, then signed ``POST /webhooks/{tenant}/orders``, one
new order per post. wrk cannot compute an HMAC, so every post is signed here beforehand (a
unique webhook-id and order each, timestamps fresh) and wrk's Lua walks the list; a run that
exhausts it reports the repeats (answered 200 as duplicates) and is too short to count.
A 202 is answered only after the inbox row is committed. Peak memory is each process's
high-water RSS (``VmHWM``). Needs ``wrk``. Nothing here is part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_actions import _free_port, _percentile, _wait_until_up  # noqa: E402

SECRET = "bench-secret-key-" + "w" * 32
HIGH_LIMIT = 10_000_000

LUA = r"""
local requests = dofile(REQUESTS)
local index = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("first", threads)
end
function init(args)
  index = first - 2
end
function request()
  index = index + 2
  return requests[(index % #requests) + 1]
end
"""


def serve_app():  # noqa: ANN201 - gunicorn's factory: ``bench.bench_webhooks:serve_app()``
    """The gateway's app, with the webhook limits raised past any benchmark's rate."""
    from gateway import create_app
    app = create_app()
    app.config.update(WEBHOOK_TENANT_PER_MINUTE=HIGH_LIMIT,
                      WEBHOOK_SENDER_PER_MINUTE=HIGH_LIMIT)
    return app


@dataclass
class Figures:
    what: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _prepare(instance: Path, database_url: str | None) -> tuple[dict[str, str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_INSTANCE_PATH=str(instance), GATEWAY_SECRET_KEY=SECRET,
               PYTHONPATH=str(ROOT))
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.store import tenants
    from gateway.store.db import write_transaction
    from gateway.webhooks.secrets import ensure_secret

    runtime = Runtime.open(Settings.from_env(env), migrate=True)
    with write_transaction(runtime.engine) as conn:
        tenant = tenants.create_tenant(conn, "Bench shop")
        secret = ensure_secret(conn, runtime.vault, tenant.id).current
    runtime.close()
    return env, tenant.id, secret


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _signed_requests(path: str, secret: str, count: int, tag: str) -> str:
    """A Lua file returning ``count`` raw HTTP requests, each a new order, signed."""
    from gateway.webhooks.signatures import sign
    stamp = int(time.time())
    lines = ["return {"]
    for i in range(count):
        body = (f'{{"id":"O-{tag}-{i}","placed_at":"2026-10-01T12:00:00Z","total":"59.97",'
                f'"currency":"USD","customer_email":"c-{tag}-{i}@example.com","lines":'
                f'[{{"sku":"SKU-1","quantity":3,"unit_price":"19.99"}}]}}').encode()
        webhook_id = f"msg_{tag}_{i}"
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                   f"webhook-id: {webhook_id}\r\nwebhook-timestamp: {stamp}\r\n"
                   f"webhook-signature: {sign(secret, webhook_id, stamp, body)}\r\n\r\n"
                   + body.decode())
        lines.append(_lua_string(request) + ",")
    lines.append("}")
    return "\n".join(lines)


def _wrk(port: int, connections: int, seconds: float, script: str | None,
         what: str) -> tuple[Figures, str]:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run(command + [f"http://127.0.0.1:{port}/healthz"], capture_output=True,
                         text=True, check=True, timeout=seconds + 120).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    duration = re.search(r"\d+ requests in ([\d.]+)(m?s|m)\b", out)
    elapsed = float(duration.group(1)) * {"s": 1, "ms": 0.001, "m": 60}[duration.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (Figures(what, connections, total, elapsed, _percentile(out, 50),
                    _percentile(out, 99), int(non_2xx.group(1)) if non_2xx else 0), out)


def _tree_rss(master_pid: int) -> list[tuple[int, float]]:
    pids = [master_pid]
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    found = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        found.append((pid, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024))
    return found


def _count_accepted(env: dict[str, str], tenant_id: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.store.tables import webhook_inbox
    runtime = Runtime.open(Settings.from_env(env))
    try:
        with runtime.engine.connect() as conn:
            rows = dict(conn.execute(select(webhook_inbox.c.state, func.count()).where(
                webhook_inbox.c.tenant_id == tenant_id).group_by(webhook_inbox.c.state)).all())
    finally:
        runtime.close()
    return sum(rows.values()), rows.get("done", 0)


DRAINER = ("import threading; from gateway.runtime import Runtime; "
           "from gateway.settings import Settings; from gateway.webhooks.drain import "
           "run_forever; run_forever(Runtime.open(Settings.from_env()), threading.Event())")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a scratch PostgreSQL database (else SQLite)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--pool", type=int, default=20_000, help="signed posts per run")
    parser.add_argument("--no-drainer", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on the PATH")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        env, tenant_id, secret = _prepare(Path(folder) / "instance", args.database_url)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
             f"127.0.0.1:{port}", "--log-level", "warning", "bench.bench_webhooks:serve_app()"],
            cwd=ROOT, env=env)
        drainer = None if args.no_drainer else subprocess.Popen(
            [sys.executable, "-c", DRAINER], cwd=ROOT, env=env)
        path = f"/api/v1/webhooks/{tenant_id}/orders"
        try:
            _wait_until_up(port, server)
            load = os.getloadavg()[0]
            _wrk(port, 10, 2, None, "warm")
            for connections in args.connections:
                results.append(_wrk(port, connections, args.duration, None, "/healthz")[0])
                lua = Path(folder) / f"requests-{connections}.lua"
                lua.write_text(_signed_requests(path, secret, args.pool, f"c{connections}"))
                script = Path(folder) / f"wrk-{connections}.lua"
                script.write_text(LUA.replace("REQUESTS", _lua_string(str(lua))))
                figures, _ = _wrk(port, connections, args.duration, str(script),
                                  "signed post")
                if figures.requests > args.pool:
                    print(f"  the pool of {args.pool} ran out: {figures.requests} requests",
                          file=sys.stderr)
                results.append(figures)
            rss = _tree_rss(server.pid)
            if drainer is not None:
                rss += [(drainer.pid, r) for _, r in _tree_rss(drainer.pid)[:1]]
            accepted, done = _count_accepted(env, tenant_id)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if drainer is not None:
                drainer.terminate()
                drainer.wait(timeout=30)
    database = "PostgreSQL" if args.database_url else "SQLite (embedded file, WAL)"
    print(f"webhooks under gunicorn: {args.workers} sync workers, {database}, "
          f"{'a drainer process' if drainer else 'no drainer'}; wrk -t2, {args.duration:g} s "
          f"per run; python {platform.python_version()}, {os.cpu_count()} cores; load average "
          f"{load:.2f} at start")
    print(f"{'what':<14}{'conns':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}")
    for fig in results:
        print(f"{fig.what:<14}{fig.connections:>6}{fig.requests:>10,}{fig.rate:>10.1f}"
              f"{fig.p50_ms:>9.1f}{fig.p99_ms:>9.1f}{fig.non_2xx:>9}")
    for health, post in zip(results[::2], results[1::2]):
        print(f"c{post.connections}: signed posts at {post.rate / health.rate:.2f}x /healthz")
    print("peak RSS (VmHWM) per process, MiB: " + ", ".join(f"{r:.0f}" for _, r in rss))
    print(f"inbox rows committed: {accepted:,} (ingested by the drainer by the end: {done:,})")
    return 1 if any(fig.non_2xx for fig in results) else 0


if __name__ == "__main__":
    sys.exit(main())
