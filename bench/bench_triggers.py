"""Benchmark: trigger page latency (p50/p99) on a large tenant, on SQLite or PostgreSQL.

    python bench/bench_triggers.py --customers 1000000 --events 5000000
    python bench/bench_triggers.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

It loads N customers (bulk insert: executemany on SQLite, COPY on PostgreSQL) and M events
through the store's own bulk writer (:func:`gateway.store.events.append_events`, which writes
each event's trigger memberships and customer beside it), then reads pages of 100 the way the
API does (:func:`gateway.store.events.list_trigger_page`): the first page and a deep page
(a cursor 90% of the way back) of each trigger, ``--reads`` times each, and prints p50 and p99
in milliseconds. With ``--append`` the table also goes to ``bench/RESULTS.md``. On PostgreSQL
the database named in the URL is used to create (and afterwards drop) a fresh one beside it.

The event mix: 40% ``order.placed``, 25% ``customer.status_changed`` (into every status, so a
quarter of them are not customer-status items), 10% ``customer.created``, 10% consent changes,
10% ``product.updated``, 5% ``order.cancelled``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select, text  # noqa: E402 - after the path insert
from sqlalchemy.engine import make_url  # noqa: E402

from gateway.store import db  # noqa: E402
from gateway.store.events import append_events, list_trigger_page  # noqa: E402
from gateway.store.tables import event_triggers, events  # noqa: E402

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TENANT = "ten_bench_triggers"
CHUNK = 20_000
STATUSES = ("active", "at_risk", "lapsed", "lost")

#: (label, trigger, status, types): the pages read.
PAGES = (
    ("customer-status", "customer-status", None, None),
    ("customer-status ?status=lapsed", "customer-status", "lapsed", None),
    ("new-order", "new-order", None, None),
    ("consent-changed", "consent-changed", None, None),
    ("events", "events", None, None),
    ("events ?type=order.placed", "events", None, ["order.placed"]),
)


def _customers(n: int):
    stamp = NOW - timedelta(days=1000)
    for i in range(n):
        yield (f"cus_{i:010d}", TENANT, f"c{i}@bench.example", f"First{i}", f"Last{i}",
               "[]", "{}", "[]", stamp, stamp)


def load_customers(engine, n: int) -> None:
    columns = ("id, tenant_id, email, first_name, last_name, tags, metadata, segments, "
               "created_at, updated_at")
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            cursor = conn.connection.driver_connection.cursor()
            with cursor, cursor.copy(f"COPY customers ({columns}) FROM STDIN") as copy:
                for row in _customers(n):
                    copy.write_row(row)
        else:
            batch = []
            for row in _customers(n):
                stamp = row[8].strftime("%Y-%m-%d %H:%M:%S.%f")
                batch.append((*row[:8], stamp, stamp))
                if len(batch) == 50_000:
                    conn.exec_driver_sql(f"INSERT INTO customers ({columns}) VALUES "
                                         f"({', '.join('?' * 10)})", batch)
                    batch = []
            if batch:
                conn.exec_driver_sql(f"INSERT INTO customers ({columns}) VALUES "
                                     f"({', '.join('?' * 10)})", batch)


def _planned(rng: random.Random, customers: int, start: int, count: int):
    for i in range(start, start + count):
        customer = f"cus_{rng.randrange(customers):010d}"
        roll = rng.random()
        if roll < 0.40 or 0.95 <= roll:
            type_ = "order.placed" if roll < 0.40 else "order.cancelled"
            yield type_, f"O-{i}", {
                "order_id": f"O-{i}", "customer_id": customer, "email": f"{customer}@x.example",
                "placed_at": "2025-12-31T10:00:00Z", "total": "59.97", "currency": "USD",
                "item_count": 3, "line_count": 1, "cancelled": type_ == "order.cancelled"}
        elif roll < 0.65:
            status = STATUSES[i % 4]
            yield "customer.status_changed", customer, {
                "customer_id": customer, "name": "First Last", "email": f"{customer}@x.example",
                "phone": None, "status": status, "previous_status": STATUSES[(i + 1) % 4],
                "engagement_score": 40, "last_purchase_date": "2025-06-01",
                "total_spent": 420.5, "purchase_count": 7, "returned_at": None,
                "updated_at": "2025-12-31T10:00:00Z", "changed_at": "2025-12-31T10:00:00Z"}
        elif roll < 0.75:
            yield "customer.created", customer, {
                "customer_id": customer, "name": "First Last", "email": f"{customer}@x.example",
                "first_name": "First", "last_name": "Last", "created_at": "2025-12-31T10:00:00Z"}
        elif roll < 0.85:
            given = bool(i % 2)
            yield ("customer.opted_in" if given else "customer.unsubscribed"), customer, {
                "customer_id": customer, "email": f"{customer}@x.example", "channel": "email",
                "consent": given, "changed_at": "2025-12-31T10:00:00Z"}
        else:
            yield "product.updated", f"P-{i % 5000}", {
                "product_id": f"P-{i % 5000}", "name": "Thing", "taxonomy": "A > B",
                "variant_count": 2, "available_count": 2}


def load_events(engine, customers: int, n: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        with engine.begin() as conn:
            append_events(conn, TENANT, list(_planned(rng, customers, start,
                                                      min(CHUNK, n - start))),
                          occurred_at=NOW, source="bench")
    return time.perf_counter() - started


def deep_cursor(engine, trigger: str, status: str | None, types) -> int | None:
    """A ``before`` cursor about 90% of the way back through the trigger's items."""
    with engine.connect() as conn:
        if trigger == "events":
            query = select(events.c.seq).where(events.c.tenant_id == TENANT)
            if types:
                query = query.where(events.c.type.in_(types))
            column = events.c.seq
        else:
            query = select(event_triggers.c.seq).where(event_triggers.c.tenant_id == TENANT,
                                                       event_triggers.c.trigger == trigger)
            if status:
                query = query.where(event_triggers.c.status == status)
            column = event_triggers.c.seq
        total = conn.execute(select(text("count(*)")).select_from(query.subquery())).scalar()
        if not total:
            return None
        return conn.execute(query.order_by(column.desc()).offset(int(total * 0.9))
                            .limit(1)).scalar()


