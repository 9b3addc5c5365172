"""Rejoiner mapping: the reference's examples as canonical with exact values, round trips
(hypothesis), the dropped fields, money exactness and the upsert's ownership merge."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.rejoiner import mapping, wire
from gateway.model import (
    Address,
    Cart,
    CartItem,
    Consent,
    Customer,
    Money,
    MoneyError,
    Order,
    OrderLine,
)

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rejoiner" / "fixtures"
UTC = timezone.utc


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# --- the examples --------------------------------------------------------------------------


def test_example_profile_as_canonical():
    customer = mapping.profile_to_customer(fixture("customer_response"))
    assert customer == Customer(
        email="customer@example.com",
        external_ids={"rejoiner": "foobar"},
        first_name="Madonna",
        last_name="Lewis",
        address=Address(line1="1505 Dogwood Lane", city="Tucson", region="AZ",
                        postal_code="85705", country="US"),
        birthdate=date(1969, 10, 26),
        tags=["foo", "bar"],
        metadata={"foo": "bar"},
        consent=Consent(email=True, opted_in_at=datetime(2018, 5, 25, 5, 35, 31, 803626,
                                                         tzinfo=UTC)),
    )


def test_unsubscribed_wins_over_an_old_opt_in():
    profile = {**fixture("customer_response"), "is_unsubscribed": True,
               "unsubscribe_date": "2020-01-02T03:04:05"}
    consent = mapping.profile_to_customer(profile).consent
    assert consent.email is False
    assert consent.unsubscribed_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_example_convert_as_canonical_cart():
    cart = mapping.convert_to_cart(fixture("convert_request"), "USD")
    assert cart == Cart(
        email="customer@example.com",
        value=Money(2000, "USD"),
        item_count=3,
        promo="SALE",
        return_url="http://example.com/cart/12345/",
        items=[
            CartItem(product_id="12345", name="Product #1", unit_price=Money(1000, "USD"),
                     quantity=1, line_total=Money(1000, "USD"), description="A product",
                     categories=["cool", "products"],
                     product_url="http://example.com/products/12345",
                     image_url="http://example.com/products/img/12345.jpg"),
            CartItem(product_id="54321", name="Product #2", unit_price=Money(500, "USD"),
                     quantity=2, line_total=Money(1000, "USD"), description="Another product",
                     categories=["awesome", "products"],
                     product_url="http://example.com/products/54321",
                     image_url="http://example.com/products/img/54321.jpg"),
        ],
    )
    assert cart.value.to_decimal() == __import__("decimal").Decimal("20.00")


def test_example_convert_round_trips_to_the_same_payload():
    body = fixture("convert_request")
    assert mapping.cart_to_convert(mapping.convert_to_cart(body, "USD"), "USD") == body


def test_example_opt_in_as_canonical():
    at = datetime(2024, 1, 1, tzinfo=UTC)
    customer = mapping.opt_in_to_customer(fixture("opt_in_request"), at)
    assert customer.email == "customer@example.com"
    assert customer.consent == Consent(email=True, opted_in_at=at)
    back = mapping.unsubscribe_to_customer(fixture("unsubscribe_request"), at)
    assert back.consent == Consent(email=False, unsubscribed_at=at)


def test_opt_in_body_keeps_info_as_strings():
    info = {"type": "accepts marketing checkbox", "page": 3}
    assert mapping.opt_in_body("a@example.com", info) == {
        "type": "accepts marketing checkbox", "page": "3", "email": "a@example.com"}


# --- money -----------------------------------------------------------------------------------


def test_unit_price_derived_from_a_total_is_half_even_and_the_total_stays_exact():
    item = CartItem(product_id="p", quantity=3, line_total=Money(1000, "USD"))
    wire_item = mapping.cart_to_convert(Cart(email="a@example.com", items=[item]), "USD")[
        "cart_items"][0]
    assert (wire_item["price"], wire_item["qty_price"]) == (333, 1000)
    # 250 / 4 = 62.5 -> 62 (half to even); 1250 / 4 = 312.5 -> 312; 350 / 4 = 87.5 -> 88
    for total, qty, unit in ((250, 4, 62), (1250, 4, 312), (350, 4, 88)):
        back = mapping.convert_to_cart({"email": "a@example.com", "cart_items": [
            {"product_id": "p", "item_qty": qty, "qty_price": total}]}, "USD").items[0]
        assert back.unit_price == Money(unit, "USD") and back.line_total == Money(total, "USD")


def test_money_in_another_currency_is_refused():
    with pytest.raises(MoneyError):
        mapping.cart_to_convert(Cart(email="a@example.com", value=Money(100, "EUR")), "USD")


def test_cents_are_the_connection_currencys_minor_units():
    cart = mapping.convert_to_cart({"email": "a@example.com",
                                    "cart_data": {"cart_value": 1500}}, "JPY")
    assert cart.value == Money(1500, "JPY") and str(cart.value) == "1500 JPY"
    bhd = mapping.cart_to_convert(Cart(email="a@example.com",
                                       value=Money.from_decimal("1.235", "BHD")), "BHD")
    assert bhd["cart_data"]["cart_value"] == 1235


# --- the profile ---------------------------------------------------------------------------


def test_language_and_gender_narrowing():
    assert mapping.language_to_wire("en-US") == "en"
    assert mapping.language_to_wire("pt_BR") == "pt"
    assert mapping.language_to_wire("FR") == "fr"
    assert mapping.language_to_wire("fil") is None  # three-letter language: not sent
    assert mapping.gender_to_wire("Female") == "f" and mapping.gender_to_wire("m") == "m"
    assert mapping.gender_to_wire("non-binary") is None
    body = mapping.customer_to_profile(Customer(email="a@example.com", language="en-GB"))
    assert body["language"] == "en"
    assert wire.ProfileSchema().load(body)["language"] == "en"


def test_unknown_fields_are_left_out_not_blanked():
    body = mapping.customer_to_profile(Customer(email="a@example.com", first_name="Ann"))
    assert body == {"email": "a@example.com", "first_name": "Ann", "tags": [], "metadata": {}}


def test_scores_become_gw_tags_and_the_gateway_key():
    customer = Customer(email="a@example.com", tags=["vip", "gw:winback", "gw:rfm:111"],
                        rfm=555, grade="A", status="lapsed", segments=["Champions"],
                        lifetime_value=Money(12345, "USD"), engagement_score=17)
    body = mapping.customer_to_profile(customer)
    assert body["tags"] == ["vip", "gw:winback", "gw:status:lapsed", "gw:grade:A", "gw:rfm:555",
                            "gw:segment:Champions"]
    assert body["metadata"]["gateway"] == {
        "lifetime_value": {"minor": 12345, "currency": "USD"}, "rfm": 555, "grade": "A",
        "segments": ["Champions"], "status": "lapsed", "engagement_score": 17}


def test_merge_keeps_the_shops_tags_and_keys_and_replaces_only_the_gateways():
    held = {"tags": ["vip", "gw:winback", "gw:status:at_risk", "newsletter"],
            "metadata": {"shop": {"tier": 2}, "gateway": {"status": "at_risk"}}}
    desired = mapping.customer_to_profile(Customer(email="a@example.com", status="active",
                                                   tags=["ignored-shop-tag"]))
    merged = mapping.merge_profile(held, desired)
    assert merged["tags"] == ["vip", "newsletter", "gw:status:active"]  # gw:winback removed
    assert merged["metadata"] == {"shop": {"tier": 2}, "gateway": {"status": "active"}}
    assert mapping.merge_profile(None, desired)["tags"] == ["gw:status:active"]


def test_order_as_convert_and_back():
    order = Order(id="1001", placed_at=datetime(2024, 3, 1, tzinfo=UTC),
                  total=Money(2597, "USD"), customer_email="a@example.com",
                  lines=[OrderLine(product_id="p1", sku="SKU-1", quantity=3,
                                   unit_price=Money(799, "USD"),
                                   original_price=Money(999, "USD"), size="M", gift=True,
                                   name="Tee"),
                         OrderLine(product_id="p2", sku=None, quantity=1,
                                   unit_price=Money(200, "USD"))])
    body = mapping.cart_to_convert(mapping.order_to_cart(order), "USD")
    assert body["cart_data"] == {"cart_value": 2597, "cart_item_count": 4, "order_number": "1001"}
    assert body["cart_items"][0] == {
        "sku": "SKU-1", "size": "M", "original_price": "999", "gift": "true",
        "product_id": "p1", "name": "Tee", "price": 799, "item_qty": 3, "qty_price": 2397}
    assert wire.ConvertSchema().validate(body) == {}
    back = mapping.cart_to_order(mapping.convert_to_cart(body, "USD"), order.placed_at)
    assert dataclasses.replace(back, source=None) == order


def test_a_convert_without_order_number_is_not_an_order():
    cart = mapping.convert_to_cart(fixture("convert_request"), "USD")
    with pytest.raises(mapping.MappingError):
        mapping.cart_to_order(cart, datetime(2024, 1, 1, tzinfo=UTC))


# --- round trips ---------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
               max_size=20)
emails = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9_]{1,4})?@[a-z0-9]{1,10}\.[a-z]{2,6}",
                       fullmatch=True)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6)
shop_tags = text.filter(lambda t: not t.startswith(mapping.DERIVED_TAG_PREFIXES))
scores = st.integers(1, 5)


@st.composite
def customers(draw) -> Customer:
    """Customers holding only what Rejoiner can hold (nothing of DROPPED_FIELDS)."""
    r, f, m = draw(scores), draw(scores), draw(scores)
    has_address = draw(st.booleans())
    return Customer(
        id=draw(st.none() | st.from_regex(r"gw_[a-z0-9]{1,10}", fullmatch=True)),
        email=draw(emails),
        external_ids=draw(st.dictionaries(st.sampled_from(["rci", "rekindle", "replenit"]),
                                          text, max_size=2)),
        first_name=draw(st.none() | text),
        last_name=draw(st.none() | text),
        phone=draw(st.none() | st.from_regex(r"\+[1-9][0-9]{7,12}", fullmatch=True)),
        language=draw(st.none() | st.from_regex(r"[a-z]{2}", fullmatch=True)),
        timezone=draw(st.none() | st.sampled_from(["UTC", "Europe/Paris", "America/Phoenix"])),
        address=Address(
            line1=draw(st.none() | text), line2=draw(st.none() | text),
            line3=draw(st.none() | text), city=draw(st.none() | text),
            region=draw(st.none() | text), postal_code=draw(st.none() | text),
            country=draw(st.none() | st.from_regex(r"[A-Z]{2}", fullmatch=True)),
        ) if has_address else None,
        birthdate=draw(st.none() | st.dates(date(1900, 1, 1), date(2020, 12, 31))),
        gender=draw(st.none() | st.sampled_from(["m", "f"])),
        tags=draw(st.lists(shop_tags, unique=True, max_size=4)),
        metadata=draw(st.dictionaries(text.filter(lambda k: k != "gateway"), json_values,
                                      max_size=4)),
        lifetime_value=draw(st.none() | st.builds(Money, st.integers(0, 10**12),
                                                  st.sampled_from(["USD", "JPY", "BHD"]))),
        order_count=draw(st.none() | st.integers(0, 10_000)),
        first_order_at=draw(st.none() | times),
        last_order_at=draw(st.none() | times),
        recency_score=r, frequency_score=f, monetary_score=m, rfm=100 * r + 10 * f + m,
        grade=draw(st.none() | st.sampled_from(list("ABCDF"))),
        segments=draw(st.lists(text, unique=True, max_size=3)),
        cohort=draw(st.none() | st.from_regex(r"20[0-9]{2}-(0[1-9]|1[0-2])", fullmatch=True)),
        acquisition_source=draw(st.none() | text),
        status=draw(st.none() | st.sampled_from(["active", "at_risk", "lapsed", "lost"])),
        engagement_score=draw(st.none() | st.integers(0, 100)),
        returned_at=draw(st.none() | times),
    )


def _normalised(customer: Customer) -> Customer:
    """An address of only None fields reads back as no address."""
    if customer.address is not None and not any(dataclasses.astuple(customer.address)):
        return dataclasses.replace(customer, address=None)
    return customer


@settings(max_examples=50, deadline=None)
@given(customers())
def test_round_trip_keeps_every_field_rejoiner_holds(customer):
    body = mapping.customer_to_profile(customer)
    wire.ProfileSchema().load(body)  # valid at the service
    assert json.loads(json.dumps(body)) == body  # plain JSON
    assert mapping.profile_to_customer(body) == _normalised(customer)


def _field_paths(customer: Customer) -> dict[str, object]:
    out = {}
    for f in dataclasses.fields(Customer):
        value = getattr(customer, f.name)
        if f.name == "consent":
            for c in dataclasses.fields(Consent):
                out[f"consent.{c.name}"] = getattr(value, c.name)
        else:
            out[f.name] = value
    return out


@settings(max_examples=50, deadline=None)
@given(customers())
def test_exactly_the_dropped_fields_are_lost(base):
    full = dataclasses.replace(
        _normalised(base),
        consent=Consent(email=True, sms=True, whatsapp=False, push=True, gdpr_processing=True,
                        opted_in_at=datetime(2020, 1, 1, tzinfo=UTC),
                        unsubscribed_at=datetime(2021, 1, 1, tzinfo=UTC)),
        redacted_at=datetime(2022, 1, 1, tzinfo=UTC),
        created_at=datetime(2019, 1, 1, tzinfo=UTC),
        updated_at=datetime(2023, 1, 1, tzinfo=UTC),
    )
    sent = _field_paths(full)
    back = _field_paths(mapping.profile_to_customer(mapping.customer_to_profile(full)))
    changed = {name for name in sent if sent[name] != back[name]}
    assert changed == set(mapping.DROPPED_FIELDS)
    assert set(sent) >= set(mapping.DROPPED_FIELDS)  # every name is a real canonical field
    assert set(sent) >= set(mapping.NARROWED_FIELDS)


money_cents = st.integers(0, 10**9).map(lambda n: Money(n, "USD"))


@st.composite
def carts(draw) -> Cart:
    def item() -> CartItem:
        qty = draw(st.none() | st.integers(1, 50))
        unit = draw(st.none() | money_cents)
        total = draw(st.none() | money_cents)
        return CartItem(
            product_id=draw(text), name=draw(st.none() | text), unit_price=unit, quantity=qty,
            line_total=total, description=draw(st.none() | text),
            categories=draw(st.lists(text, max_size=3)),
            product_url=draw(st.none() | text), image_url=draw(st.none() | text),
            extra=draw(st.dictionaries(text.filter(lambda k: k not in mapping._ITEM_KEYS), text,
                                       max_size=2)))
    return Cart(
        email=draw(emails), value=draw(st.none() | money_cents),
        item_count=draw(st.none() | st.integers(0, 500)), promo=draw(st.none() | text),
        order_number=draw(st.none() | text), return_url=draw(st.none() | text),
        items=[item() for _ in range(draw(st.integers(0, 3)))],
        extra=draw(st.dictionaries(text.filter(lambda k: k not in mapping._CART_KEYS), text,
                                   max_size=2)))


@settings(max_examples=50, deadline=None)
@given(carts())
def test_cart_round_trip_keeps_everything_and_derives_only_missing_prices(cart):
    body = mapping.cart_to_convert(cart, "USD")
    wire.ConvertSchema().load(body)  # valid at the service
    back = mapping.convert_to_cart(body, "USD")
    items = back.items
    assert dataclasses.replace(back, items=[]) == dataclasses.replace(cart, items=[])
    assert len(items) == len(cart.items)
    for sent, got in zip(cart.items, items):
        expected = dataclasses.replace(sent)
        if sent.unit_price is None and sent.line_total is not None and sent.quantity:
            expected.unit_price = sent.line_total.split_half_even(sent.quantity)
        if sent.line_total is None and sent.unit_price is not None and sent.quantity is not None:
            expected.line_total = sent.unit_price * sent.quantity
        assert got == expected
