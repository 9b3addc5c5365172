"""Erasure, as far as the store goes: the customer's personal data is gone from every table (on
SQLite, from the file's very bytes), a tombstone refuses every later import of the customer,
and another tenant is not touched."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, inspect, select, text

from gateway import ingest
from gateway.store import erasure, idempotency, records
from gateway.store.events import list_events, list_trigger_page
from gateway.store.tables import customers, events, orders, tombstones

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


class Person:
    """A customer whose personal data no other test uses, so a scan can look for it."""

    def __init__(self) -> None:
        token = secrets.token_hex(6)
        self.email = f"erase-{token}@example.com"
        self.phone = "+1415" + str(int(token, 16) % 10**7).zfill(7)
        self.last_name = f"Zyx{token}"
        self.shop_id = f"shop-{token}"
        self.key = secrets.token_hex(8)  # an idempotency key

    def canonical(self) -> dict:
        return {"email": self.email, "first_name": "Erin", "last_name": self.last_name,
                "phone": self.phone, "external_ids": {"replenit": self.shop_id},
                "address": {"line1": "1 Secret Lane", "city": "Hidden"},
                "tags": ["vip"], "metadata": {"note": self.last_name},
                "consent": {"email": True}}

    def order(self, order_id: str, days: int = 0) -> dict:
        return {"id": order_id, "placed_at": (NOW - timedelta(days=days)).isoformat(),
                "total": "20.00", "currency": "USD", "customer_email": self.email,
                "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "20.00"}]}

    def secrets(self) -> list[str]:
        return [self.email, self.phone, self.last_name, self.shop_id]


def run(engine, tenant_id, topic, fmt, payload, now=NOW):
    with engine.begin() as conn:
        return ingest.ingest(conn, tenant_id, topic, fmt, payload, now=now)


def held(engine, tenant_id: str, person: Person) -> str:
    """Give the tenant the person: profile, orders (one a convert), consent, a cart, scoring
    events, and a stored idempotent answer that holds them. Returns the customer id."""
    result = run(engine, tenant_id, "customers", "canonical", person.canonical(),
                 now=NOW - timedelta(days=200))
    customer_id = result.records[0].id
    run(engine, tenant_id, "orders", "canonical",
        [person.order("E-1", days=200), person.order("E-2", days=170)],
        now=NOW - timedelta(days=170))
    run(engine, tenant_id, "orders", "rejoiner",
        {"email": person.email, "cart_data": {"cart_value": 500, "order_number": "E-3"}},
        now=NOW - timedelta(days=100))
    run(engine, tenant_id, "unsubscribes", "canonical", {"email": person.email})
    run(engine, tenant_id, "conversions", "canonical", {"email": person.email})
    fp = idempotency.fingerprint("POST", "/api/v1/actions/update-customer", b"{}")
    with engine.begin() as conn:
        claim = idempotency.claim(conn, tenant_id, person.key, fp, now=NOW)
    answer = {"customer": {"id": customer_id, "email": person.email, "phone": person.phone,
                           "name": f"Erin {person.last_name}", "status": "lost"}}
    with engine.begin() as conn:
        idempotency.complete(conn, tenant_id, person.key, 200, json.dumps(answer),
                             token=claim.token)
    return customer_id


def _event_count(engine, tenant_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)
                            .where(events.c.tenant_id == tenant_id)).scalar_one()


def _count(engine, table, tenant_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)
                            .where(table.c.tenant_id == tenant_id)).scalar_one()


_SCAN = """
import sys
path, needles = sys.argv[1], sys.argv[2:]
for suffix in ("", "-wal"):
    try:
        with open(path + suffix, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        continue
    for needle in needles:
        if needle.encode() in data:
            print(suffix or "db", needle)
"""


def assert_nowhere(engine, needles: list[str]) -> None:
    """No byte of the SQLite file (after a checkpoint) holds any needle; on PostgreSQL, no
    row of any table does."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        assert busy == 0, "the checkpoint could not complete"
        # The file is read by another process: opening and closing it here would drop this
        # process's POSIX locks on the live database (SQLite's documented hazard), and a
        # later process could then reset the WAL under this one's open connections.
        found = subprocess.run([sys.executable, "-c", _SCAN, engine.url.database,
                                *needles], capture_output=True, text=True, check=True)
        assert found.stdout.split() == [], f"still in the database files: {found.stdout}"
        return
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for needle in needles:
                found = conn.execute(text(
                    f'SELECT count(*) FROM "{table}" AS t WHERE t::text ILIKE :needle'),
                    {"needle": f"%{needle}%"}).scalar_one()
                assert found == 0, f"{needle} is still in {table}"


def test_erasure_leaves_no_personal_data_anywhere(engine, make_tenant):
    tenant = make_tenant()
    person = Person()
    customer_id = held(engine, tenant.id, person)
    with engine.connect() as conn:
        about = [e for _, e in list_events(conn, tenant.id, limit=1000)
                 if e.item.get("customer_id") == customer_id]
    assert {"customer.created", "order.placed", "customer.unsubscribed", "cart.converted",
            "customer.status_changed"} <= {e.type for e in about}
    orders_before = _count(engine, orders, tenant.id)
    with engine.begin() as conn:
        done = erasure.erase_customer(conn, tenant.id, email=person.email.upper(), now=NOW)
    assert done.customer_id == customer_id and not done.already_redacted
    assert done.external_ids == {"replenit": person.shop_id}
    assert done.events_scrubbed >= len(about) - 1 and done.answers_scrubbed == 1
    assert_nowhere(engine, [person.email, person.phone, person.last_name,
                                          person.shop_id, "Secret Lane"])
    with engine.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.id == customer_id)).one()
        redacted = [e for _, e in list_events(conn, tenant.id, types=["customer.redacted"])]
        answers = conn.execute(text("SELECT count(*) FROM idempotency_keys "
                                    "WHERE tenant_id = :t"), {"t": tenant.id}).scalar_one()
        status_items, _ = list_trigger_page(conn, tenant.id, "customer-status")
    assert row.redacted_at == NOW and row.email is None and row.tags == []
    assert row.order_count == 3  # aggregates stay
    assert _count(engine, orders, tenant.id) == orders_before
    assert [e.id for e in redacted] == [done.event_id]
    assert redacted[0].item == {"id": done.event_id, "customer_id": customer_id,
                                "redacted_at": "2026-03-02T09:30:00Z"}
    assert answers == 0  # the stored answer that held the customer is forgotten
    assert status_items and all(i["email"] is None and i["phone"] is None
                                for i in status_items)


