"""wire <-> canonical: names, money, dates, round trips and what Rekindle cannot hold."""

from __future__ import annotations

import ast
import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.rekindle import mapping, wire
from connectors.rekindle.mapping import (
    DROPPED_FIELDS,
    NARROWED_FIELDS,
    MappingError,
    customer_from_wire,
    customer_to_wire,
    split_name,
    updated_from_wire,
)
from gateway.model import Customer, Money


@pytest.mark.parametrize("name, first, last", [
    ("Jane Smith", "Jane", "Smith"),
    ("Madonna", "Madonna", None),
    ("Mary Ann van der Berg", "Mary Ann", "van der Berg"),
    ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
    ("Juan de la Cruz", "Juan", "de la Cruz"),
    ("Jean Claude Van Damme", "Jean Claude", "Van Damme"),
    ("Leonardo da Vinci", "Leonardo", "da Vinci"),
    ("Omar bin Said", "Omar", "bin Said"),
    ("Al Pacino", "Al", "Pacino"),  # a particle-looking first name stays the first name
    ("  Jane   Smith  ", "Jane", "Smith"),
    ("", None, None),
    ("   ", None, None),
    (None, None, None),
])
def test_split_name(name, first, last):
    assert split_name(name) == (first, last)


def test_money_is_exact_both_ways_and_in_the_connection_currency():
    assert customer_from_wire({"total_spent": Decimal("4200.00")}).lifetime_value == \
        Money(420000, "USD")
    assert customer_from_wire({"total_spent": 1234}, "JPY").lifetime_value == Money(1234, "JPY")
    assert customer_from_wire({"total_spent": Decimal("1.234")}, "BHD").lifetime_value == \
        Money(1234, "BHD")
    assert customer_from_wire({"total_spent": 0.1}).lifetime_value == Money(10, "USD")
    assert customer_to_wire(Customer(lifetime_value=Money(1234, "BHD")), "BHD") == \
        {"total_spent": Decimal("1.234")}
    assert customer_to_wire(Customer(lifetime_value=Money(5, "JPY")), "JPY") == \
        {"total_spent": Decimal("5")}


def test_too_much_precision_is_a_clear_mapping_error():
    with pytest.raises(MappingError, match="total_spent 10.005.*USD"):
        customer_from_wire({"total_spent": Decimal("10.005")}, "USD")
    with pytest.raises(MappingError, match="JPY"):
        customer_from_wire({"total_spent": Decimal("10.5")}, "JPY")


def test_another_currency_is_never_converted():
    with pytest.raises(MappingError, match="EUR.*USD"):
        customer_to_wire(Customer(email="a@b.co", lifetime_value=Money(100, "EUR")), "USD")


def test_dates_and_datetimes_are_utc():
    plus_two = timezone(timedelta(hours=2))
    minus_five = timezone(timedelta(hours=-5))
    item = {"last_purchase_date": "2025-01-15", "updated_at": "2025-04-05T10:00:00+02:00",
            "returned_at": "2025-04-05T08:00:00Z"}
    customer = customer_from_wire(item)
    assert customer.last_order_at == datetime(2025, 1, 15, tzinfo=timezone.utc)
    assert customer.updated_at == datetime(2025, 4, 5, 8, tzinfo=timezone.utc)
    assert customer.updated_at.tzinfo == timezone.utc
    assert customer.returned_at == datetime(2025, 4, 5, 8, tzinfo=timezone.utc)
    # An evening order in New York is the next day in UTC.
    late = Customer(last_order_at=datetime(2025, 1, 15, 21, 30, tzinfo=minus_five))
    assert customer_to_wire(late)["last_purchase_date"] == "2025-01-16"
    early = Customer(last_order_at=datetime(2025, 1, 16, 1, 0, tzinfo=plus_two))
    assert customer_to_wire(early)["last_purchase_date"] == "2025-01-15"


def test_bad_wire_values_are_mapping_errors():
    with pytest.raises(MappingError):
        customer_from_wire({"email": "not-an-email"})
    with pytest.raises(MappingError):
        customer_from_wire({"last_purchase_date": "15/01/2025"})
    with pytest.raises(MappingError):
        customer_from_wire({"updated_at": "yesterday"})


def test_update_answer_maps_to_customer_and_returned():
    answer = {"customer": {"id": "c1", "name": "Jane Smith", "email": "Jane@Example.com",
                           "status": "active", "engagement_score": 70,
                           "last_purchase_date": "2025-04-05", "total_spent": Decimal("10.00"),
                           "purchase_count": 2, "returned": True,
                           "updated_at": "2025-04-05T08:00:00Z"}}
    customer, returned = updated_from_wire(answer)
    assert returned is True
    assert customer.returned_at == datetime(2025, 4, 5, 8, tzinfo=timezone.utc)
    assert customer.email == "jane@example.com"
    answer["customer"]["returned"] = False
    assert updated_from_wire(answer)[1] is False
    assert updated_from_wire(answer)[0].returned_at is None


def test_missing_fields_are_left_out_going_out():
    assert customer_to_wire(Customer()) == {}
    body = customer_to_wire(Customer(email="a@b.co", first_name="Cher", order_count=0))
    assert body == {"name": "Cher", "email": "a@b.co", "purchase_count": 0}


