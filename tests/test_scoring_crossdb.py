"""The same data gives the same scores and the same events on SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from gateway import scoring
from gateway.model import Money
from gateway.store import db
from gateway.store.events import list_events
from gateway.store.tables import customers, tenants
from tests.conftest import POSTGRES_HINT, _postgres_database, postgres_base_url
from tests.test_scoring import DAY, NOW, SCORE_COLUMNS, add_customer, add_order

TENANT = "ten_crossdb_scoring"


def _build(engine) -> None:
    """Sixty customers with varied histories: rhythms, ties, other currencies, cancellations,
    reported aggregates only, and a win-back that comes back."""
    rng = random.Random(7)
    with engine.begin() as conn:
        conn.execute(tenants.insert().values(id=TENANT, name="cross", settings={},
                                             created_at=NOW, updated_at=NOW))
        for i in range(60):
            key = f"x{i:03d}"
            if i % 10 == 9:  # reported aggregates only
                add_customer(conn, TENANT, key, order_count=rng.randrange(1, 9),
                             last_order_at=NOW - rng.randrange(0, 400) * DAY,
                             lifetime_value=Money(rng.randrange(0, 90000), "USD"),
                             cohort=f"2023-{rng.randrange(1, 13):02d}" if i % 20 == 9 else None)
                continue
            cid = add_customer(conn, TENANT, key)
            count = 1 + i % 6
            last = NOW - rng.randrange(0, 500) * DAY - rng.randrange(86_400) * (DAY / 86_400)
            gap = rng.randrange(1, 90) * DAY
            for k in range(count):
                add_order(conn, TENANT, cid, last - k * gap,
                          amount=f"{rng.randrange(1, 300)}.{rng.randrange(100):02d}",
                          currency="EUR" if rng.random() < 0.1 else "USD",
                          cancelled=rng.random() < 0.05)
            if i % 7 == 0:  # same values as the previous customer: a tie broken by id
                add_order(conn, TENANT, cid, NOW - 3 * DAY, amount="10.00")
    scoring.rescore_tenant(engine, TENANT, now=NOW)
    with engine.begin() as conn:
        lapsed = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == TENANT, customers.c.status.in_(["lapsed", "lost"]))
            .order_by(customers.c.id)).scalars().all()
        for cid in lapsed[:4]:
            scoring.record_winback(conn, TENANT, cid, at=NOW + DAY)
        for cid in lapsed[:2]:
            add_order(conn, TENANT, cid, NOW + 5 * DAY, amount="55.55")
    scoring.rescore_tenant(engine, TENANT, now=NOW + 40 * DAY)


def _results(url: str) -> tuple[list, list]:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        _build(engine)
        with engine.connect() as conn:
            rows = conn.execute(select(customers.c.id, *[customers.c[c] for c in SCORE_COLUMNS])
                                .where(customers.c.tenant_id == TENANT)
                                .order_by(customers.c.id)).all()
            listed = list_events(conn, TENANT, limit=10_000)
    finally:
        engine.dispose()
    events = [(e.type, e.subject_id, {k: v for k, v in e.item.items() if k != "id"})
              for _, e in reversed(listed)]
    return [tuple(r) for r in rows], events


def test_sqlite_and_postgresql_give_the_same_results_row_by_row(tmp_path):
    sqlite_rows, sqlite_events = _results(f"sqlite:///{tmp_path / 'scoring.db'}")
    assert len(sqlite_rows) == 60
    assert {r[SCORE_COLUMNS.index("status") + 1] for r in sqlite_rows} >= {
        "active", "at_risk", "lapsed", "lost"}
    assert any(e[0] == "customer.returned" for e in sqlite_events)

    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL half not run: {POSTGRES_HINT}")
    url, drop = _postgres_database(base, "gw_scoring_crossdb")
    try:
        pg_rows, pg_events = _results(url)
    finally:
        drop()
    assert len(pg_rows) == len(sqlite_rows)
    for mine, theirs in zip(sqlite_rows, pg_rows):
        assert mine == theirs, f"customer {mine[0]} differs"
    assert pg_events == sqlite_events