def test_a_tombstone_makes_every_later_ingest_a_counted_no_op(engine, make_tenant):
    tenant = make_tenant()
    person = Person()
    held(engine, tenant.id, person)
    with engine.begin() as conn:
        erasure.erase_customer(conn, tenant.id, email=person.email, now=NOW)
    customers_before = _count(engine, customers, tenant.id)
    orders_before, events_before = _count(engine, orders, tenant.id), _event_count(
        engine, tenant.id)
    with engine.begin() as conn:
        update = ingest.update_customer(conn, tenant.id, {
            "name": "Erin Again", "email": person.email, "phone": person.phone}, now=NOW)
    assert update.customer is None and update.result.skipped_erased == 1
    assert [r.outcome for r in update.result.records] == ["skipped_erased"]
    later = [
        ("orders", "canonical", person.order("E-9")),
        ("customers", "replenit", {"CustomerId": person.shop_id, "Name": "Erin"}),
        ("opt-ins", "rejoiner", {"email": person.email}),
        ("conversions", "rejoiner", {"email": person.email}),
        ("customers", "canonical", [person.canonical(), {"email": "someone.else@example.com"}]),
    ]
    skipped = 0
    for topic, fmt, payload in later:
        result = run(engine, tenant.id, topic, fmt, payload)
        skipped += result.skipped_erased
        assert result.records[0].outcome == "skipped_erased"
    assert skipped == 5
    assert _count(engine, orders, tenant.id) == orders_before
    assert _count(engine, customers, tenant.id) == customers_before + 1  # someone else only
    assert _event_count(engine, tenant.id) == events_before + 1  # someone else's creation
    with engine.connect() as conn:
        assert records.find_customer(conn, tenant.id, email=person.email) is None
        hashes = conn.execute(select(tombstones.c.hash).where(
            tombstones.c.tenant_id == tenant.id)).scalars().all()
    assert len(hashes) == 2 and all(len(h) == 64 for h in hashes)
    assert not any(s in h for h in hashes for s in person.secrets())


