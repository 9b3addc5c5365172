"""``ingest_batch``: several payloads of one tenant in one transaction, each as ``ingest``
would store it, a refused one storing nothing (the webhook drainer's path)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from gateway import ingest
from gateway.ingest import IngestResult, PayloadInvalid, Submission, UnsupportedFormat
from gateway.store import records
from gateway.store.events import list_events
from gateway.store.tables import order_lines

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
    customers = sorted(((c.email, c.first_name, c.status, c.engagement_score, c.order_count,
                         c.lifetime_value, c.consent) for c in people.values()), key=repr)
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


def erasing_submissions() -> list[Submission]:
    """Orders around an erasure of their customer, and a refusal after it (the batch is then
    stored again, each submission on its own)."""
    payloads = [
        ("orders", order("O-1", "ann@example.com", day=1)),
        ("customers", {"email": "bob@example.com", "first_name": "Bob"}),
        ("erasures", {"email": "ann@example.com"}),
        ("orders", order("O-2", "ann@example.com", day=2)),  # of an erased customer: skipped
        ("orders", order("O-3", "bob@example.com", day=3)),
        ("customers", {"email": "bob@example.com", "first_name": "Robert"}),
    ]
    return [Submission(topic, "canonical", payload, T0 + timedelta(minutes=i))
            for i, (topic, payload) in enumerate(payloads)]


def test_an_erasure_in_a_batch_scrubs_the_events_held_back_before_it(engine, make_tenant):
    one_by_one, batched, refused = make_tenant(), make_tenant(), make_tenant()
    for sub in erasing_submissions():
        with engine.begin() as conn:
            ingest.ingest(conn, one_by_one.id, sub.topic, sub.fmt, sub.payload, now=sub.now)
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, batched.id, erasing_submissions())
    assert [[r.outcome for r in o.records] for o in outcomes] == [
        ["created"], ["created"], ["erased"], ["skipped_erased"], ["created"], ["updated"]]
    assert stored(engine, batched.id) == stored(engine, one_by_one.id)
    # The same batch with a refusal in the middle: rolled back and stored again one by one.
    with engine.begin() as conn:
        bob = records.find_customer(conn, batched.id, email="bob@example.com").id
        ingest.ingest(conn, refused.id, "customers", "canonical",
                      {"email": "zed@example.com"}, now=T0)
        zed = records.find_customer(conn, refused.id, email="zed@example.com").id
    clash = Submission("customers", "canonical", {"id": zed, "email": "bob@example.com"},
                       T0 + timedelta(minutes=4, seconds=30))  # bob's email, by then
    subs = erasing_submissions()
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, refused.id, subs[:5] + [clash] + subs[5:])
    assert [type(o) for o in outcomes] == [IngestResult] * 5 + [PayloadInvalid, IngestResult]
    events, customers = stored(engine, refused.id)
    expected_events, expected_customers = stored(engine, one_by_one.id)
    assert events[1:] == expected_events  # after zed's customer.created
    assert [c for c in customers if c[0] != "zed@example.com"] == expected_customers
    with engine.connect() as conn:
        for tenant_id in (batched.id, refused.id):
            texts = [str(e.item) for _, e in list_events(conn, tenant_id, limit=100)]
            assert texts and not any("ann@example.com" in t for t in texts)
    assert bob


def test_lookups_answered_ahead_find_what_the_batch_itself_wrote(engine, make_tenant):
    """Keys that one record of a batch writes and a later one looks up (an email moved to a
    customer, then ordered with; an order sent twice), a tombstoned email and keys seen once:
    stored as ingesting each in turn stores them."""
    one_by_one, batched = make_tenant(), make_tenant()
    ids = {}
    for tenant in (one_by_one, batched):
        with engine.begin() as conn:
            ingest.ingest(conn, tenant.id, "customers", "canonical",
                          [{"email": "old@example.com"}, {"email": "gone@example.com"}], now=T0)
            ingest.ingest(conn, tenant.id, "erasures", "canonical",
                          {"email": "gone@example.com"}, now=T0)
            ids[tenant.id] = records.find_customer(conn, tenant.id, email="old@example.com").id
    payloads = lambda tenant_id: [  # noqa: E731
        ("orders", order("O-1", "new1@example.com")),
        ("orders", order("O-2", "gone@example.com")),
        ("customers", {"id": ids[tenant_id], "email": "moved@example.com"}),
        ("orders", order("O-3", "moved@example.com")),
        ("orders", order("O-4", "new2@example.com", "10.00")),
        ("orders", order("O-4", "new2@example.com", "12.00")),
    ]
    for tenant in (one_by_one, batched):
        subs = [Submission(topic, "canonical", payload, T0 + timedelta(minutes=i))
                for i, (topic, payload) in enumerate(payloads(tenant.id))]
        if tenant is one_by_one:
            for sub in subs:
                with engine.begin() as conn:
                    ingest.ingest(conn, tenant.id, sub.topic, sub.fmt, sub.payload,
                                  now=sub.now)
            continue
        with engine.begin() as conn:
            outcomes = ingest.ingest_batch(conn, tenant.id, subs)
        assert [[r.outcome for r in o.records] for o in outcomes] == [
            ["created"], ["skipped_erased"], ["updated"], ["created"], ["created"],
            ["updated"]]
    assert stored(engine, batched.id) == stored(engine, one_by_one.id)
    with engine.connect() as conn:
        moved = records.get_order(conn, batched.id, "O-3")
        assert moved.customer_id == ids[batched.id]
        assert records.get_order(conn, batched.id, "O-4").total.minor == 1200
        assert records.count_rows(conn, batched.id) == records.count_rows(conn, one_by_one.id)


def test_new_orders_lines_are_written_with_the_batch_and_dropped_with_a_refused_post(
        engine, make_tenant):
    tenant = make_tenant()
    two_lines = dict(order("O-5", "e@example.com"), lines=[
        {"sku": "SKU-1", "quantity": 1, "unit_price": "20.00"},
        {"sku": "SKU-2", "quantity": 1, "unit_price": "20.00"}])
    clash = {key: value for key, value in order("O-bad", "").items()
             if key != "customer_email"} | {"customer_id": "cus_nobody"}  # no such customer
    batch = [
        Submission("orders", "canonical", order("O-5", "e@example.com"), T0),
        Submission("orders", "canonical", [order("O-6", "f@example.com"), clash], T0),
        Submission("orders", "canonical", two_lines, T0 + timedelta(minutes=1)),  # O-5 again
        Submission("orders", "canonical", order("O-7", "g@example.com"), T0),
    ]
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, tenant.id, batch)
    assert [type(o) for o in outcomes] == [IngestResult, PayloadInvalid, IngestResult,
                                           IngestResult]
    with engine.connect() as conn:
        assert [line.sku for line in records.get_order(conn, tenant.id, "O-5").lines] == [
            "SKU-1", "SKU-2"]
        assert records.get_order(conn, tenant.id, "O-6") is None
        assert [line.sku for line in records.get_order(conn, tenant.id, "O-7").lines] == [
            "SKU-1"]
        assert conn.execute(select(func.count()).select_from(order_lines).where(
            order_lines.c.tenant_id == tenant.id)).scalar() == 3
    assert "contradicts what is stored" in outcomes[1].message  # refused while storing


def test_rows_held_for_a_post_survive_a_later_post_refused_after_writing_them(
        engine, make_tenant):
    """A refused post's savepoint rolls back only its own rows: what earlier posts held and
    the refused one wrote out (a stored order's lines replaced, which writes the held lines
    first) is written again, not lost."""
    tenant = make_tenant()
    with engine.begin() as conn:
        ingest.ingest(conn, tenant.id, "orders", "canonical", order("O-0", "old@example.com"),
                      now=T0)
    changed = dict(order("O-0", "old@example.com"), lines=[
        {"sku": "SKU-9", "quantity": 2, "unit_price": "20.00"}])
    clash = {key: value for key, value in order("O-bad", "").items()
             if key != "customer_email"} | {"customer_id": "cus_nobody"}  # no such customer
    batch = [
        Submission("orders", "canonical", order("O-1", "new@example.com"), T0),
        Submission("orders", "canonical", [changed, clash], T0),
        Submission("orders", "canonical", order("O-2", "two@example.com"), T0),
    ]
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, tenant.id, batch)
    assert [type(o) for o in outcomes] == [IngestResult, PayloadInvalid, IngestResult]
    with engine.connect() as conn:
        assert [line.sku for line in records.get_order(conn, tenant.id, "O-0").lines] == [
            "SKU-1"]
        for number in ("O-1", "O-2"):
            assert [line.sku for line in records.get_order(conn, tenant.id, number).lines] == [
                "SKU-1"], number
        assert records.get_order(conn, tenant.id, "O-bad") is None


def items(engine, tenant_id: str) -> list[tuple[str, dict]]:
    """The tenant's events oldest first: type and item, without the ids two tenants differ
    by (the event's, the customer's)."""
    with engine.connect() as conn:
        found = [e for _, e in list_events(conn, tenant_id, limit=1000)][::-1]
    return [(e.type, {k: v for k, v in e.item.items() if k not in ("id", "customer_id")})
            for e in found]


def test_scores_held_back_are_written_before_the_customer_is_read_again(engine, make_tenant):
    """A re-score's update is held to the batch's end; the next re-score of the customer (a
    second order, in the next post) and a customer post about it (whose item carries the
    scores) read it as written: the same events, items and scores as one post at a time."""
    one_by_one, batched = make_tenant(), make_tenant()
    payloads = [
        ("orders", order("O-1", "pat@example.com", day=1) | {"placed_at": "2025-06-01T00:00:00Z"}),
        ("orders", order("O-2", "pat@example.com") | {"placed_at": "2025-07-01T00:00:00Z"}),
        ("customers", {"email": "pat@example.com", "first_name": "Pat"}),
        ("orders", order("O-3", "pat@example.com") | {"placed_at": "2025-08-01T00:00:00Z"}),
        ("conversions", {"email": "pat@example.com", "order_number": "O-3"}),
    ]
    subs = [Submission(topic, "canonical", payload, T0 + timedelta(minutes=i))
            for i, (topic, payload) in enumerate(payloads)]
    for sub in subs:
        with engine.begin() as conn:
            ingest.ingest(conn, one_by_one.id, sub.topic, sub.fmt, sub.payload, now=sub.now)
    with engine.begin() as conn:
        outcomes = ingest.ingest_batch(conn, batched.id, subs)
    assert all(isinstance(o, IngestResult) for o in outcomes)
    expected = items(engine, one_by_one.id)
    assert items(engine, batched.id) == expected
    assert stored(engine, batched.id) == stored(engine, one_by_one.id)
    changes = [(item["previous_status"], item["status"]) for type_, item in expected
               if type_ == "customer.status_changed"]
    assert changes[0][0] is None and len(changes) >= 2  # a first status, then a change
    updated = [item for type_, item in expected if type_ == "customer.updated"]
    assert updated and updated[0]["purchase_count"] == 2
