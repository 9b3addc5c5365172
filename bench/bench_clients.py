"""Benchmark: connector client overhead against the sandboxes, on 127.0.0.1 only.

    python bench/bench_clients.py
    python bench/bench_clients.py --replenit-customers 20000 --replenit-orders 10000 \\
        --rekindle 2000 --rejoiner 1000 --rci-sizes 10000,100000 --time-cap 60

Two parts:

1. **Writes.** Records a second sent through each writing connector's ``*.upsert`` operation
   (``CONNECTOR.operations[...].send``: mapping, JSON, HTTP, the answer's handling) to its
   sandbox, started in this process (``start_sandbox``) with its rate limits off: Replenit
   customers in batches of 500 and orders (2-3 lines) in batches of 200, Rekindle
   update-customer (one request a customer), Rejoiner customer upsert (a lookup, then a create:
   two requests a customer). Client and sandbox share this process (and its GIL), so these are
   end-to-end figures for one machine, not the client alone. Each workload stops at its count
   or at ``--time-cap`` seconds, whichever comes first; every record must be accepted.
2. **RCI walk.** ``RciClient.read_customers()`` (the generator: cursor pages of 100, each page
   checked against the wire schema, then mapped to canonical customers) over N seeded customers
   of the RCI sandbox, run in a **subprocess** (``python app.py sandbox rci --no-rate-limits``)
   so this process holds the client alone. Per N: wall time and customers/s of an untraced walk,
   then the peak of Python allocations (``tracemalloc``) of a second, traced walk; the peak should
   not grow with N (one page in memory at a time).

The clients' own proactive rate budgets cannot be switched off; they are scaled out of the way
(``time_scale=1e9``, margin 0) so that their bookkeeping still runs on every request but never
waits. The sandbox subprocess is terminated through its own ``Popen`` handle when the script
ends, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import selectors
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Sequence

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mapping import canonical_customers, canonical_orders  # noqa: E402

from connectors import rejoiner, rekindle, replenit  # noqa: E402
from connectors.base import ConnectionConfig, Operation  # noqa: E402
from connectors.rci.client import RciClient  # noqa: E402
from connectors.rci.sandbox import BASE_PATH as RCI_BASE_PATH  # noqa: E402
from connectors.rejoiner.sandbox import create_sandbox as rejoiner_sandbox  # noqa: E402
from connectors.rekindle.sandbox import BASE_PATH as REKINDLE_BASE_PATH  # noqa: E402
from connectors.rekindle.sandbox import create_sandbox as rekindle_sandbox  # noqa: E402
from connectors.replenit.sandbox import BASE_PATH as REPLENIT_BASE_PATH  # noqa: E402
from connectors.replenit.sandbox import create_sandbox as replenit_sandbox  # noqa: E402
from connectors.sandbox_kit import SandboxConfig, start_sandbox  # noqa: E402

#: The client budgets' windows divided by this: they keep counting, never make anyone wait.
UNBOUNDED = {"time_scale": 1e9}
TENANT = "6a1f0c2e-8d4b-4f7a-9c3e-2b5d7e9f1a3c"
SITE_ID = "site_bench_1"


# --- writes -------------------------------------------------------------------------------------


def send_all(operation: Operation, client: Any, records: Sequence[Any], batch: int,
             context: dict[str, Any], cap: float) -> tuple[int, float]:
    """Send ``records`` in batches until done or ``cap`` seconds pass: (accepted, seconds)."""
    accepted = 0
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        chunk = records[i:i + batch]
        result = operation.send(client, chunk, context)
        if result.rejected:
            first = next(iter(result.rejected.items()))
            raise SystemExit(f"{operation.name}: {len(result.rejected)} rejected, e.g. {first}")
        accepted += result.accepted
        if time.perf_counter() - start > cap:
            break
    return accepted, time.perf_counter() - start


def requests_served(url: str) -> int:
    stats = requests.get(f"{url}/_sandbox/stats", timeout=10).json()
    return sum(stats["requests"].values())


def write_workload(name: str, app: Any, make_client: Callable[[str], Any], operation: Operation,
                   records: Sequence[Any], batch: int, context: dict[str, Any],
                   cap: float) -> None:
    sandbox = start_sandbox(app)
    client = make_client(sandbox.url)
    try:
        warm = max(1, min(batch, 5))  # open the pooled connection outside the timing
        operation.send(client, list(records[-warm:]), context)
        before = requests_served(sandbox.url)
        done, seconds = send_all(operation, client, records[:-warm], batch, context, cap)
        sent = requests_served(sandbox.url) - before  # /_sandbox/* is not counted
        capped = " (time cap)" if done < len(records) - warm else ""
        print(f"{name:<34} {done:>8,} {seconds:>8.2f} {done / seconds:>11,.0f} "
              f"{sent / seconds:>9,.0f}{capped}", flush=True)
    finally:
        client.close()
        sandbox.stop()


def bench_writes(args: argparse.Namespace) -> None:
    print(f"{'writes (in-process sandbox, limits off)':<34} {'records':>8} {'seconds':>8} "
          f"{'records/s':>11} {'reqs/s':>9}")
    key = "bench_" + secrets.token_hex(8)
    context = {"consent_basis": "consent", "currency": "USD"}
    customers = canonical_customers(max(args.replenit_customers, args.rekindle, args.rejoiner))
    orders = canonical_orders(args.replenit_orders)

    def replenit_client(url: str) -> Any:
        config = ConnectionConfig(url + REPLENIT_BASE_PATH, {"api_key": key},
                                  {"tenant_id": TENANT})
        return replenit.make_client(config, margin=0.0, **UNBOUNDED)

    def rekindle_client(url: str) -> Any:
        config = ConnectionConfig(url + REKINDLE_BASE_PATH, {"api_key": key}, {"currency": "USD"})
        return rekindle.make_client(config, **UNBOUNDED)

    def rejoiner_client(url: str) -> Any:
        config = ConnectionConfig(url, {"api_key": key}, {"site_id": SITE_ID, "currency": "USD"})
        return rejoiner.make_client(config, **UNBOUNDED)

    ops_replenit = replenit.CONNECTOR.operations
    write_workload(
        "replenit customers.upsert x500",
        replenit_sandbox(SandboxConfig(api_key=key, tenant_id=TENANT, rate_limits=False)),
        replenit_client, ops_replenit["customers.upsert"],
        customers[:args.replenit_customers], 500, context, args.time_cap)
    write_workload(
        "replenit orders.upsert x200",
        replenit_sandbox(SandboxConfig(api_key=key, tenant_id=TENANT, rate_limits=False)),
        replenit_client, ops_replenit["orders.upsert"],
        orders[:args.replenit_orders], 200, context, args.time_cap)
    write_workload(
        "rekindle update-customer x1",
        rekindle_sandbox(SandboxConfig(api_key=key, rate_limits=False)),
        rekindle_client, rekindle.CONNECTOR.operations["customers.upsert"],
        customers[:args.rekindle], 1, context, args.time_cap)
    write_workload(
        "rejoiner customers.upsert x50",
        rejoiner_sandbox(SandboxConfig(api_key=key, site_id=SITE_ID, rate_limits=False)),
        rejoiner_client, rejoiner.CONNECTOR.operations["customers.upsert"],
        customers[:args.rejoiner], 50, context, args.time_cap)


# --- the RCI walk -------------------------------------------------------------------------------


def start_rci_subprocess(key: str, stderr: Any, timeout: float = 60.0
                         ) -> tuple[subprocess.Popen, str]:
    """``python app.py sandbox rci`` on a free port; (its Popen, its API base URL)."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "sandbox", "rci", "--host", "127.0.0.1",
         "--port", "0", "--no-rate-limits"],
        cwd=ROOT, env={**os.environ, "GATEWAY_SANDBOX_KEY": key},
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout)
    line = proc.stdout.readline() if ready else ""  # "rci sandbox on http://127.0.0.1:P/api/v1"
    if "http://127.0.0.1:" not in line:
        proc.terminate()
        proc.wait(timeout=10)
        raise SystemExit(f"the RCI sandbox did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[-1]


def walk(client: RciClient) -> int:
    n = 0
    for _ in client.read_customers():
        n += 1
    return n


def bench_rci(args: argparse.Namespace) -> None:
    key = "bench_" + secrets.token_hex(8)
    sizes = [int(s) for s in args.rci_sizes.split(",") if s]
    print(f"\n{'rci walk (subprocess sandbox)':<30} {'customers':>10} {'pages':>6} "
          f"{'seconds':>8} {'customers/s':>12} {'peak traced':>12}")
    with tempfile.TemporaryFile("w+") as log:
        proc, base = start_rci_subprocess(key, log)
        root = base.removesuffix(RCI_BASE_PATH)
        try:
            if args.rci_page_size != 100:
                requests.post(f"{root}/_sandbox/page-size", json={"size": args.rci_page_size},
                              timeout=10).raise_for_status()
            for n in sizes:
                requests.post(f"{root}/_sandbox/seed", json={"customers": n},
                              timeout=600).raise_for_status()
                config = ConnectionConfig(base, {"api_token": key})
                with RciClient(config, margin=0.0, **UNBOUNDED) as client:
                    client.check()  # the pooled connection, outside the timing
                    start = time.perf_counter()
                    count = walk(client)
                    seconds = time.perf_counter() - start
                with RciClient(config, margin=0.0, **UNBOUNDED) as client:
                    client.check()
                    tracemalloc.start()
                    tracemalloc.reset_peak()
                    traced_count = walk(client)
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                if count != n or traced_count != n:
                    raise SystemExit(f"walked {count} / {traced_count} customers of {n}")
                pages = -(-n // args.rci_page_size)
                print(f"{'RciClient.read_customers()':<30} {n:>10,} {pages:>6,} {seconds:>8.2f} "
                      f"{n / seconds:>12,.0f} {peak / 2**20:>9.2f} MiB", flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replenit-customers", type=int, default=20_000)
    parser.add_argument("--replenit-orders", type=int, default=10_000)
    parser.add_argument("--rekindle", type=int, default=2_000, help="Rekindle customers")
    parser.add_argument("--rejoiner", type=int, default=1_000, help="Rejoiner customers")
    parser.add_argument("--time-cap", type=float, default=60.0,
                        help="seconds per write workload at most")
    parser.add_argument("--rci-sizes", default="10000,100000",
                        help="comma-separated customer counts to walk ('' skips the walk)")
    parser.add_argument("--rci-page-size", type=int, default=100, help="RCI sandbox page size")
    parser.add_argument("--skip-writes", action="store_true")
    args = parser.parse_args(argv)
    print(f"client overhead: python {platform.python_version()}, {os.cpu_count()} cores, "
          f"client budgets scaled out (time_scale=1e9); load average "
          f"{os.getloadavg()[0]:.2f} at start")
    if not args.skip_writes:
        bench_writes(args)
    if args.rci_sizes:
        bench_rci(args)


if __name__ == "__main__":
    main()
