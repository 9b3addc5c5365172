"""One ingest path: every topic x format pair of the design's table, on the run's database.

Payloads are the connectors' reference fixtures (``connectors/*/fixtures``) and the canonical
schemas' own examples.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select

from gateway import ingest, schemas
from gateway.ingest import PayloadInvalid, UnsupportedFormat
from gateway.model import Money
from gateway.store import records
from gateway.store.events import list_events, list_trigger_page
from gateway.store.tables import customers, orders, products

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def fixture(connector: str, name: str):
    return json.loads((ROOT / "connectors" / connector / "fixtures" / name).read_text())


def convert_with_order_number() -> dict:
    body = fixture("rejoiner", "convert_request.json")
    body["cart_data"]["order_number"] = "R-1001"
    return body


#: The design's table: topic -> the formats it takes.
TABLE = {
    "orders": ["canonical", "rejoiner", "replenit"],
    "customers": ["canonical", "rekindle", "rejoiner", "rci", "replenit"],
    "products": ["canonical", "replenit"],
    "conversions": ["canonical", "rejoiner"],
    "unsubscribes": ["canonical", "rejoiner"],
    "opt-ins": ["canonical", "rejoiner"],
    "erasures": ["canonical", "replenit"],
}

#: (topic, format) -> (payload, the record kind stored, what the first write's events hold).
PAIRS = {
    ("orders", "canonical"): (lambda: schemas.OrderSchema.Meta.example, "order",
                              {"customer.created", "order.placed"}),
    ("orders", "rejoiner"): (convert_with_order_number, "order",
                             {"customer.created", "order.placed"}),
    ("orders", "replenit"): (lambda: fixture("replenit", "orders_request.json"), "order",
                             {"customer.created", "order.placed"}),
    ("customers", "canonical"): (lambda: schemas.CustomerSchema.Meta.example, "customer",
                                 {"customer.created"}),
    ("customers", "rekindle"): (lambda: fixture("rekindle", "update_customer.request.json"),
                                "customer", {"customer.created"}),
    ("customers", "rejoiner"): (lambda: fixture("rejoiner", "customer_response.json"),
                                "customer", {"customer.created"}),
    ("customers", "rci"): (lambda: fixture("rci", "customer_example.json"), "customer",
                           {"customer.created"}),
    ("customers", "replenit"): (lambda: fixture("replenit", "customers_request.json"),
                                "customer", {"customer.created"}),
    ("products", "canonical"): (lambda: schemas.ProductSchema.Meta.example, "product",
                                {"product.updated"}),
    ("products", "replenit"): (lambda: fixture("replenit", "products_request.json"), "product",
                               {"product.updated"}),
    ("conversions", "canonical"): (lambda: schemas.CartSchema.Meta.example, "cart",
                                   {"customer.created", "cart.converted"}),
    ("conversions", "rejoiner"): (lambda: fixture("rejoiner", "convert_request.json"), "cart",
                                  {"customer.created", "cart.converted"}),
    ("unsubscribes", "canonical"): (lambda: schemas.UnsubscribeSchema.Meta.example, "consent",
                                    {"customer.created", "customer.unsubscribed"}),
    ("unsubscribes", "rejoiner"): (lambda: fixture("rejoiner", "unsubscribe_request.json"),
                                   "consent", {"customer.created", "customer.unsubscribed"}),
    ("opt-ins", "canonical"): (lambda: schemas.OptInSchema.Meta.example, "consent",
                               {"customer.created", "customer.opted_in"}),
    ("opt-ins", "rejoiner"): (lambda: fixture("rejoiner", "opt_in_request.json"), "consent",
                              {"customer.created", "customer.opted_in"}),
    ("erasures", "canonical"): (lambda: schemas.ErasureSchema.Meta.example, "erasure", set()),
    ("erasures", "replenit"): (lambda: {"customerId": "C-123"}, "erasure", set()),
}


def run(engine, tenant_id, topic, fmt, payload, *, now=NOW, **kw):
    with engine.begin() as conn:
        return ingest.ingest(conn, tenant_id, topic, fmt, copy.deepcopy(payload), now=now, **kw)


def events_of(engine, tenant_id):
    with engine.connect() as conn:
        return [e for _, e in list_events(conn, tenant_id, limit=1000)][::-1]


def count(engine, table, tenant_id):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)
                            .where(table.c.tenant_id == tenant_id)).scalar_one()


def test_the_accepted_formats_are_the_design_table():
    assert {topic: ingest.accepted_formats(topic) for topic in ingest.TOPICS} == TABLE
    assert set(PAIRS) == {(t, f) for t, formats in TABLE.items() for f in formats}


@pytest.mark.parametrize("topic,fmt", sorted(PAIRS), ids=lambda v: str(v))
def test_every_pair_stores_once_and_a_retry_writes_no_event(engine, make_tenant, topic, fmt):
    tenant = make_tenant()
    make, kind, first_types = PAIRS[(topic, fmt)]
    payload = make()
    first = run(engine, tenant.id, topic, fmt, payload)
    assert [r.kind for r in first.records] == [kind]
    assert first_types <= {e.type for e in first.emitted}
    assert first.events == [e.id for e in first.emitted]
    again = run(engine, tenant.id, topic, fmt, payload, now=NOW + timedelta(seconds=5))
    assert again.events == [] and not again.changed, again
    assert [e.id for e in events_of(engine, tenant.id)] == first.events


def test_the_stored_records_hold_the_payload(engine, make_tenant):
    tenant = make_tenant()
    run(engine, tenant.id, "orders", "replenit", fixture("replenit", "orders_request.json"))
    run(engine, tenant.id, "products", "replenit", fixture("replenit", "products_request.json"))
    run(engine, tenant.id, "customers", "rekindle",
        fixture("rekindle", "update_customer.request.json"))
    with engine.connect() as conn:
        order = records.get_order(conn, tenant.id, "O-789")
        product = records.get_product(conn, tenant.id, "P-42")
        jane = records.find_customer(conn, tenant.id, email="jane@example.com")
        john = records.get_customer(conn, tenant.id, order.customer_id)
    assert order.total == Money(8997, "USD") and len(order.lines) == 2
    assert order.lines[0].unit_price == Money(2999, "USD") and order.lines[1].gift is True
    assert john.email == "john.doe@example.com" and john.external_ids == {"replenit": "C-123"}
    assert product.variants[0].sale_price == Money(2799, "USD")
    assert (jane.first_name, jane.last_name, jane.phone) == ("Jane", "Smith", "+27821234567")
    assert jane.lifetime_value == Money(470000, "USD") and jane.order_count == 8
    assert jane.status is not None  # re-scored in the same transaction


def test_an_order_for_an_unknown_customer_creates_a_minimal_one(engine, make_tenant):
    tenant = make_tenant()
    order = {**schemas.OrderSchema.Meta.example, "customer_email": "First.Time@Example.com"}
    result = run(engine, tenant.id, "orders", "canonical", order)
    [summary] = result.records
    assert summary.outcome == "created" and summary.customer_id
    with engine.connect() as conn:
        customer = records.get_customer(conn, tenant.id, summary.customer_id)
    assert customer.email == "first.time@example.com"
    assert customer.order_count == 1 and customer.lifetime_value == Money(8997, "USD")
    created = [e for e in result.emitted if e.type == "customer.created"]
    placed = [e for e in result.emitted if e.type == "order.placed"]
    assert created[0].item["email"] == "first.time@example.com"
    assert placed[0].item == {"id": placed[0].id, "order_id": "O-789",
                              "customer_id": summary.customer_id,
                              "email": "first.time@example.com",
                              "placed_at": "2025-08-22T21:00:00Z", "total": "89.97",
                              "currency": "USD", "item_count": 3, "line_count": 2,
                              "cancelled": False}


def test_a_cancellation_is_an_order_cancelled_event_once(engine, make_tenant):
    tenant = make_tenant()
    order = schemas.OrderSchema.Meta.example
    run(engine, tenant.id, "orders", "canonical", order)
    cancelled = {**order, "cancelled": True}
    first = run(engine, tenant.id, "orders", "canonical", cancelled)
    again = run(engine, tenant.id, "orders", "canonical", cancelled)
    assert [e.type for e in first.emitted if e.type.startswith("order.")] == ["order.cancelled"]
    assert again.events == []


def test_a_changed_customer_is_one_update_and_consent_changes_are_consent_events(
        engine, make_tenant):
    tenant = make_tenant()
    base = {"email": "pat@example.com", "first_name": "Pat", "consent": {"email": True}}
    run(engine, tenant.id, "customers", "canonical", base)
    renamed = run(engine, tenant.id, "customers", "canonical", {**base, "first_name": "Patty"})
    withdrawn = run(engine, tenant.id, "customers", "canonical",
                    {**base, "first_name": "Patty", "consent": {"email": False}})
    assert [e.type for e in renamed.emitted] == ["customer.updated"]
    assert renamed.emitted[0].item["first_name"] == "Patty"
    [event] = withdrawn.emitted
    assert event.type == "customer.unsubscribed"
    assert (event.item["channel"], event.item["consent"]) == ("email", False)


def test_an_unsubscribe_of_an_unsubscribed_customer_changes_nothing(engine, make_tenant):
    tenant = make_tenant()
    body = {"email": "quiet@example.com"}
    first = run(engine, tenant.id, "unsubscribes", "rejoiner", body)
    later = run(engine, tenant.id, "unsubscribes", "rejoiner", body,
                now=NOW + timedelta(days=1))
    assert later.records[0].outcome == "unchanged" and later.events == []
    consent = [e for e in first.emitted if e.type == "customer.unsubscribed"][0]
    assert consent.item["changed_at"] == "2026-03-02T09:30:00Z"
    with engine.connect() as conn:
        stored = records.find_customer(conn, tenant.id, email="quiet@example.com")
    assert stored.consent.email is False and stored.consent.unsubscribed_at == NOW


@pytest.mark.parametrize("topic,fmt", [("orders", "rekindle"), ("orders", "rci"),
                                       ("products", "rejoiner"), ("erasures", "rekindle"),
                                       ("customers", "shopify"), ("conversions", "replenit")])
def test_any_other_pair_is_unsupported_and_names_the_accepted_formats(engine, tenant, topic,
                                                                      fmt):
    with pytest.raises(UnsupportedFormat) as raised:
        run(engine, tenant.id, topic, fmt, {})
    assert raised.value.accepted == TABLE[topic]
    assert all(name in str(raised.value) for name in TABLE[topic])


def test_an_unknown_topic_is_unsupported(engine, tenant):
    with pytest.raises(UnsupportedFormat) as raised:
        run(engine, tenant.id, "refunds", "canonical", {})
    assert raised.value.accepted == [] and "orders" in raised.value.message


def test_an_array_with_a_bad_element_stores_nothing_and_names_it_by_index(engine, make_tenant):
    tenant = make_tenant()
    good = fixture("replenit", "customers_request.json")[0]
    bad = {**good, "CustomerId": "C-2", "Email": "not-an-email"}
    worse = {"CustomerId": "x" * 101}
    with pytest.raises(PayloadInvalid) as raised:
        run(engine, tenant.id, "customers", "replenit", [good, bad, worse])
    errors = raised.value.errors
    assert set(errors) == {"1", "2"}
    assert "Email" in errors["1"] and "CustomerId" in errors["2"]
    assert count(engine, customers, tenant.id) == 0 and events_of(engine, tenant.id) == []
    canonical = [schemas.OrderSchema.Meta.example,
                 {**schemas.OrderSchema.Meta.example, "id": "O-2", "total": "1.005"}]
    with pytest.raises(PayloadInvalid) as raised:
        run(engine, tenant.id, "orders", "canonical", canonical)
    assert raised.value.errors == {"1": {"total": ["More decimal places than USD has (2)."]}}
    assert count(engine, orders, tenant.id) == 0


def test_an_array_is_stored_whole(engine, make_tenant):
    tenant = make_tenant()
    products_ = [{"id": f"P-{i}", "name": f"Thing {i}"} for i in range(3)]
    result = run(engine, tenant.id, "products", "canonical", products_)
    assert [r.id for r in result.records] == ["P-0", "P-1", "P-2"]
    assert count(engine, products, tenant.id) == 3


@pytest.mark.parametrize("topic,fmt,payload,field", [
    ("customers", "canonical", {"email": "a@example.com", "shoe_size": 42}, "shoe_size"),
    ("customers", "canonical", {"first_name": "Nobody"}, "email"),
    ("customers", "canonical", {"email": "a@example.com", "phone": "555-0123"}, "phone"),
    ("orders", "canonical", {**schemas.OrderSchema.Meta.example, "currency": "JPY"}, "total"),
    ("orders", "canonical", {**schemas.OrderSchema.Meta.example, "customer_email": None,
                             "customer_external_id": None}, "customer_email"),
    ("orders", "rejoiner", {"email": "a@example.com", "cart_data": {"cart_value": 100}},
     "cart_data"),
    ("customers", "rekindle", {"email": "jane@example.com"}, "name"),
    ("customers", "rekindle", {"name": "Jane", "email": "jane@example.com",
                               "total_spent": 10.001}, "total_spent"),
    ("customers", "rci", {"type": "customer", "id": "1", "attributes": {}}, "attributes"),
    ("erasures", "replenit", {}, "customerId"),
    ("unsubscribes", "canonical", {"email": "a@example.com", "consent": True}, "consent"),
    ("customers", "canonical", "just a string", "_schema"),
])
def test_invalid_payloads_name_the_bad_field(engine, tenant, topic, fmt, payload, field):
    with pytest.raises(PayloadInvalid) as raised:
        run(engine, tenant.id, topic, fmt, payload)
    assert field in raised.value.errors, raised.value.errors
    assert events_of(engine, tenant.id) == []


def test_update_customer_answers_the_rescored_customer(engine, make_tenant):
    tenant = make_tenant()
    body = fixture("rekindle", "update_customer.request.json")
    with engine.begin() as conn:
        answer = ingest.update_customer(conn, tenant.id, body, now=NOW)
    customer = answer.customer
    assert customer.email == "jane@example.com" and answer.returned is False
    # last purchase 2025-01-15, over a year before NOW, with a 60-day default gap: lost
    assert customer.status == "lost" and customer.engagement_score is not None
    with pytest.raises(PayloadInvalid):
        with engine.begin() as conn:
            ingest.update_customer(conn, tenant.id, [body], now=NOW)


def test_record_winback_sent_opens_the_attribution_window(engine, make_tenant):
    tenant = make_tenant()
    with engine.begin() as conn:
        ingest.update_customer(conn, tenant.id,
                               fixture("rekindle", "update_customer.request.json"), now=NOW)
        sent = ingest.record_winback_sent(conn, tenant.id, email="Jane@Example.com", at=NOW)
        unknown = ingest.record_winback_sent(conn, tenant.id, email="who@example.com", at=NOW)
    assert sent.attributable is True and sent.status == "lost" and unknown is None
    later = {**schemas.OrderSchema.Meta.example, "id": "O-back", "customer_email":
             "jane@example.com", "placed_at": (NOW + timedelta(days=3)).isoformat()}
    result = run(engine, tenant.id, "orders", "canonical", later, now=NOW + timedelta(days=3))
    assert "customer.returned" in {e.type for e in result.emitted}


def test_another_tenants_customer_id_is_no_customer_here(engine, make_tenant):
    a, b = make_tenant("A"), make_tenant("B")
    theirs = run(engine, a.id, "customers", "canonical", {"email": "own@example.com"})
    cid = theirs.records[0].id
    mine = run(engine, b.id, "customers", "canonical",
               {"id": cid, "email": "own@example.com", "first_name": "Intruder"})
    assert mine.records[0].outcome == "created" and mine.records[0].id != cid
    with engine.connect() as conn:
        assert records.get_customer(conn, a.id, cid).first_name is None


def test_source_and_currency_follow_the_format_and_the_tenant(engine, make_tenant):
    tenant = make_tenant()
    result = run(engine, tenant.id, "orders", "rejoiner", convert_with_order_number(),
                 currency="JPY")
    placed = [e for e in result.emitted if e.type == "order.placed"][0]
    assert placed.source == "rejoiner"
    assert (placed.item["total"], placed.item["currency"]) == ("2000", "JPY")


def test_trigger_pages_serve_what_ingest_wrote(engine, make_tenant):
    tenant = make_tenant()
    run(engine, tenant.id, "orders", "replenit", fixture("replenit", "orders_request.json"))
    run(engine, tenant.id, "opt-ins", "rejoiner", fixture("rejoiner", "opt_in_request.json"))
    with engine.connect() as conn:
        new_orders, _ = list_trigger_page(conn, tenant.id, "new-order")
        consent, _ = list_trigger_page(conn, tenant.id, "consent-changed")
        new_customers, _ = list_trigger_page(conn, tenant.id, "new-customer")
    assert [i["order_id"] for i in new_orders] == ["O-789"]
    assert [(i["email"], i["consent"]) for i in consent] == [("customer@example.com", True)]
    assert {i["email"] for i in new_customers} == {"john.doe@example.com",
                                                   "customer@example.com"}


@pytest.mark.parametrize("schema", [schemas.CustomerSchema, schemas.OrderSchema,
                                    schemas.ProductSchema, schemas.CartSchema,
                                    schemas.ConsentChangeSchema, schemas.UnsubscribeSchema,
                                    schemas.OptInSchema, schemas.ErasureSchema],
                         ids=lambda s: s.__name__)
def test_each_canonical_example_loads_and_dumps_back(schema):
    loaded = schema().load(schema.Meta.example)
    dumped = schema().dump(loaded)
    writable = {name for name, f in schema().fields.items() if not f.dump_only}
    again = schema().load({k: v for k, v in dumped.items() if k in writable and v is not None})
    assert again == loaded
    json.dumps(dumped)  # plain JSON: amounts are exact decimal strings
    if schema is schemas.OrderSchema:
        assert dumped["total"] == "89.97" and dumped["lines"][0]["unit_price"] == "29.99"


def test_amounts_are_exact_and_follow_the_currency():
    example = {**schemas.OrderSchema.Meta.example, "lines": []}
    assert schemas.OrderSchema().load({**example, "total": 0.1}).total == Money(10, "USD")
    with pytest.raises(ValidationError) as raised:  # a float's own text, never rounded
        schemas.OrderSchema().load({**example, "total": 0.1 + 0.2})
    assert "total" in raised.value.messages
    yen = schemas.OrderSchema().load({**schemas.OrderSchema.Meta.example, "currency": "jpy",
                                      "total": "8997", "lines": []})
    assert yen.total == Money(8997, "JPY")
    bhd = schemas.OrderSchema().load({**schemas.OrderSchema.Meta.example, "currency": "BHD",
                                      "total": "1.234", "lines": []})
    assert bhd.total == Money(1234, "BHD")