# ---- round trips -----------------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéöñ", min_size=1, max_size=8).map(
    str.capitalize)
_particle = st.sampled_from(["van", "der", "de", "la", "von", "da", "bin", "al"])
_first = st.lists(_word, min_size=1, max_size=3).map(" ".join)
_last = st.one_of(st.none(), st.lists(st.one_of(_particle, _word), min_size=0, max_size=2)
                  .flatmap(lambda ps: _word.map(lambda w: " ".join([*ps, w]))))
_moment = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1),
                       timezones=st.just(timezone.utc))
_EMAIL = r"[a-z][a-z0-9]{0,5}(\.[a-z0-9]{1,5})?@[a-z]{2,8}\.(com|org|co)"
_currency = st.sampled_from(["USD", "JPY", "BHD", "EUR", "ZAR"])


@st.composite
def canonical_customers(draw):
    currency = draw(_currency)
    return currency, Customer(
        id=draw(st.one_of(st.none(), st.uuids().map(str))),
        email=draw(st.from_regex(_EMAIL, fullmatch=True)),
        external_ids=draw(st.dictionaries(st.sampled_from(["rci", "replenit"]),
                                          st.text(min_size=1, max_size=5), max_size=2)),
        first_name=draw(_first),
        last_name=draw(_last),
        phone=draw(st.one_of(st.none(), st.from_regex(r"\+[1-9][0-9]{7,12}", fullmatch=True))),
        language=draw(st.one_of(st.none(), st.just("en-GB"))),
        tags=draw(st.lists(st.sampled_from(["vip", "wholesale"]), max_size=2)),
        lifetime_value=draw(st.one_of(st.none(), st.integers(0, 10**12).map(
            lambda minor: Money(minor, currency)))),
        order_count=draw(st.one_of(st.none(), st.integers(0, 10_000))),
        first_order_at=draw(st.one_of(st.none(), _moment)),
        last_order_at=draw(st.one_of(st.none(), _moment)),
        status=draw(st.one_of(st.none(), st.sampled_from(["active", "lost"]))),
        engagement_score=draw(st.one_of(st.none(), st.integers(0, 100))),
        returned_at=draw(st.one_of(st.none(), _moment)),
        rfm=draw(st.one_of(st.none(), st.just(555))),
        updated_at=draw(st.one_of(st.none(), _moment)),
    )


SURVIVING = {"email", "phone", "lifetime_value", "order_count"}


def test_dropped_narrowed_and_surviving_fields_cover_the_model_exactly():
    every = {f.name for f in dataclasses.fields(Customer)}
    assert set(DROPPED_FIELDS) | set(NARROWED_FIELDS) | SURVIVING == every
    assert not set(DROPPED_FIELDS) & set(NARROWED_FIELDS)
    assert not (set(DROPPED_FIELDS) | set(NARROWED_FIELDS)) & SURVIVING
    assert all(reason.strip() for reason in [*DROPPED_FIELDS.values(), *NARROWED_FIELDS.values()])
    assert set(DROPPED_FIELDS) == {
        "id", "external_ids", "language", "timezone", "address", "birthdate", "gender", "tags",
        "metadata", "consent", "first_order_at", "recency_score", "frequency_score",
        "monetary_score", "rfm", "grade", "segments", "cohort", "acquisition_source", "status",
        "engagement_score", "returned_at", "redacted_at", "created_at", "updated_at"}


@settings(max_examples=50, deadline=None)
@given(canonical_customers())
def test_canonical_to_wire_to_canonical_keeps_what_rekindle_holds(drawn):
    currency, original = drawn
    body = customer_to_wire(original, currency)
    # The body is what Rekindle accepts, and survives JSON exactly.
    wire.UpdateCustomerRequest().load(wire.loads(wire.dumps(body)))
    back = customer_from_wire(wire.loads(wire.dumps(body)), currency)
    for name in SURVIVING:
        assert getattr(back, name) == getattr(original, name), name
    assert back.name == original.name  # the joined name is what round-trips
    if original.last_order_at is None:
        assert back.last_order_at is None
    else:
        assert back.last_order_at == original.last_order_at.replace(
            hour=0, minute=0, second=0, microsecond=0)
    for name in DROPPED_FIELDS:  # nothing of these is sent; nothing of them comes back
        assert getattr(back, name) == getattr(Customer(), name), name


@settings(max_examples=50, deadline=None)
@given(canonical_customers(), st.uuids().map(str), st.booleans())
def test_wire_answer_to_canonical_to_wire_is_exact(drawn, rekindle_id, returned):
    currency, original = drawn
    body = customer_to_wire(original, currency)
    answer = {"customer": {"id": rekindle_id, **body, "status": "at_risk",
                           "engagement_score": 40, "returned": returned,
                           "updated_at": "2025-04-05T08:00:00Z"}}
    customer, was_returned = updated_from_wire(answer, currency)
    assert was_returned is returned
    assert customer.external_ids == {"rekindle": rekindle_id}
    assert customer_to_wire(customer, currency) == body


def test_mapping_imports_only_the_stdlib_and_the_canonical_model():
    tree = ast.parse(open(mapping.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert imported <= {"__future__", "datetime", "decimal", "typing", "gateway.model"}
