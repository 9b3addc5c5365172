"""``ingest_batch``: several payloads of one tenant in one transaction, each as ``ingest``
would store it, a refused one storing nothing (the webhook drainer's path)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway import ingest
from gateway.ingest import IngestResult, PayloadInvalid, Submission, UnsupportedFormat
from gateway.store import records
from gateway.store.events import list_events

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def order(number: str, email: str, total: str = "40.00", day: int = 1) -> dict:
    return {"id": number, "placed_at": f"2026-02-{day:02d}T12:00:00Z", "total": total,
            "currency": "USD", "customer_email": email,
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "20.00"}]}


def submissions() -> list[Submission]:
    """Customers made and changed, orders for them and for a new one, a product, an
    unsubscribe, an array: each at its own moment."""
    payloads = [
        ("customers", {"email": "ann@example.com", "first_name": "Ann"}),
        ("orders", order("O-1", "ann@example.com", day=1)),
        ("orders", order("O-2", "ann@example.com", "60.00", day=20)),
        ("orders", [order("O-3", "bob@example.com"), order("O-4", "cy@example.com")]),
        ("products", {"id": "P-1", "name": "Tank top"}),
        ("unsubscribes", {"email": "bob@example.com"}),
        ("orders", order("O-2", "ann@example.com", "60.00", day=20)),  # a resend: unchanged
        ("customers", {"email": "ann@example.com", "first_name": "Annie"}),
    ]
    return [Submission(topic, "canonical", payload, T0 + timedelta(minutes=i))
            for i, (topic, payload) in enumerate(payloads)]


def stored(engine, tenant_id: str) -> tuple[list, list]:
    """The tenant's events (type, the subject's email or key, moment, source) oldest first,
    and its customers' names, scores and consent, in a form two tenants compare by."""
    with engine.connect() as conn:
        found = [e for _, e in list_events(conn, tenant_id, limit=1000)][::-1]
        people = {e.subject_id: records.get_customer(conn, tenant_id, e.subject_id)
                  for e in found if e.subject_id and e.subject_id.startswith("cus")}
    events = [(e.type, people[e.subject_id].email if e.subject_id in people else e.subject_id,
               e.occurred_at, e.source) for e in found]
    customers = sorted((c.email, c.first_name, c.status, c.engagement_score, c.order_count,
                        c.lifetime_value, c.consent) for c in people.values())
    return events, customers


def test_a_batch_stores_what_ingesting_each_in_turn_stores(engine, make_tenant):
    one_by_one, batched = make_tenant(), make_tenant()
    for sub in submissions():
        with engine.begin() as conn:
            ingest.ingest(conn, one_by_one.id, sub.topic, sub.fmt, sub.payload, now=sub.now)
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, batched.id, submissions())
    assert all(isinstance(o, IngestResult) for o in outcomes)
    assert [[(r.kind, r.outcome) for r in o.records] for o in outcomes][-2:] == [
        [("order", "unchanged")], [("customer", "updated")]]
    events, customers = stored(engine, batched.id)
    assert (events, customers) == stored(engine, one_by_one.id)
    assert {when for _, _, when, _ in events} == {s.now for s in submissions()} - {
        submissions()[6].now}  # the resend wrote no event
    assert len(customers) == 3


def test_a_refused_submission_stores_nothing_and_the_others_are_stored(engine, make_tenant):
    tenant = make_tenant()
    with engine.begin() as conn:
        ingest.ingest(conn, tenant.id, "customers", "canonical",
                      [{"email": "a@example.com"}, {"email": "b@example.com"}], now=T0)
        a = records.find_customer(conn, tenant.id, email="a@example.com").id
    batch = [
        Submission("orders", "canonical", order("O-1", "new@example.com"), T0),
        Submission("customers", "canonical", {"id": a, "email": "b@example.com",
                                              "first_name": "Clash"}, T0),  # b's email
        Submission("orders", "canonical", {"id": "O-bad", "total": "x"}, T0),
        Submission("orders", "no-such-format", order("O-9", "z@example.com"), T0),
        Submission("orders", "canonical", order("O-2", "a@example.com"), T0),
    ]
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, tenant.id, batch)
    kinds = [type(o) for o in outcomes]
    assert kinds == [IngestResult, PayloadInvalid, PayloadInvalid, UnsupportedFormat,
                     IngestResult]
    assert "contradicts what is stored" in outcomes[1].message
    with engine.connect() as conn:
        assert records.get_customer(conn, tenant.id, a).first_name is None
        assert records.find_customer(conn, tenant.id, email="new@example.com") is not None
        assert records.find_customer(conn, tenant.id, email="z@example.com") is None
        kept = [e for _, e in list_events(conn, tenant.id, limit=100)]
    assert {e.id for e in kept} >= {i for o in outcomes if isinstance(o, IngestResult)
                                    for i in o.events}
    assert not any(e.type == "customer.updated" and e.subject_id == a for e in kept)


def test_an_empty_batch_does_nothing(engine, make_tenant):
    tenant = make_tenant()
    with engine.begin() as conn:
        assert ingest.ingest_batch(conn, tenant.id, []) == []
