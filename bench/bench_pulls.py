"""Benchmark: the ``rci-customers`` walk, RCI to the three destinations, on 127.0.0.1 only.

    python bench/bench_pulls.py
    python bench/bench_pulls.py --customers 10000 --scale 20 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The four sandboxes run in this process with their documented rate limits on a clock
``--scale`` times faster than wall time; ``python app.py sync rci-customers --tenant T`` runs
as a child process on a fresh database (a temporary SQLite file, or a database created beside
``--database-url``'s and dropped afterwards) with its clients' budgets scaled alike
(``GATEWAY_RATE_TIME_SCALE``). The RCI sandbox holds ``--customers`` synthetic customers;
every ``--consent-every``-th has processing consent (recorded before any destination is
connected), so Replenit takes only those.

1. **First walk.** Every customer is read, stored, diffed and sent. Printed: wall time of the
   ``sync`` command against the minimum the services' limits allow for that traffic, and the
   peak RSS of the syncing process (``wait4``'s ``ru_maxrss`` of the child). The minimum is
   computed from the connectors' declared limits (:data:`connectors.base.ConnectorSpec.limits`
   and ``client_limits``, the stricter of the two per service: the client never goes faster
   than it holds itself to) and batch sizes (RCI's page of 100, Replenit's 500 customers a
   request, Rekindle's one, Rejoiner's look-up and write per profile): for ``R`` requests under
   ``L`` requests in any ``W`` seconds, the ``R``-th can go at ``floor((R - 1) / L) * W`` at the
   earliest (the first ``L`` go at once). The services' budgets are independent, so the walk
   needs at least the longest of them (in service seconds; divided by ``--scale`` on the wall).
2. **Second walk, ``--changed`` of the customers changed** (a new first name: every
   destination's payload holds it). Printed: the requests each destination answered against
   the minimum the changes need (one Rekindle update-customer and one Rejoiner look-up and
   write per changed customer, Replenit's changed consented customers in batches of 500), and
   the RCI pages read (the walk reads everything to find the changes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_relay import SECRET, Database  # noqa: E402

from connectors import base as registry  # noqa: E402
from connectors.rci.sandbox import BASE_PATH as RCI_BASE  # noqa: E402
from connectors.rci.sandbox import PAGE_SIZE as RCI_PAGE  # noqa: E402
from connectors.rci.sandbox import create_sandbox as rci_sandbox  # noqa: E402
from connectors.rejoiner.sandbox import create_sandbox as rejoiner_sandbox  # noqa: E402
from connectors.rekindle.sandbox import BASE_PATH as REKINDLE_BASE  # noqa: E402
from connectors.rekindle.sandbox import create_sandbox as rekindle_sandbox  # noqa: E402
from connectors.replenit.sandbox import create_sandbox as replenit_sandbox  # noqa: E402
from connectors.sandbox_kit import SandboxConfig, start_sandbox, synthetic_customers  # noqa: E402
from gateway.ingest import ingest  # noqa: E402
from gateway.store import tenants  # noqa: E402
from gateway.store.connections import save_connection  # noqa: E402

REPLENIT_TENANT = "6f1c2c52-0000-4000-8000-00000000b00b"
SITE = "site_bench"
DESTINATIONS = ("replenit", "rekindle", "rejoiner")
#: Profiles a Replenit request carries; Rekindle takes one customer a request; a Rejoiner
#: profile write is a look-up and a write (its read-merge-write).
REPLENIT_BATCH = registry.get("replenit").operations["customers.upsert"].max_batch
REKINDLE_BATCH = registry.get("rekindle").operations["customers.upsert"].max_batch
REJOINER_REQUESTS_PER_PROFILE = 2


def limits_of(connector: str) -> list[registry.Limit]:
    """The service's documented limits and the client's own, all of which bind."""
    spec = registry.get(connector)
    return [*spec.limits, *spec.client_limits]


def minimum_seconds(requests_needed: int, limits: list[registry.Limit]) -> float:
    """The earliest the last of ``requests_needed`` requests can go (service seconds)."""
    if requests_needed <= 0:
        return 0.0
    return max((((requests_needed - 1) // limit.requests) * limit.seconds for limit in limits),
               default=0.0)


@dataclass
class Traffic:
    """Requests a walk needs, per service."""

    rci: int
    replenit: int
    rekindle: int
    rejoiner: int

    def minimum(self) -> dict[str, float]:
        return {name: minimum_seconds(getattr(self, name), limits_of(name))
                for name in ("rci", *DESTINATIONS)}


def first_walk_traffic(customers: int, consent_every: int) -> Traffic:
    live = [p for p in synthetic_customers(customers) if p.redacted_at is None]
    consented = sum(1 for p in live if p.index % consent_every == 0)
    named = sum(1 for p in live if p.email and ((p.first_name or "").strip()
                                                 or (p.last_name or "").strip()))
    return Traffic(rci=math.ceil(customers / RCI_PAGE) or 1,
                   replenit=math.ceil(consented / REPLENIT_BATCH),
                   rekindle=math.ceil(named / REKINDLE_BATCH),
                   rejoiner=REJOINER_REQUESTS_PER_PROFILE * sum(1 for p in live if p.email))


class Shop:
    """The four sandboxes, the database and a tenant connected to all of them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.database = Database(args.database_url)
        self.keys = {name: f"bench_{name}_{secrets.token_hex(4)}"
                     for name in ("rci", *DESTINATIONS)}
        scale = args.scale
        self.rci = start_sandbox(rci_sandbox(SandboxConfig(
            api_key=self.keys["rci"], seed_customers=args.customers, rate_scale=scale)))
        self.sandboxes = {
            "replenit": start_sandbox(replenit_sandbox(SandboxConfig(
                api_key=self.keys["replenit"], tenant_id=REPLENIT_TENANT, rate_scale=scale))),
            "rekindle": start_sandbox(rekindle_sandbox(SandboxConfig(
                api_key=self.keys["rekindle"], rate_scale=scale))),
            "rejoiner": start_sandbox(rejoiner_sandbox(SandboxConfig(
                api_key=self.keys["rejoiner"], site_id=SITE, rate_scale=scale))),
        }
        runtime = self.database.runtime()
        try:
            with runtime.engine.begin() as conn:
                self.tenant = tenants.create_tenant(conn, "Bench pull shop").id
            self._record_consent(runtime)
            with runtime.engine.begin() as conn:
                vault = runtime.vault
                save_connection(conn, vault, self.tenant, "rci", self.rci.url + RCI_BASE,
                                {"api_token": self.keys["rci"]})
                save_connection(conn, vault, self.tenant, "replenit",
                                self.sandboxes["replenit"].url,
                                {"api_key": self.keys["replenit"]},
                                {"tenant_id": REPLENIT_TENANT})
                save_connection(conn, vault, self.tenant, "rekindle",
                                self.sandboxes["rekindle"].url + REKINDLE_BASE,
                                {"api_key": self.keys["rekindle"]}, {"currency": "USD"})
                save_connection(conn, vault, self.tenant, "rejoiner",
                                self.sandboxes["rejoiner"].url,
                                {"api_key": self.keys["rejoiner"]},
                                {"site_id": SITE, "currency": "USD"})
        finally:
            runtime.close()

    def _record_consent(self, runtime: Any) -> None:
        emails = [p.email for p in synthetic_customers(self.args.customers)
                  if p.index % self.args.consent_every == 0 and p.redacted_at is None]
        for start in range(0, len(emails), 1000):
            with runtime.engine.begin() as conn:
                ingest(conn, self.tenant, "customers", "canonical",
                       [{"email": e, "consent": {"gdpr_processing": True}}
                        for e in emails[start:start + 1000]])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_DATABASE_URL=self.database.url, GATEWAY_SECRET_KEY=SECRET,
                   GATEWAY_INSTANCE_PATH=str(self.database.folder), PYTHONPATH=str(ROOT),
                   GATEWAY_RATE_TIME_SCALE=str(self.args.scale))
        return env

    def answered(self) -> dict[str, int]:
        """Requests each sandbox answered so far (any status)."""
        found = {}
        for name, sandbox in {"rci": self.rci, **self.sandboxes}.items():
            stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=60).json()
            found[name] = sum(stats["requests"].values())
        return found

    def statuses(self) -> dict[str, dict[str, int]]:
        return {name: requests.get(f"{sandbox.url}/_sandbox/stats", timeout=60).json()
                ["requests"] for name, sandbox in {"rci": self.rci, **self.sandboxes}.items()}

    def change(self, fraction: float) -> list[Any]:
        """Give ``fraction`` of the live customers a new first name (spread over the walk)."""
        store = self.rci.app.extensions["rci"].store
        live = [p for p in synthetic_customers(self.args.customers) if p.redacted_at is None]
        step = max(1, round(1 / fraction)) if fraction > 0 else len(live) + 1
        changed = live[::step]
        for person in changed:
            attributes = dict(store.get(person.id))
            attributes["first_name"] = f"Changed{person.index}"
            store.put(person.id, attributes)
        return changed

    def close(self) -> None:
        for sandbox in (self.rci, *self.sandboxes.values()):
            sandbox.stop()
        self.database.drop()


