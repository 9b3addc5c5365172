"""The reference's example payloads (fixtures/) held against the wire schemas."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connectors.replenit import wire

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "replenit" / "fixtures"


def fixture(name: str):
    return wire.loads((FIXTURES / name).read_text())


def declared(schema_cls) -> set[str]:
    return set(schema_cls().fields)


@pytest.mark.parametrize(
    "kind, name",
    [
        ("customers", "customers_request.json"),
        ("customers", "customers_request_minimal.json"),
        ("orders", "orders_request.json"),
        ("products", "products_request.json"),
    ],
)
def test_request_fixtures_are_valid_and_fully_declared(kind, name):
    body = fixture(name)
    records, errors = wire.validate_batch(kind, body)
    assert errors == {}
    assert len(records) == len(body)
    # every field of the reference's example is one the schema knows (nothing silently ignored)
    for raw, loaded in zip(body, records):
        assert set(raw) <= declared(wire.SCHEMAS[kind])
        assert set(loaded) == set(raw)


def test_nested_fixture_fields_are_declared():
    order = fixture("orders_request.json")[0]
    for item in order["OrderItems"]:
        assert set(item) <= declared(wire.OrderItemSchema)
    product = fixture("products_request.json")[0]
    for variant in product["ProductVariants"]:
        assert set(variant) <= declared(wire.VariantSchema)


def test_fixture_numbers_stay_exact():
    records, _ = wire.validate_batch("orders", fixture("orders_request.json"))
    assert records[0]["TotalRevenue"] == Decimal("89.97")
    assert [i["Price"] for i in records[0]["OrderItems"]] == [Decimal("29.99")] * 2
    records, _ = wire.validate_batch("products", fixture("products_request.json"))
    assert records[0]["ProductVariants"][0]["SalePrice"] == Decimal("27.99")


@pytest.mark.parametrize(
    "name", ["customers_response.json", "orders_response.json", "products_response.json",
             "envelope_response.json"],
)
def test_response_fixtures_match_envelope(name):
    body = fixture(name)
    assert wire.EnvelopeSchema().validate(body) == {}
    assert body["success"] is True


def test_error_fixture_matches_error_envelope():
    body = fixture("validation_error_response.json")
    assert wire.ErrorEnvelopeSchema().validate(body) == {}


def test_reference_error_example_is_what_the_rules_produce():
    """The reference's own error example: a too-long CustomerId and no Email."""
    expected = fixture("validation_error_response.json")["errors"]
    _, errors = wire.validate_batch("customers", [{"CustomerId": "x" * 101}])
    assert errors == expected


def test_dumps_writes_decimals_exactly():
    text = wire.dumps([{"TotalRevenue": Decimal("19.99"), "Price": Decimal("0.10"),
                        "Big": Decimal("12345678901234567.891"), "S": "\x00 19.99"}])
    assert text == ('[{"TotalRevenue":19.99,"Price":0.10,"Big":12345678901234567.891,'
                    '"S":"\\u0000 19.99"}]')
    assert wire.loads(text)[0]["Big"] == Decimal("12345678901234567.891")


def test_datetime_text():
    from datetime import datetime, timedelta, timezone

    dt = datetime(2025, 8, 22, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    assert wire.format_datetime(dt) == "2025-08-22T21:00:00Z"
    assert wire.parse_datetime("2025-08-22T21:00:00Z") == dt
    assert wire.parse_datetime("2025-08-22T21:00:00.1234567Z").microsecond == 123456
