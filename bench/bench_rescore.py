"""Benchmark: re-score a tenant of N customers with about 5N orders, on SQLite or PostgreSQL.

    python bench/bench_rescore.py --customers 100000
    python bench/bench_rescore.py --customers 1000000 --database-url postgresql+psycopg://...

It builds the data with bulk inserts (executemany on SQLite, COPY on PostgreSQL; not through
the per-row upserts), then runs :func:`gateway.scoring.rescore_tenant` three times, each in a
fresh process so that its memory figures are its own:

* ``first``: every customer is scored for the first time (every row changes; a first status
  that is not ``active`` gives an event);
* ``again``: the same moment again (nothing changes, nothing is written);
* ``next-day``: one day later (statuses and scores move with time alone).

Each prints seconds, the process's peak RSS growth during the call (``ru_maxrss`` delta) and,
with ``--tracemalloc``, the peak of Python allocations (tracemalloc slows Python code, so its
run's seconds are not the headline figure). Figures go to stdout; the database is left in
place (``--reuse`` clears the scores and events and runs the passes again without reloading).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402 - after the path insert
from sqlalchemy.engine import make_url  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN_DAYS = 3 * 365
CHUNK = 50_000
TENANT = "ten_bench_rescore"


def _customers(n: int):
    stamp = NOW - timedelta(days=SPAN_DAYS)
    for i in range(n):
        yield (f"cus_{i:010d}", TENANT, f"c{i}@bench.example", f"First{i}", f"Last{i}",
               "[]", "{}", "[]", stamp, stamp)


def _orders(n: int, per_customer: int):
    """About ``per_customer`` orders each (1 to 2*per_customer-1), over three years; 2% are
    cancelled and 3% are in EUR (not the base currency)."""
    rng = random.Random(42)
    seq = 0
    for i in range(n):
        count = 1 + (i * 7919) % (2 * per_customer - 1)
        # Each customer has its own rhythm and its own last order.
        last = NOW - timedelta(seconds=rng.randrange(SPAN_DAYS * 86_400 // 2))
        gap = timedelta(days=rng.randrange(7, 120), seconds=rng.randrange(86_400))
        for k in range(count):
            placed = last - gap * k
            seq += 1
            yield (f"ord_{seq:011d}", TENANT, f"x{seq}", f"cus_{i:010d}", placed,
                   rng.randrange(500, 50_000), "EUR" if rng.random() < 0.03 else "USD",
                   rng.random() < 0.02, placed, placed)


CUSTOMER_COLS = ("id, tenant_id, email, first_name, last_name, tags, metadata, segments, "
                 "created_at, updated_at")
ORDER_COLS = ("id, tenant_id, external_id, customer_id, placed_at, total_minor, currency, "
              "cancelled, created_at, updated_at")


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _load_sqlite(engine, n: int, per_customer: int) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")

        def put(table: str, cols: str, rows) -> None:
            marks = ", ".join("?" * len(cols.split(",")))
            batch = []
            for row in rows:
                batch.append(tuple(_sqlite_time(v) if isinstance(v, datetime) else v
                                   for v in row))
                if len(batch) >= CHUNK:
                    cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch)
                    batch.clear()
            if batch:
                cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batch)

        put("customers", CUSTOMER_COLS, _customers(n))
        put("orders", ORDER_COLS, _orders(n, per_customer))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def _load_postgres(engine, n: int, per_customer: int) -> None:
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        with pg.cursor() as cur:
            for table, cols, rows in (("customers", CUSTOMER_COLS, _customers(n)),
                                      ("orders", ORDER_COLS, _orders(n, per_customer))):
                with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        pg.commit()
        with pg.cursor() as cur:
            cur.execute("ANALYZE customers")
            cur.execute("ANALYZE orders")
        pg.commit()
    finally:
        raw.close()


def load(url: str, n: int, per_customer: int) -> None:
    from gateway.store import db

    engine = db.make_engine(url)
    db.upgrade(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name, settings, created_at, updated_at) "
                          "VALUES (:id, 'bench', '{}', :t, :t)"),
                     {"id": TENANT, "t": _sqlite_time(NOW) if url.startswith("sqlite") else NOW})
    if url.startswith("sqlite"):
        _load_sqlite(engine, n, per_customer)
    else:
        _load_postgres(engine, n, per_customer)
    with engine.connect() as conn:
        orders = conn.execute(text("SELECT COUNT(*) FROM orders")).scalar()
    engine.dispose()
    print(json.dumps({"loaded_customers": n, "loaded_orders": orders,
                      "load_seconds": round(time.perf_counter() - started, 1)}), flush=True)


def reset(url: str) -> None:
    """Forget every score and event of the bench tenant, so the passes start cold again."""
    engine = create_engine(url)
    cleared = ", ".join(f"{c} = NULL" for c in (
        "order_count", "ltv_minor", "ltv_currency", "first_order_at", "last_order_at",
        "typical_gap_days", "recency_score", "frequency_score", "monetary_score", "rfm",
        "grade", "rfm_source", "status", "engagement_score", "status_changed_at",
        "gateway_status", "gateway_score"))
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE customers SET {cleared}, segments = '[]' "
                          "WHERE tenant_id = :t"), {"t": TENANT})
        conn.execute(text("DELETE FROM events WHERE tenant_id = :t"), {"t": TENANT})
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE customers"))
    engine.dispose()


def rescore_once(url: str, now: datetime, trace: bool) -> dict:
    """One pass in this process: seconds, RSS growth, and (optionally) tracemalloc's peak."""
    import tracemalloc

    from gateway.scoring import rescore_tenant
    from gateway.store import db

    engine = db.make_engine(url)
    with engine.connect() as conn:  # open the pool's connection before measuring
        conn.execute(text("SELECT 1"))
    if trace:
        tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = rescore_tenant(engine, TENANT, now=now)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {**result.as_dict(), "rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
               "peak_rss_mib": round(rss_after / 1024, 1)}
    if trace:
        figures["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders-per-customer", type=int, default=5)
    parser.add_argument("--database-url", default=None,
                        help="default: a new SQLite file in /tmp; a PostgreSQL URL names a "
                             "server on which a database bench_rescore_<N> is (re)created")
    parser.add_argument("--reuse", action="store_true",
                        help="do not (re)load the data; clear the scores and events instead")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also measure Python's peak allocations (slower)")
    parser.add_argument("--child", choices=["first", "again", "next-day"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        now = NOW + timedelta(days=1) if args.child == "next-day" else NOW
        print(json.dumps(rescore_once(args.url, now, args.tracemalloc)), flush=True)
        return

    n = args.customers
    if args.database_url and not args.database_url.startswith("sqlite"):
        base = make_url(args.database_url)
        name = f"bench_rescore_{n}"
        url = base.set(database=name).render_as_string(hide_password=False)
        if not args.reuse:
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
    else:
        default = Path(tempfile.gettempdir()) / f"bench_rescore_{n}.db"
        url = args.database_url or f"sqlite:///{default}"
        path = make_url(url).database
        if not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
    if args.reuse:
        reset(url)
    else:
        load(url, n, args.orders_per_customer)
    print(json.dumps({"database": make_url(url).get_backend_name(), "customers": n,
                      "nproc": os.cpu_count()}), flush=True)
    for phase in ("first", "again", "next-day"):
        cmd = [sys.executable, __file__, "--child", phase, "--url", url]
        if args.tracemalloc:
            cmd.append("--tracemalloc")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(json.dumps({"pass": phase, **json.loads(out.strip().splitlines()[-1])}),
              flush=True)


if __name__ == "__main__":
    main()
