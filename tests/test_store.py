"""Upserts by natural key, and tenant isolation, on the run's database."""

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from gateway.model import Consent, Customer, Event, Money, Order, OrderLine, Product, Variant
from gateway.store import connections, dedupe, events, keys, records, tenants
from gateway.store.tables import customers, orders, products, variants

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _order(order_id: str, email: str, total: str = "59.97", cancelled: bool = False) -> Order:
    unit = Money.from_decimal("19.99", "USD")
    return Order(id=order_id, placed_at=T0, total=Money.from_decimal(total, "USD"),
                 customer_email=email, cancelled=cancelled,
                 lines=[OrderLine(product_id="P-1", sku="SKU-1", quantity=3, unit_price=unit)])


def _product(pid: str, name: str, price: str = "34.99") -> Product:
    return Product(id=pid, name=name, taxonomy=["Apparel", "Tops"], variants=[
        Variant(id=f"{pid}-S", sku=f"SKU-{pid}-S", name="Small",
                price=Money.from_decimal(price, "USD"), stock=4)])


def _count(conn, table, tenant_id):
    return conn.execute(select(func.count()).select_from(table)
                        .where(table.c.tenant_id == tenant_id)).scalar_one()


def test_customer_upsert_is_idempotent_and_keeps_the_later_values(engine, tenant):
    with engine.begin() as conn:
        first_id, created = records.upsert_customer(
            conn, tenant.id, Customer(email="Jane@Example.com ", first_name="Jane",
                                      last_name="Smith", external_ids={"rci": "123"}))
        again_id, created_again = records.upsert_customer(
            conn, tenant.id, Customer(email="jane@example.com", first_name="Janet",
                                      phone="+27821234567", consent=Consent(email=True)))
        assert (created, created_again) == (True, False)
        assert again_id == first_id
        assert _count(conn, customers, tenant.id) == 1
        stored = records.get_customer(conn, tenant.id, first_id)
    assert stored.email == "jane@example.com"
    assert stored.first_name == "Janet"  # later value
    assert stored.last_name == "Smith"  # not sent the second time: kept
    assert stored.phone == "+27821234567"
    assert stored.consent.email is True
    assert stored.external_ids == {"rci": "123"}


def test_customer_without_email_is_found_by_external_id(engine, tenant):
    with engine.begin() as conn:
        a, _ = records.upsert_customer(conn, tenant.id,
                                       Customer(external_ids={"rci": "9"}, first_name="A"))
        b, created = records.upsert_customer(conn, tenant.id,
                                             Customer(external_ids={"rci": "9"}, first_name="B"))
        assert a == b and not created
        assert records.get_customer(conn, tenant.id, a).first_name == "B"
        with pytest.raises(ValueError):
            records.upsert_customer(conn, tenant.id, Customer(first_name="nobody"))


def test_order_upsert_is_idempotent_and_creates_a_minimal_customer(engine, tenant):
    with engine.begin() as conn:
        oid, created, cid = records.upsert_order(conn, tenant.id, _order("O-1", "new@shop.test"))
        oid2, created2, cid2 = records.upsert_order(
            conn, tenant.id, _order("O-1", "new@shop.test", total="59.97", cancelled=True))
        assert (created, created2) == (True, False)
        assert (oid, cid) == (oid2, cid2)
        assert _count(conn, orders, tenant.id) == 1
        assert records.find_customer(conn, tenant.id, email="NEW@shop.test").id == cid
        order = records.get_order(conn, tenant.id, "O-1")
    assert order.cancelled is True
    assert order.total == Money.from_decimal("59.97", "USD")
    assert [(line.sku, line.quantity, line.unit_price.minor) for line in order.lines] == \
        [("SKU-1", 3, 1999)]


def test_product_upsert_is_idempotent(engine, tenant):
    with engine.begin() as conn:
        assert records.upsert_product(conn, tenant.id,
                                      _product("P-42", "Tank top")).outcome == "created"
        assert records.upsert_product(conn, tenant.id,
                                      _product("P-42", "Training tank", "27.99")).outcome == \
            "updated"
        assert records.upsert_product(conn, tenant.id,
                                      _product("P-42", "Training tank", "27.99")).outcome == \
            "unchanged"
        assert _count(conn, products, tenant.id) == 1
        assert _count(conn, variants, tenant.id) == 1
        product = records.get_product(conn, tenant.id, "P-42")
    assert product.name == "Training tank"
    assert product.variants[0].price == Money(2799, "USD")


