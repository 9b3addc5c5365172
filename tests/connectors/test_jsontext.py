from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import jsontext


def test_decimals_are_written_exactly_as_numbers():
    text = jsontext.dumps({"a": [Decimal("19.99"), Decimal("100.00"), Decimal("1E+3")],
                           "b": Decimal("0.12345678901234567"), "s": "19.99", "n": None})
    assert text == ('{"a":[19.99,100.00,1000],"b":0.12345678901234567,"s":"19.99","n":null}')
    assert jsontext.loads(text)["b"] == Decimal("0.12345678901234567")


def test_a_string_that_looks_like_the_mark_stays_a_string():
    tricky = {"x": "\x00decimal-0", "y": Decimal("1.5")}
    assert jsontext.loads(jsontext.dumps(tricky)) == {"x": "\x00decimal-0", "y": Decimal("1.5")}


def test_other_types_are_still_refused():
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})
    with pytest.raises(TypeError):
        jsontext.dumps({"x": Decimal("NaN")})


@settings(max_examples=200, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=3,
                   min_value=Decimal("-1e15"), max_value=Decimal("1e15")))
def test_round_trip_is_exact(value):
    assert jsontext.loads(jsontext.dumps([value]))[0] == value
