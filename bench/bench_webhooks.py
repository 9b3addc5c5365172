"""Benchmark: signed webhook posts/s durably accepted under gunicorn, beside /healthz.

    python bench/bench_webhooks.py                  # embedded SQLite in a temporary folder
    python bench/bench_webhooks.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

It makes a fresh instance (with ``--database-url``, migrates that scratch database), a tenant
with a signing secret and a Replenit connection (so ingest routes each order there), starts
gunicorn (``gateway/gunicorn_conf.py``: ``--workers`` gthread workers of ``--threads``
threads, 127.0.0.1; ``--worker-class sync`` for the old setting) on this module's
:func:`serve_app` (the app with the webhook limits raised out of the way) and one drainer
process (as a worker process would run it), and loads it with ``wrk`` at each of
``--connections``: first ``GET /healthz``, then signed ``POST /webhooks/{tenant}/orders``, one
new order per post, in ``--rounds`` alternated runs of each (so that the machine's speed,
which drifts on a shared VM from one second to the next, falls on both alike; the rates are
the rounds' sums). wrk cannot compute an HMAC, so every post is signed here beforehand (a
unique webhook-id and order each, timestamps fresh) and wrk's Lua walks the list, each round
further on; a run that exhausts it reports the repeats (answered 200 as duplicates) and is
too short to count.
A 202 is answered only after the inbox row is committed. Peak memory is each process's
high-water RSS (``VmHWM``). Each gunicorn worker prints, at its exit, how many posts its
commits carried. Then the server is stopped and the drainer, alone, is watched for
``--drain-seconds``: its ingest rate, against what Replenit's limits carry, bounds how fast
those orders can reach Replenit. Needs ``wrk`` (``apt-get install wrk``). Nothing here is
part of the tests.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_actions import _free_port, _percentile, _wait_until_up  # noqa: E402

SECRET = "bench-secret-key-" + "w" * 32
REPLENIT_TENANT = "6f1c2c52-0000-4000-8000-00000000aaaa"
#: Replenit's documented limits (requests a minute and an hour) and orders a request.
REPLENIT_PER_MINUTE, REPLENIT_PER_HOUR, REPLENIT_BATCH = 100, 5000, 200
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
  index = first - 2 + tonumber(args[1] or "0")
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
    atexit.register(_print_commit_stats, app)
    return app


def _print_commit_stats(app) -> None:  # noqa: ANN001
    """At a worker's exit: how many posts its commits carried (stderr, one line)."""
    from gateway.webhooks.commit import committer
    found = committer(app.extensions["gateway"])
    if found.batches:
        print(f"  worker {os.getpid()}: {found.posts:,} posts in {found.batches:,} commits "
              f"({found.posts / found.batches:.1f} a commit, "
              f"{found.seconds * 1000 / found.batches:.2f} ms a transaction)", file=sys.stderr)


@dataclass
class Figures:
    what: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    #: CPU seconds the server's processes (gunicorn's master and workers) spent in the run.
    server_cpu: float = 0.0

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
    from gateway.store.connections import save_connection
    from gateway.store.db import write_transaction
    from gateway.webhooks.secrets import ensure_secret

    runtime = Runtime.open(Settings.from_env(env), migrate=True)
    with write_transaction(runtime.engine) as conn:
        tenant = tenants.create_tenant(conn, "Bench shop")
        secret = ensure_secret(conn, runtime.vault, tenant.id).current
        # Orders are routed to Replenit, so ingest plans a delivery for each (none is sent:
        # no delivery worker runs here).
        tenants.update_settings(conn, tenant.id, {"consent_basis": "lawful_basis"})
        save_connection(conn, runtime.vault, tenant.id, "replenit", "http://127.0.0.1:9",
                        {"api_key": "bench-replenit-key"},
                        {"tenant_id": REPLENIT_TENANT})
    runtime.close()
    return env, tenant.id, secret


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _order_body(tag: str, i: int) -> str:
    """A new canonical order (its own id and customer), one line with a product id (Replenit
    refuses an order line without one)."""
    return (f'{{"id":"O-{tag}-{i}","placed_at":"2026-10-01T12:00:00Z","total":"59.97",'
            f'"currency":"USD","customer_email":"c-{tag}-{i}@example.com","lines":'
            f'[{{"product_id":"P-1","sku":"SKU-1","quantity":3,"unit_price":"19.99"}}]}}')