def test_tenant_isolation(engine, runtime, make_tenant):
    a, b = make_tenant("Shop A"), make_tenant("Shop B")
    with engine.begin() as conn:
        cid, _ = records.upsert_customer(conn, a.id, Customer(email="shared@example.com",
                                                              external_ids={"rci": "77"}))
        records.upsert_order(conn, a.id, _order("O-A", "shared@example.com"))
        records.upsert_product(conn, a.id, _product("P-A", "A's product"))
        events.append_event(conn, a.id, "customer.created", cid, {"email": "shared@example.com"})
        connections.save_connection(conn, runtime.vault, a.id, "rekindle", "https://x.test",
                                    {"api_key": "rk_live_secret"})
        tenants.update_settings(conn, a.id, {"base_currency": "EUR"})
        dedupe.unseen(conn, a.id, "rekindle:customer-status", ["k1"])

    with engine.connect() as conn:
        assert records.get_customer(conn, b.id, cid) is None
        assert records.find_customer(conn, b.id, email="shared@example.com") is None
        assert records.find_customer(conn, b.id, service="rci", external_id="77") is None
        assert records.list_customers(conn, b.id) == []
        assert records.get_order(conn, b.id, "O-A") is None
        assert records.get_product(conn, b.id, "P-A") is None
        assert events.list_events(conn, b.id) == []
        assert connections.get_connection(conn, runtime.vault, b.id, "rekindle") is None
        assert tenants.get_settings(conn, b.id).base_currency == "USD"
        assert [k.id for k in keys.list_keys(conn, b.id)] == [b.key_id]
        assert records.count_rows(conn, b.id) == {"customers": 0, "orders": 0, "products": 0}
    with engine.begin() as conn:
        assert keys.revoke_key(conn, a.key_id, tenant_id=b.id) is False
        # B's first poll of the same scope seeds on its own: A's keys do not count for B.
        assert dedupe.unseen(conn, b.id, "rekindle:customer-status", ["k1"]) == []
        assert dedupe.unseen(conn, b.id, "rekindle:customer-status", ["k1", "k2"]) == ["k2"]
    # B writing the same natural keys makes B's own rows, leaving A's alone.
    with engine.begin() as conn:
        bid, created = records.upsert_customer(conn, b.id, Customer(email="shared@example.com",
                                                                    first_name="B"))
        assert created and bid != cid
        assert records.get_customer(conn, a.id, cid).first_name is None
        # Naming A's customer id from B changes nothing of A's and is not B's customer either.
        other, created = records.upsert_customer(
            conn, b.id, Customer(id=cid, email="b-only@example.com", first_name="Intruder"))
        assert created and other != cid
        assert records.get_customer(conn, a.id, cid).first_name is None
        assert records.get_customer(conn, b.id, cid) is None


def test_events_are_newest_first_with_their_item(engine, tenant):
    with engine.begin() as conn:
        first = events.append_event(conn, tenant.id, "customer.created", "c1", {"email": "x@y.z"})
        second = events.append_event(conn, tenant.id, "order.placed", "o1", {"order_id": "o1"})
        with pytest.raises(ValueError):
            events.append_event(conn, tenant.id, "no.such", None, {})
    with engine.connect() as conn:
        listed = [e for _, e in events.list_events(conn, tenant.id)]
        only_orders = [e for _, e in events.list_events(conn, tenant.id, types=["order.placed"])]
    assert [e.id for e in listed] == [second.id, first.id]
    assert isinstance(listed[0], Event) and listed[0].item == {"id": second.id, "order_id": "o1"}
    assert [e.id for e in only_orders] == [second.id]


def test_dedupe_first_poll_seeds_then_emits_only_unseen(engine, tenant):
    scope = "rekindle:customer-returned"
    with engine.begin() as conn:
        assert dedupe.unseen(conn, tenant.id, scope, ["a", "b"]) == []
        assert dedupe.unseen(conn, tenant.id, scope, ["a", "b", "c"]) == ["c"]
        assert dedupe.unseen(conn, tenant.id, scope, ["c"]) == []


def test_connection_credentials_round_trip(engine, runtime, tenant):
    with engine.begin() as conn:
        connections.save_connection(conn, runtime.vault, tenant.id, "replenit",
                                    "https://api.replen.it", {"api_key": "k1"},
                                    {"tenant_id": "guid"})
        connections.save_connection(conn, runtime.vault, tenant.id, "replenit",
                                    "https://api.replen.it", {"api_key": "k2"},
                                    {"tenant_id": "guid"})
    with engine.connect() as conn:
        stored = connections.get_connection(conn, runtime.vault, tenant.id, "replenit")
    assert stored.credentials == {"api_key": "k2"}
    assert "k2" not in repr(stored)


