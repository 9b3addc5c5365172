"""A customer an ingest just created, scored from the orders it wrote (gateway/scoring/known.py)
rather than through the facts query: the same stored scores and the same events."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import pytest
from sqlalchemy import event, select

from gateway import ingest
from gateway.ingest import Submission
from gateway.scoring import customer as scoring_customer
from gateway.scoring.customer import _SCORED, rescore_customers
from gateway.store.events import list_events
from gateway.store.tables import customers

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def order(number: str, email: str, placed: str, *, total: str = "40.00",
          currency: str = "USD", cancelled: bool = False) -> dict:
    body = {"id": number, "placed_at": placed, "total": total, "currency": currency,
            "customer_email": email,
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}]}
    if cancelled:
        body["cancelled"] = True
    return body


def submissions() -> list[Submission]:
    """New customers' orders: recent (active, no event), old (a first status worth an
    event), cancelled, in another currency, several for one customer in an array (a gap),
    an order resent changed within an array, one moved to another customer."""
    payloads = [
        order("A-1", "active@example.com", "2026-02-20T10:00:00Z"),
        order("L-1", "lapsed@example.com", "2025-08-01T10:00:00.250000Z"),
        order("X-1", "lost@example.com", "2024-01-01T00:00:00Z", total="12.34"),
        order("C-1", "cancelled@example.com", "2026-01-01T00:00:00Z", cancelled=True),
        order("E-1", "euro@example.com", "2025-11-01T00:00:00Z", currency="EUR"),
        [order("M-1", "many@example.com", "2025-06-01T00:00:00Z"),
         order("M-2", "many@example.com", "2025-09-01T00:00:00Z", total="60.00"),
         order("M-3", "many@example.com", "2025-09-01T08:00:00Z", cancelled=True),
         order("M-4", "many@example.com", "2025-10-15T00:00:00Z", total="5.00")],
        [order("R-1", "resent@example.com", "2025-07-01T00:00:00Z"),
         order("R-1", "resent@example.com", "2025-07-01T00:00:00Z", total="45.00")],
        [order("V-1", "from@example.com", "2025-05-01T00:00:00Z"),
         order("V-1", "to@example.com", "2025-05-01T00:00:00Z")],
    ]
    return [Submission("orders", "canonical", payload, NOW) for payload in payloads]


def scored(engine, tenant_id: str) -> tuple[dict, list]:
    """Each customer's score columns by email, and the events' types and items by email
    (without the ids, which differ between tenants)."""
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.email, *(customers.c[c] for c in _SCORED))
                            .where(customers.c.tenant_id == tenant_id)).all()
        found = [e for _, e in list_events(conn, tenant_id, limit=1000)][::-1]
    by_email = {row.email: {k: v for k, v in row._mapping.items() if k != "id"} for row in rows}
    items = [(e.type, {k: v for k, v in e.item.items() if k not in ("id", "customer_id")})
             for e in found]
    return by_email, items


@contextmanager
def sql_statements(engine) -> Iterator[list[str]]:
    """The statements the engine runs in the block."""
    seen: list[str] = []

    def listener(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


@pytest.mark.parametrize("batched", [True, False], ids=["ingest_batch", "ingest"])
def test_new_customers_are_scored_as_the_facts_query_scores_them(engine, make_tenant,
                                                                 monkeypatch, batched):
    known, queried = make_tenant(), make_tenant()

    def store(tenant_id: str) -> None:
        with engine.begin() as conn:
            if batched:
                outcomes = ingest.ingest_batch(conn, tenant_id, submissions())
                assert all(isinstance(o, ingest.IngestResult) for o in outcomes)
            else:
                for sub in submissions():
                    ingest.ingest(conn, tenant_id, sub.topic, sub.fmt, sub.payload, now=sub.now)

    with sql_statements(engine) as seen:
        store(known.id)
    facts_queries = sum("WITH agg AS" in s for s in seen)
    with monkeypatch.context() as patch:  # every customer through the query instead
        patch.setattr(scoring_customer, "known_facts", lambda *a, **k: None)
        store(queried.id)

    rows, items = scored(engine, known.id)
    assert (rows, items) == scored(engine, queried.id)
    # The cases are what they say: scored, a first status worth an event, a gap.
    assert rows["active@example.com"]["status"] == "active"
    assert rows["lapsed@example.com"]["status"] in ("lapsed", "lost")
    assert rows["cancelled@example.com"]["status"] is None
    assert rows["euro@example.com"]["ltv_minor"] == 0
    assert rows["many@example.com"]["order_count"] == 3
    assert rows["resent@example.com"]["ltv_minor"] == 4500
    assert rows["from@example.com"]["order_count"] is None
    assert rows["to@example.com"]["order_count"] == 1
    assert {t for t, _ in items} >= {"customer.status_changed", "order.placed"}
    # Only the customers whose orders changed hands were scored through the query (the
    # resent and the moved order's), the rest from the orders the ingest wrote.
    assert 1 <= facts_queries <= 3

    # And the query, asked again at the same moment, changes nothing and writes no event.
    with engine.begin() as conn:
        ids = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == known.id)).scalars().all()
        assert rescore_customers(conn, known.id, ids, now=NOW) == []
    assert scored(engine, known.id) == (rows, items)