def _signed_requests(path: str, secret: str, count: int, tag: str) -> str:
    """A Lua file returning ``count`` raw HTTP requests, each a new order, signed."""
    from gateway.webhooks.signatures import sign
    stamp = int(time.time())
    lines = ["return {"]
    for i in range(count):
        body = _order_body(tag, i).encode()
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
         what: str, skip: int = 0) -> tuple[Figures, str]:
    """One wrk run; with ``script``, its requests start ``skip`` into the signed list."""
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    if script:
        command += ["-s", script]
    url = [f"http://127.0.0.1:{port}/healthz"] + (["--", str(skip)] if script else [])
    out = subprocess.run(command + url, capture_output=True,
                         text=True, check=True, timeout=seconds + 120).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    duration = re.search(r"\d+ requests in ([\d.]+)(m?s|m)\b", out)
    elapsed = float(duration.group(1)) * {"s": 1, "ms": 0.001, "m": 60}[duration.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (Figures(what, connections, total, elapsed, _percentile(out, 50),
                    _percentile(out, 99), int(non_2xx.group(1)) if non_2xx else 0), out)


def _tree(master_pid: int) -> list[int]:
    pids = [master_pid]
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def _cpu_seconds(master_pid: int) -> float:
    """User and system CPU time of the server's processes so far (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _tree(master_pid):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _measured(server_pid: int, *wrk_args, **wrk_kwargs) -> Figures:  # noqa: ANN002, ANN003
    """:func:`_wrk`'s figures with the server's CPU time over the run."""
    before = _cpu_seconds(server_pid)
    figures, _ = _wrk(*wrk_args, **wrk_kwargs)
    figures.server_cpu = _cpu_seconds(server_pid) - before
    return figures


def _combined(rounds: list[Figures]) -> Figures:
    """Rounds of one load as one figure: requests, seconds and CPU summed, the median of the
    rounds' p50s and the largest of their p99s."""
    p50s = sorted(f.p50_ms for f in rounds)
    return Figures(rounds[0].what, rounds[0].connections, sum(f.requests for f in rounds),
                   sum(f.seconds for f in rounds), p50s[len(p50s) // 2],
                   max(f.p99_ms for f in rounds), sum(f.non_2xx for f in rounds),
                   sum(f.server_cpu for f in rounds))


def _tree_rss(master_pid: int) -> list[tuple[int, float]]:
    pids = _tree(master_pid)
    found = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        found.append((pid, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024))
    return found


def _count_accepted(env: dict[str, str], tenant_id: str) -> tuple[int, int, int]:
    """Inbox rows, those ingested, and the deliveries their ingest planned."""
    from sqlalchemy import func, select

    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.store.tables import deliveries, webhook_inbox
    runtime = Runtime.open(Settings.from_env(env))
    try:
        with runtime.engine.connect() as conn:
            rows = dict(conn.execute(select(webhook_inbox.c.state, func.count()).where(
                webhook_inbox.c.tenant_id == tenant_id).group_by(webhook_inbox.c.state)).all())
            planned = conn.execute(select(func.count()).select_from(deliveries).where(
                deliveries.c.tenant_id == tenant_id)).scalar()
    finally:
        runtime.close()
    return sum(rows.values()), rows.get("done", 0), planned


DRAINER = ("import threading; from gateway.runtime import Runtime; "
           "from gateway.settings import Settings; from gateway.webhooks.drain import "
           "run_forever; run_forever(Runtime.open(Settings.from_env()), threading.Event())")


def _order_post(tenant_id: str, tag: str, i: int) -> Any:
    """An accepted post of :func:`_order_body`, as the inbox stores it."""
    from gateway.store.types import utcnow
    from gateway.webhooks.inbox import NewPost
    return NewPost(tenant_id, f"msg_{tag}_{i}", "orders", "canonical", _order_body(tag, i),
                   utcnow())


def _top_up(runtime: Any, tenant_id: str, backlog: int) -> int:
    """Commit new pending posts until the inbox holds at least ``backlog`` orders not yet
    ingested or not yet delivered (pending posts, plus orders already in the outbox), as if
    they had been accepted; how many were added."""
    from sqlalchemy import func, select

    from gateway.store.db import write_transaction
    from gateway.store.tables import webhook_inbox
    from gateway.webhooks.inbox import accept_many
    with runtime.engine.connect() as conn:
        pending = conn.execute(select(func.count()).select_from(webhook_inbox).where(
            webhook_inbox.c.state == "pending")).scalar()
        queued = _unsent_orders(conn)
    missing = max(0, backlog - pending - queued)
    for start in range(0, missing, 1000):
        with write_transaction(runtime.engine) as conn:
            accept_many(conn, [_order_post(tenant_id, "top", i)
                               for i in range(start, min(missing, start + 1000))])
    return missing


def _analyse(runtime: Any) -> None:
    """On PostgreSQL, ``ANALYZE``: this machine's runs with autovacuum off, so tables filled
    since the bench began have no statistics and the planner picks poor indexes for the
    outbox's lookups; the bench analyses them as autovacuum would have (after the load, and
    again once the inbox is topped up)."""
    if runtime.engine.dialect.name == "postgresql":
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")


def _unsent_orders(conn: Any) -> int:
    """The orders planned for a service and not yet sent."""
    from sqlalchemy import func, select

    from gateway.store.tables import deliveries
    return conn.execute(select(func.count()).select_from(deliveries).where(
        deliveries.c.operation == "orders.upsert", deliveries.c.status != "done")).scalar()


def _replenit_window(env: dict[str, str], tenant_id: str, minutes: float) -> dict:
    """The orders that reach a Replenit sandbox enforcing its documented limits (100
    requests a minute, 5,000 an hour, on its own clock) in ``minutes`` from its first
    request, through the drainer (already running) and one relay worker, from an inbox that
    outlasts the window; and what share of the window's allowance the requests used (each
    request counted as its records over its endpoint's batch maximum)."""
    import secrets as token
    import threading

    import requests

    from connectors.replenit.sandbox import create_sandbox
    from connectors.replenit.wire import BATCH_MAX
    from connectors.sandbox_kit import SandboxConfig, start_sandbox
    from gateway.relay.worker import Worker
    from gateway.runtime import Runtime
    from gateway.settings import Settings
    from gateway.store.connections import save_connection

    key = f"bench_{token.token_hex(6)}"
    sandbox = start_sandbox(create_sandbox(SandboxConfig(api_key=key,
                                                         tenant_id=REPLENIT_TENANT)))
    runtime = Runtime.open(Settings.from_env(env))
    window = 60.0 * minutes
    allowed = min(REPLENIT_PER_MINUTE * minutes, REPLENIT_PER_HOUR * math.ceil(minutes / 60))
    batches: list[tuple[str, int]] = []  # (operation, rows) of each settled batch, in order
    try:
        added = _top_up(runtime, tenant_id, int(allowed * REPLENIT_BATCH * 1.3))
        _analyse(runtime)
        with runtime.engine.begin() as conn:
            save_connection(conn, runtime.vault, tenant_id, "replenit", sandbox.url,
                            {"api_key": key}, {"tenant_id": REPLENIT_TENANT})
        worker = Worker(runtime, threads=1, observer=lambda batch, _: batches.append(
            (batch.operation, len(batch.rows))))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
        ingested_before, started = _count_accepted(env, tenant_id)[1], time.monotonic()
        thread.start()
        log_url = f"{sandbox.url}/_sandbox/requests-log"
        deadline = time.monotonic() + window + 600
        while time.monotonic() < deadline:
            arrivals = requests.get(log_url, timeout=60).json()["timestamps"]
            if arrivals and arrivals[-1] >= arrivals[0] + window:
                break
            time.sleep(0.5)
        stop.set()
        thread.join(timeout=120)
        ingested = (_count_accepted(env, tenant_id)[1] - ingested_before) / (
            time.monotonic() - started)
        with runtime.engine.connect() as conn:
            unsent = _unsent_orders(conn)
        arrivals = requests.get(log_url, timeout=60).json()["timestamps"]
        stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=30).json()
    finally:
        sandbox.stop()
        runtime.close()
    sent = sum(1 for t in arrivals if t < arrivals[0] + window) if arrivals else 0
    # One worker thread, one destination: batches go one after another, so the first `sent`
    # settled batches are the window's requests.
    in_window = batches[:sent]
    fill = sum(n / BATCH_MAX[op.split(".")[0]] for op, n in in_window)
    orders = sum(n for op, n in in_window if op == "orders.upsert")
    return {"minutes": minutes, "allowed": allowed, "sent": sent, "fill": fill,
            "orders": orders, "added": added, "status": stats["requests"],
            "ingested": ingested, "unsent": unsent,
            "operations": sorted({op for op, _ in in_window})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a scratch PostgreSQL database (else SQLite)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"],
                        help="gthread (gateway/gunicorn_conf.py) shares commits; sync cannot")
    parser.add_argument("--threads", type=int, default=16, help="per gthread worker")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of each load (/healthz, posts) per connection count")
    parser.add_argument("--rounds", type=int, default=5,
                        help="the duration in this many alternated /healthz and post runs "
                             "(whole seconds each)")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--pool", type=int, default=60_000,
                        help="signed posts per connection count (twice what is sent)")
    parser.add_argument("--no-drainer", action="store_true")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="after the load, how long to watch the drainer alone")
    parser.add_argument("--replenit-minutes", type=float, default=2.0,
                        help="then, the window in which orders reach a Replenit sandbox "
                             "enforcing its limits (at least 1; 0: skip)")
    args = parser.parse_args(argv)
    if 0 < args.replenit_minutes < 1:
        parser.error("--replenit-minutes: at least 1 (the limit is a minute's; a shorter "
                     "window has no allowance to compare with), or 0 to skip")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on the PATH")
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        env, tenant_id, secret = _prepare(Path(folder) / "instance", args.database_url)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:gateway.gunicorn_conf",
             "--workers", str(args.workers), "--worker-class", args.worker_class,
             "--threads", str(args.threads if args.worker_class == "gthread" else 1),
             "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning", "bench.bench_webhooks:serve_app()"],
            cwd=ROOT, env=env)
        drainer = None if args.no_drainer else subprocess.Popen(
            [sys.executable, "-c", DRAINER], cwd=ROOT, env=env)
        path = f"/api/v1/webhooks/{tenant_id}/orders"
        try:
            _wait_until_up(port, server)
            load = os.getloadavg()[0]
            _wrk(port, 10, 2, None, "warm")
            rounds = max(1, min(args.rounds, int(args.duration)))
            seconds = max(1, round(args.duration / rounds))
            for connections in args.connections:
                lua = Path(folder) / f"requests-{connections}.lua"
                lua.write_text(_signed_requests(path, secret, args.pool, f"c{connections}"))
                script = Path(folder) / f"wrk-{connections}.lua"
                script.write_text(LUA.replace("REQUESTS", _lua_string(str(lua))))
                health, posts = [], []
                for _ in range(rounds):  # alternated, so that a drift of the machine's speed
                    health.append(_measured(server.pid, port, connections, seconds, None,
                                            "/healthz"))  # falls on both alike
                    posts.append(_measured(server.pid, port, connections, seconds,
                                           str(script), "signed post",
                                           skip=2 * sum(f.requests for f in posts)))
                figures = _combined(posts)  # (a round's two wrk threads may not share its
                if 2 * figures.requests > args.pool:  # requests evenly: twice, to be sure)
                    print(f"  the pool of {args.pool} ran out: {figures.requests} requests "
                          "(some were repeats, answered as duplicates)", file=sys.stderr)
                results += [_combined(health), figures]
            rss = _tree_rss(server.pid)
            if drainer is not None:
                rss += [(drainer.pid, r) for _, r in _tree_rss(drainer.pid)[:1]]
            accepted, done, _ = _count_accepted(env, tenant_id)
            server.terminate()
            server.wait(timeout=30)
            ingest_rate, replenit = None, None
            if drainer is not None and args.drain_seconds > 0:
                # The server is gone: the drainer has the machine to itself.
                from gateway.runtime import Runtime
                from gateway.settings import Settings
                runtime = Runtime.open(Settings.from_env(env))
                try:
                    _analyse(runtime)
                finally:
                    runtime.close()
                before, started = _count_accepted(env, tenant_id)[1], time.monotonic()
                time.sleep(args.drain_seconds)
                _, after, planned = _count_accepted(env, tenant_id)
                ingest_rate = (after - before) / (time.monotonic() - started)
                print(f"  deliveries planned by then: {planned:,} for {after:,} posts",
                      file=sys.stderr)
            if drainer is not None and args.replenit_minutes > 0:
                replenit = _replenit_window(env, tenant_id, args.replenit_minutes)
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
            if drainer is not None:
                drainer.terminate()
                drainer.wait(timeout=30)
    database = "PostgreSQL" if args.database_url else "SQLite (embedded file, WAL)"
    kind = (f"gthread workers x {args.threads} threads" if args.worker_class == "gthread"
            else "sync workers")
    print(f"webhooks under gunicorn: {args.workers} {kind}, {database}, "
          f"{'a drainer process' if drainer else 'no drainer'}; wrk -t2, {rounds} rounds of "
          f"{seconds} s of each load; python {platform.python_version()}, "
          f"{os.cpu_count()} cores; load average {load:.2f} at start")
    print(f"{'what':<14}{'conns':>6}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}{'server CPU ms/req':>19}")
    for fig in results:
        print(f"{fig.what:<14}{fig.connections:>6}{fig.requests:>10,}{fig.rate:>10.1f}"
              f"{fig.p50_ms:>9.1f}{fig.p99_ms:>9.1f}{fig.non_2xx:>9}"
              f"{fig.server_cpu * 1000 / max(1, fig.requests):>19.3f}")
    for health, post in zip(results[::2], results[1::2]):
        cpu = (post.server_cpu / max(1, post.requests)) / \
            max(1e-9, health.server_cpu / max(1, health.requests))
        print(f"c{post.connections}: signed posts at {post.rate / health.rate:.2f}x /healthz "
              f"(a post costs the server {cpu:.1f}x a /healthz's CPU)")
    print("peak RSS (VmHWM) per process, MiB: " + ", ".join(f"{r:.0f}" for _, r in rss))
    print(f"inbox rows committed: {accepted:,} (ingested by the drainer by the end: {done:,})")
    if ingest_rate is not None:
        minute, hour = REPLENIT_PER_MINUTE * REPLENIT_BATCH / 60, \
            REPLENIT_PER_HOUR * REPLENIT_BATCH / 3600
        print(f"the drainer alone, after the load: {ingest_rate:.1f} posts/s ingested (each "
              f"order routed to Replenit); Replenit's limits carry {minute:.0f} orders/s over a "
              f"minute, {hour:.0f} over an hour at full batches of {REPLENIT_BATCH}: those "
              f"orders can reach it at {ingest_rate / minute:.2f} / {ingest_rate / hour:.2f} "
              "of what its limits allow, bound by ingest")
    if replenit is not None:
        r = replenit
        print(f"Replenit sandbox (its documented limits, its own clock), {r['minutes']:g} "
              f"minutes from its first request, the drainer and one relay worker, an inbox "
              f"topped up by {r['added']:,} posts to outlast the window: {r['sent']} requests "
              f"of {r['allowed']:g} allowed ({', '.join(r['operations'])}), {r['orders']:,} "
              f"orders ({r['orders'] / (60 * r['minutes']):.0f}/s); the requests carried "
              f"{r['fill']:.1f} full batches' worth: {r['fill'] / r['allowed']:.2f} of what the "
              f"limits allow; sandbox answers {r['status']}. Meanwhile the drainer "
              f"ingested {r['ingested']:.0f} posts/s; {r['unsent']:,} orders planned and "
              "not yet sent at the end")
    return 1 if any(fig.non_2xx for fig in results) else 0


if __name__ == "__main__":
    sys.exit(main())