def run_sync(shop: Shop) -> dict[str, Any]:
    """``python app.py sync rci-customers --tenant T`` as a child: its summary, wall time,
    exit status and peak RSS (``wait4``: this one child's)."""
    out = tempfile.TemporaryFile("w+")
    err = tempfile.TemporaryFile("w+")
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "app.py", "sync", "rci-customers", "--tenant",
                              shop.tenant], cwd=ROOT, env=shop.env(), stdout=out, stderr=err)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    lines = out.read().strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = err.read()[-3000:]
        raise SystemExit(f"sync exited {child.returncode}: {tail}")
    return {"summary": json.loads(lines[-1]), "wall": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "table": lines[:-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=100.0,
                        help="the sandboxes' clock speed (and the clients' budgets')")
    parser.add_argument("--consent-every", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01,
                        help="the fraction of customers changed before the second walk")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server's URL (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    kind = "PostgreSQL" if args.database_url else "SQLite"
    print(f"python {platform.python_version()}, {platform.machine()}, {kind}, "
          f"{args.customers:,} customers, rate scale {args.scale:g}", flush=True)
    shop = Shop(args)
    try:
        traffic = first_walk_traffic(args.customers, args.consent_every)
        minimum = traffic.minimum()
        binding = max(minimum, key=minimum.get)
        first = run_sync(shop)
        least = minimum[binding] / args.scale
        answered = shop.answered()
        print(f"\nfirst walk: {first['summary']['read']:,} read, "
              f"{first['summary']['sent']:,} sent, dead {first['summary']['dead']}")
        print("| service | requests needed | requests answered | minimum (service s) |")
        print("|---|---|---|---|")
        for name in ("rci", *DESTINATIONS):
            print(f"| {name} | {getattr(traffic, name):,} | {answered[name]:,} | "
                  f"{minimum[name]:,.0f} |")
        print(f"wall {first['wall']:.1f} s against a minimum of {least:.1f} s "
              f"({binding}'s limits at scale {args.scale:g}): "
              f"{first['wall'] / least if least else float('nan'):.3f}x; "
              f"peak RSS of the sync process {first['peak_rss_mb']:.0f} MB", flush=True)

        changed = shop.change(args.changed)
        before = shop.answered()
        second = run_sync(shop)
        after = shop.answered()
        sent = {name: after[name] - before[name] for name in after}
        consented = sum(1 for p in changed if p.index % args.consent_every == 0)
        needed = {"rci": math.ceil(args.customers / RCI_PAGE),
                  "replenit": math.ceil(consented / REPLENIT_BATCH),
                  "rekindle": math.ceil(len(changed) / REKINDLE_BATCH),
                  "rejoiner": REJOINER_REQUESTS_PER_PROFILE * len(changed)}
        summary = second["summary"]
        print(f"\nsecond walk, {len(changed):,} changed ({args.changed:.1%}): "
              f"changed {summary['changed']:,}, sent {summary['sent']:,}, "
              f"skipped {summary['skipped']:,}, wall {second['wall']:.1f} s, "
              f"peak RSS {second['peak_rss_mb']:.0f} MB")
        print("| service | requests sent | minimum the changes need | ratio |")
        print("|---|---|---|---|")
        for name in ("rci", *DESTINATIONS):
            ratio = sent[name] / needed[name] if needed[name] else float("nan")
            print(f"| {name} | {sent[name]:,} | {needed[name]:,} | {ratio:.3f} |")
        print(f"sandbox answers (whole run): {shop.statuses()}", flush=True)
    finally:
        shop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
