from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.money import Money, MoneyError, exponent, money_sum


@pytest.mark.parametrize(
    "currency, amount, minor, text",
    [
        ("JPY", "1500", 1500, "1500"),
        ("USD", "19.99", 1999, "19.99"),
        ("USD", "0.10", 10, "0.10"),
        ("BHD", "1.234", 1234, "1.234"),
        ("BHD", "-0.005", -5, "-0.005"),
        ("USD", "7", 700, "7.00"),
    ],
)
def test_converts_both_ways_exactly(currency, amount, minor, text):
    money = Money.from_decimal(amount, currency)
    assert money.minor == minor
    assert money.to_decimal() == Decimal(amount)
    assert str(money.to_decimal()) == text
    assert Money.from_decimal(money.to_decimal(), currency) == money


def test_exponents_are_the_currencies_own():
    assert (exponent("JPY"), exponent("USD"), exponent("BHD"), exponent("eur")) == (0, 2, 3, 2)


@pytest.mark.parametrize("currency, amount", [("JPY", "1.5"), ("USD", "19.999"),
                                              ("BHD", "0.0001"), ("USD", "1e-3")])
def test_too_much_precision_is_refused(currency, amount):
    with pytest.raises(MoneyError, match="more precision"):
        Money.from_decimal(amount, currency)


@pytest.mark.parametrize("bad", [0.1, True, "abc", "NaN", "Infinity"])
def test_floats_and_non_numbers_are_refused(bad):
    with pytest.raises(MoneyError):
        Money.from_decimal(bad, "USD")


def test_unknown_currency_is_refused():
    with pytest.raises(MoneyError, match="unknown currency"):
        Money(100, "XYZ")


def test_line_arithmetic_is_exact():
    unit = Money.from_decimal("19.99", "USD")
    assert (unit * 3).to_decimal() == Decimal("59.97")
    lines = [Money.from_decimal("0.10", "USD")] * 1000 + [Money.from_decimal("19.99", "USD")] * 7
    assert money_sum(lines, "USD").to_decimal() == Decimal("239.93")


def test_mixed_currencies_do_not_add():
    with pytest.raises(MoneyError):
        Money(1, "USD") + Money(1, "EUR")


def test_unit_price_from_total_rounds_half_even():
    assert Money.from_decimal("10.00", "USD").split_half_even(3).minor == 333
    assert Money(25, "USD").split_half_even(2).minor == 12  # 12.5 -> 12 (even)
    assert Money(35, "USD").split_half_even(2).minor == 18  # 17.5 -> 18 (even)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**15, max_value=10**15),
       st.sampled_from(["JPY", "USD", "BHD", "CLF", "EUR"]))
def test_round_trip_through_decimal(minor, currency):
    money = Money(minor, currency)
    assert Money.from_decimal(money.to_decimal(), currency) == money
    assert Money.from_decimal(str(money.to_decimal()), currency) == money