def test_bulk_events_are_stored_as_single_ones_are(engine, tenant):
    when = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=timezone.utc)
    item = {"customer_id": "c1", "total_spent": 4200.1, "name": "Zoë Ünal", "returned_at": None}
    with engine.begin() as conn:
        single = events.append_event(conn, tenant.id, "customer.status_changed", "c1", item,
                                     occurred_at=when, source="gateway")
        ids = events.append_events(conn, tenant.id,
                                   [("customer.status_changed", "c1", item),
                                    ("customer.returned", "c2", {**item, "id": "ignored"})],
                                   occurred_at=when, source="gateway")
        assert events.append_events(conn, tenant.id, [], occurred_at=when, source=None) == []
        with pytest.raises(ValueError):
            events.append_events(conn, tenant.id, [("no.such", None, {})], occurred_at=when,
                                 source=None)
    with engine.connect() as conn:
        listed = [e for _, e in events.list_events(conn, tenant.id)]
    assert [e.id for e in listed] == [ids[1], ids[0], single.id]  # newest (last written) first
    bulk = listed[1]
    assert bulk.item == {**item, "id": ids[0]} and single.item == {**item, "id": single.id}
    assert bulk.occurred_at == single.occurred_at == when
    assert (bulk.type, bulk.subject_id, bulk.source) == (single.type, "c1", "gateway")
    assert listed[0].item["id"] == ids[1] and listed[0].type == "customer.returned"


def test_upserts_say_what_changed_and_an_equal_record_writes_nothing(engine, tenant):
    jane = Customer(email="said@example.com", first_name="Jane", consent=Consent(email=True))
    with engine.begin() as conn:
        first = records.upsert_customer(conn, tenant.id, jane, now=T0)
        again = records.upsert_customer(conn, tenant.id, jane, now=T0.replace(hour=13))
        renamed = records.upsert_customer(
            conn, tenant.id, Customer(email="said@example.com", first_name="Janet"),
            now=T0.replace(hour=14))
        stamped = conn.execute(select(customers.c.updated_at).where(
            customers.c.id == first.id)).scalar_one()
        order = records.upsert_order(conn, tenant.id, _order("O-9", "said@example.com"))
        same_order = records.upsert_order(conn, tenant.id, _order("O-9", "said@example.com"))
    assert (first.outcome, again.outcome, renamed.outcome) == ("created", "unchanged", "updated")
    assert renamed.changed == {"first_name"} and stamped == T0.replace(hour=14)
    assert (order.outcome, same_order.outcome) == ("created", "unchanged")
    assert same_order.was_cancelled is False and not same_order.customer_created


def test_a_customer_found_by_external_id_takes_its_new_email(engine, tenant):
    """A service's customer (its id) that changed email: the same customer, not a second one
    (this was an IntegrityError: the external id was already another row's)."""
    with engine.begin() as conn:
        first, _ = records.upsert_customer(conn, tenant.id, Customer(
            email="old@example.com", external_ids={"rekindle": "rk-1"}))
        moved = records.upsert_customer(conn, tenant.id, Customer(
            email="new@example.com", external_ids={"rekindle": "rk-1"}))
        stored = records.get_customer(conn, tenant.id, first)
    assert moved.id == first and moved.outcome == "updated"
    assert stored.email == "new@example.com" and stored.external_ids == {"rekindle": "rk-1"}


def test_an_external_id_named_by_another_customer_moves_to_it(engine, tenant):
    with engine.begin() as conn:
        a, _ = records.upsert_customer(conn, tenant.id, Customer(
            email="a@example.com", external_ids={"rci": "7"}))
        b, _ = records.upsert_customer(conn, tenant.id, Customer(email="b@example.com"))
        records.upsert_customer(conn, tenant.id, Customer(email="b@example.com",
                                                          external_ids={"rci": "7"}))
        assert records.get_customer(conn, tenant.id, a).external_ids == {}
        assert records.get_customer(conn, tenant.id, b).external_ids == {"rci": "7"}
        with pytest.raises(ValueError):  # an email another customer holds, with this id
            records.upsert_customer(conn, tenant.id, Customer(id=a, email="b@example.com"))
