"""Benchmark: the delivery engine, outbox to sandbox, on 127.0.0.1 only.

    python bench/bench_relay.py
    python bench/bench_relay.py --orders 50000 --scale 2 --minutes 3 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Two figures, each on a fresh database (a temporary SQLite file, or a database created beside
``--database-url``'s and dropped afterwards) and a Replenit sandbox started in this process:

1. **Engine overhead, limits off.** ``--orders`` canonical orders are queued through
   :func:`gateway.relay.outbox.enqueue` (the outbox write a route makes in ingest's
   transaction, 1,000 a transaction; ``ANALYZE`` after the first 5,000 and at the end, as
   autovacuum would on a database in use), then one :class:`~gateway.relay.worker.Worker`
   drains them to the sandbox (its rate limits off; the client's budget scaled out of the way,
   ``GATEWAY_RATE_TIME_SCALE=1e9``, so its bookkeeping runs but never waits): claim, decode,
   map, batch of 200, HTTP, fenced completion, the drain's record. Records a second for the
   queueing, the drain, and both together. Sandbox and worker share this process (and its GIL).
2. **Budget use, documented limits, rate-scaled.** The sandbox enforces Replenit's 100 requests
   a minute and 5,000 an hour on a clock ``--scale`` times faster than wall time, and the
   worker keeps in step (``GATEWAY_RATE_TIME_SCALE``). More full batches of orders are queued
   than the limits let through in ``--minutes`` of service time, and the worker drains them.
   From the sandbox's own request log: the requests that arrived within ``--minutes`` of the
   first, the orders they carried, and the ratio of those orders to what the limits allow in
   that time at full batches (100 requests a minute, at most 5,000 an hour, of 200 orders);
   the target is at least 0.95, with no 429. The same window is then spent by a **per-order
   relay** (each order sent alone, as it comes, through the same client), for comparison.
"""

from __future__ import annotations

import argparse
import math
import platform
import secrets
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from connectors import replenit  # noqa: E402
from connectors.base import ConnectionConfig  # noqa: E402
from connectors.replenit.sandbox import create_sandbox  # noqa: E402
from connectors.sandbox_kit import SandboxConfig, start_sandbox  # noqa: E402
from gateway.model import Money, Order, OrderLine  # noqa: E402
from gateway.relay.outbox import enqueue  # noqa: E402
from gateway.relay.planned import PlannedDelivery  # noqa: E402
from gateway.relay.worker import Worker  # noqa: E402
from gateway.runtime import Runtime  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store import tenants  # noqa: E402
from gateway.store.connections import save_connection  # noqa: E402
from gateway.store.tables import deliveries  # noqa: E402

REPLENIT_TENANT = "6f1c2c52-0000-4000-8000-00000000beef"
BATCH = 200
PER_MINUTE, PER_HOUR = 100, 5000
SECRET = "bench-secret-key-" + "b" * 32


def orders(start: int, n: int) -> list[Order]:
    placed = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    out = []
    for i in range(start, start + n):
        lines = [OrderLine(product_id=f"P{i % 50}", sku=f"P{i % 50}-{k}", quantity=1 + k,
                           unit_price=Money(999 + 100 * k, "USD")) for k in range(1 + i % 3)]
        total = sum(line.unit_price.minor * line.quantity for line in lines)
        out.append(Order(id=f"O-{i}", placed_at=placed, total=Money(total, "USD"),
                         customer_id=f"cus-{i % 5000}",
                         customer_email=f"buyer.{i % 5000}@example.com", lines=lines))
    return out