def measure(engine, reads: int) -> list[tuple[str, str, float, float, int]]:
    rows = []
    for label, trigger, status, types in PAGES:
        for depth, before in (("first", None), ("deep", deep_cursor(engine, trigger, status,
                                                                       types))):
            timings, size = [], 0
            with engine.connect() as conn:
                for _ in range(reads):
                    started = time.perf_counter()
                    with conn.begin():
                        items, _ = list_trigger_page(conn, TENANT, trigger, status=status,
                                                     types=types, before=before, limit=100)
                    timings.append((time.perf_counter() - started) * 1000)
                    size = len(items)
            timings.sort()
            p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
            rows.append((label, depth, statistics.median(timings), p99, size))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--database-url", default=os.environ.get("GATEWAY_BENCH_DATABASE_URL"))
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()

    drop = None
    if args.database_url and args.database_url.startswith("postgresql"):
        base = make_url(args.database_url)
        name = f"bench_triggers_{secrets.token_hex(3)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        url = base.set(database=name).render_as_string(hide_password=False)
        kind = "PostgreSQL"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='bench_triggers_')}/gateway.db"
        kind = "SQLite"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, settings, created_at, updated_at) "
                              "VALUES (:id, 'bench', '{}', :t, :t)"), {"id": TENANT, "t": NOW})
        started = time.perf_counter()
        load_customers(engine, args.customers)
        customers_s = time.perf_counter() - started
        events_s = load_events(engine, args.customers, args.events)
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
        print(f"{kind}: {args.customers:,} customers in {customers_s:.1f} s, "
              f"{args.events:,} events in {events_s:.1f} s")
        rows = measure(engine, args.reads)
    finally:
        engine.dispose()
        if drop is not None:
            drop()
    table = ["| database | trigger | page | p50 ms | p99 ms | items |", "|---|---|---|---|---|---|"]
    table += [f"| {kind} | {label} | {depth} | {p50:.2f} | {p99:.2f} | {size} |"
              for label, depth, p50, p99, size in rows]
    print("\n".join(table))
    if args.append:
        command = "python bench/bench_triggers.py " + " ".join(sys.argv[1:]).replace(
            " --append", "")
        with open(ROOT / "bench" / "RESULTS.md", "a") as out:
            out.write(f"\n## Trigger pages ({kind}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} "
                      f"UTC, {platform.machine()}, {os.cpu_count()} cores)\n\n"
                      f"```\n{command}\n```\n\n{args.customers:,} customers, "
                      f"{args.events:,} events (loaded in {events_s:.0f} s through "
                      f"`append_events`); {args.reads} reads of each page of 100.\n\n"
                      + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