def test_erasure_is_per_tenant(engine, make_tenant):
    a, b = make_tenant("A"), make_tenant("B")
    person = Person()
    a_id = held(engine, a.id, person)
    b_id = run(engine, b.id, "customers", "canonical", person.canonical()).records[0].id
    with engine.begin() as conn:
        assert erasure.erase_customer(conn, b.id, customer_id=a_id) is None
        assert erasure.erase_customer(conn, a.id, email=person.email, now=NOW)
        assert not erasure.is_erased(conn, b.id, email=person.email)
        assert erasure.is_erased(conn, a.id, email=person.email)
    with engine.connect() as conn:
        theirs = records.get_customer(conn, b.id, b_id)
    assert theirs.email == person.email and theirs.phone == person.phone
    result = run(engine, b.id, "orders", "canonical", person.order("B-1"))
    assert result.skipped_erased == 0 and result.records[0].outcome == "created"


def test_erasures_topic_and_a_redacted_rci_customer_erase(engine, make_tenant):
    tenant = make_tenant()
    person = Person()
    customer_id = held(engine, tenant.id, person)
    result = run(engine, tenant.id, "erasures", "replenit", {"customerId": person.shop_id})
    assert [(r.kind, r.id, r.outcome) for r in result.records] == [
        ("erasure", customer_id, "erased")]
    assert [e.type for e in result.emitted] == ["customer.redacted"]
    again = run(engine, tenant.id, "erasures", "canonical", {"customer_id": customer_id})
    assert again.records[0].outcome == "unchanged" and again.events == []
    # an RCI customer the gateway never held, redacted at RCI: tombstoned, never imported
    redacted = {"type": "customer", "id": "rci-77", "attributes": {
        "remote_created_at": None, "remote_updated_at": None, "first_name": None,
        "last_name": None, "email": None, "email_marketing_consent": False,
        "created_at": "2022-01-26T17:36:14.440Z", "updated_at": "2022-01-26T17:36:14.440Z",
        "ltv_cents": 0, "ltv_currency": "USD", "orders_count": 0, "recent_order_at": None,
        "recency_score": None, "frequency_score": None, "monetary_score": None, "rfm": None,
        "grade": None, "acquisition_source": None, "cohort": None,
        "redacted_at": "2022-02-01T00:00:00.000Z"}}
    first = run(engine, tenant.id, "customers", "rci", redacted)
    assert first.records[0].outcome == "tombstoned"
    with engine.connect() as conn:
        assert erasure.is_erased(conn, tenant.id, external_ids={"rci": "rci-77"})


def test_an_erasure_names_its_customer(engine, tenant):
    with engine.begin() as conn:
        with pytest.raises(ValueError):
            erasure.erase_customer(conn, tenant.id)
        assert erasure.erase_customer(conn, tenant.id, email="nobody@example.com") is None
        assert erasure.erase_customer(conn, tenant.id, email="not an email") is None


def test_dead_lettered_webhook_posts_naming_the_customer_are_emptied(engine, make_tenant):
    from gateway.store.tables import webhook_inbox

    tenant, other = make_tenant(), make_tenant()
    person = Person()
    held(engine, tenant.id, person)
    body = json.dumps({"email": person.email, "note": "refused by ingest"})
    with engine.begin() as conn:
        for owner, hook_id in ((tenant.id, "wh-dead"), (other.id, "wh-other")):
            conn.execute(webhook_inbox.insert().values(
                tenant_id=owner, webhook_id=hook_id, topic="customers", format="canonical",
                body=body, received_at=NOW, state="dead", attempts=1, reason="invalid"))
    with engine.begin() as conn:
        erasure.erase_customer(conn, tenant.id, email=person.email, now=NOW)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(webhook_inbox.c.tenant_id, webhook_inbox.c.body).where(
            webhook_inbox.c.webhook_id.in_(["wh-dead", "wh-other"]))).all())
    assert rows[tenant.id] == ""
    assert rows[other.id] == body  # another tenant's post is not this erasure's business