class Database:
    """A fresh database for one figure: a temporary SQLite file, or a PostgreSQL database."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self.folder = Path(tempfile.mkdtemp(prefix="bench_relay_"))
        self._admin = None
        if base_url:
            url = make_url(base_url)
            self.name = f"bench_relay_{secrets.token_hex(4)}"
            self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = url.set(database=self.name).render_as_string(hide_password=False)
        else:
            self.url = f"sqlite:///{self.folder / 'gateway.db'}"

    def runtime(self, **settings: Any) -> Runtime:
        return Runtime.open(Settings.from_env(
            {}, instance_path=self.folder, database_url=self.url, secret_key=SECRET,
            **settings), migrate=True)

    def drop(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()


def _shop(runtime: Runtime, sandbox_url: str, api_key: str) -> str:
    with runtime.engine.begin() as conn:
        tenant = tenants.create_tenant(conn, "Bench shop").id
        save_connection(conn, runtime.vault, tenant, "replenit", sandbox_url,
                        {"api_key": api_key}, {"tenant_id": REPLENIT_TENANT})
    return tenant


def _queue(runtime: Runtime, tenant: str, n: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, 1000):
        if start == 5000:
            _analyze(runtime)
        planned = [PlannedDelivery("replenit", "orders.upsert", o, subject_id=o.customer_id)
                   for o in orders(start, min(1000, n - start))]
        with runtime.engine.begin() as conn:
            enqueue(conn, tenant, planned)
    _analyze(runtime)
    return time.perf_counter() - started


def _analyze(runtime: Runtime) -> None:
    """Table statistics, as autovacuum keeps them on a database in use. A table filled from
    empty within a minute has none yet, and PostgreSQL then reads the tenant-wide indexes for
    every key lookup (a scan of the whole backlog for each chunk queued or batch claimed)."""
    with runtime.engine.begin() as conn:
        conn.execute(text("ANALYZE deliveries"))


def _done(runtime: Runtime, tenant: str) -> int:
    with runtime.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.tenant_id == tenant, deliveries.c.status == "done")).scalar()


def _stats(url: str) -> dict:
    return requests.get(f"{url}/_sandbox/stats", timeout=30).json()


def _log(url: str) -> list[float]:
    return requests.get(f"{url}/_sandbox/requests-log", timeout=60).json()["timestamps"]


def engine_overhead(database_url: str | None, n: int) -> dict[str, Any]:
    database = Database(database_url)
    key = f"bench_{secrets.token_hex(6)}"
    sandbox = start_sandbox(create_sandbox(SandboxConfig(api_key=key, tenant_id=REPLENIT_TENANT,
                                                         rate_limits=False)))
    runtime = database.runtime(rate_time_scale=1e9, batch_linger_seconds=0.0)
    try:
        tenant = _shop(runtime, sandbox.url, key)
        queued = _queue(runtime, tenant, n)
        worker = Worker(runtime, threads=4)
        started = time.perf_counter()
        while _done(runtime, tenant) < n:
            worker.run_once()
        drained = time.perf_counter() - started
        worker.clients.close()
        stats = _stats(sandbox.url)
        assert stats["records"]["orders"] == n, stats
        return {"orders": n, "queue_s": queued, "drain_s": drained,
                "requests": stats["requests"]}
    finally:
        sandbox.stop()
        runtime.close()
        database.drop()


def _in_window(arrivals: list[float], window: float) -> int:
    """Requests that arrived within ``window`` service seconds of the first."""
    return sum(1 for t in arrivals if t < arrivals[0] + window) if arrivals else 0


def budget_use(database_url: str | None, scale: float, minutes: int) -> dict[str, Any]:
    """Orders delivered in the first ``minutes`` of service time with a backlog that outlasts
    them, against what the limits allow in that time at full batches."""
    database = Database(database_url)
    key = f"bench_{secrets.token_hex(6)}"
    sandbox = start_sandbox(create_sandbox(SandboxConfig(api_key=key, tenant_id=REPLENIT_TENANT,
                                                         rate_scale=scale)))
    runtime = database.runtime(rate_time_scale=scale, batch_linger_seconds=0.5)
    window = 60.0 * minutes
    allowed = min(PER_MINUTE * minutes, PER_HOUR * math.ceil(minutes / 60))
    sizes: list[int] = []
    try:
        tenant = _shop(runtime, sandbox.url, key)
        _queue(runtime, tenant, (allowed + 20) * BATCH)  # more than the window can take
        worker = Worker(runtime, threads=2, observer=lambda batch, _: sizes.append(len(
            batch.rows)))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
        thread.start()
        while True:
            arrivals = _log(sandbox.url)
            if arrivals and arrivals[-1] >= arrivals[0] + window:
                break
            time.sleep(0.5)
        stop.set()
        thread.join(timeout=120)
        arrivals = _log(sandbox.url)
        stats = _stats(sandbox.url)
        sent = _in_window(arrivals, window)
        failed = sum(n for status, n in stats["requests"].items() if status != "200")
        # One destination: batches go one after another, so the first `sent` batches are the
        # requests of the window (no request failed, so none was sent twice).
        delivered = sum(sizes[:sent]) if not failed else float("nan")
        return {"orders": delivered, "requests": sent, "allowed": allowed,
                "ratio": delivered / (allowed * BATCH), "status": stats["requests"],
                "window": window}
    finally:
        sandbox.stop()
        runtime.close()
        database.drop()


def per_order_relay(scale: float, minutes: int) -> dict[str, Any]:
    """Each order sent alone, as it comes, through the same client and budget, for the same
    window of service time."""
    key = f"bench_{secrets.token_hex(6)}"
    sandbox = start_sandbox(create_sandbox(SandboxConfig(api_key=key, tenant_id=REPLENIT_TENANT,
                                                         rate_scale=scale)))
    client = replenit.CONNECTOR.make_client(
        ConnectionConfig(sandbox.url, {"api_key": key}, {"tenant_id": REPLENIT_TENANT}),
        time_scale=scale)
    send = replenit.CONNECTOR.operations["orders.upsert"].send
    window = 60.0 * minutes
    allowed = min(PER_MINUTE * minutes, PER_HOUR * math.ceil(minutes / 60))
    i = 0
    try:
        started = None
        while True:
            send(client, orders(i, 1), {"consent_basis": "consent"})
            i += 1
            arrivals = _log(sandbox.url) if i % 50 == 0 or started is None else None
            if arrivals:
                started = arrivals[0]
                if arrivals[-1] >= started + window:
                    break
        arrivals = _log(sandbox.url)
        stats = _stats(sandbox.url)
        sent = _in_window(arrivals, window)
        return {"orders": sent, "requests": sent, "allowed": allowed,
                "ratio": sent / (allowed * BATCH), "status": stats["requests"],
                "window": window}
    finally:
        client.close()
        sandbox.stop()


def _table(rows: list[tuple], header: tuple) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=5.0,
                        help="the sandbox clock's speed for the budget figure")
    parser.add_argument("--minutes", type=int, default=3,
                        help="service minutes the budget figure is measured over")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server's URL (default: a temporary SQLite file)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-budget", action="store_true")
    args = parser.parse_args(argv)
    kind = "PostgreSQL" if args.database_url else "SQLite"
    print(f"python {platform.python_version()}, {platform.machine()}, {kind}")
    say: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    if not args.skip_overhead:
        result = engine_overhead(args.database_url, args.orders)
        n = result["orders"]
        say(_table([(kind, f"{n:,}", f"{result['queue_s']:.1f}", f"{n / result['queue_s']:,.0f}",
                     f"{result['drain_s']:.1f}", f"{n / result['drain_s']:,.0f}",
                     f"{n / (result['queue_s'] + result['drain_s']):,.0f}",
                     result["requests"])],
                    ("database", "orders", "queue s", "queued/s", "drain s", "drained/s",
                     "end to end/s", "sandbox answers")))
    if not args.skip_budget:
        batched = budget_use(args.database_url, args.scale, args.minutes)
        single = per_order_relay(args.scale, args.minutes)
        rows = [(name, f"{r['orders']:,}", r["requests"], r["allowed"], f"{r['ratio']:.3f}",
                 r["status"])
                for name, r in (("engine, batches of 200", batched), ("per-order relay", single))]
        say(f"\nrate scale {args.scale:g} (a service minute is {60 / args.scale:g} s), "
            f"{args.minutes} minutes of service time")
        say(_table(rows, ("relay", "orders in the window", "requests", "allowed requests",
                          "ratio", "sandbox answers (whole run)")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
