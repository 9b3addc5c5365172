"""RCI mapping: the reference's example as canonical, exact values; round trips; dropped fields."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.rci import mapping, wire
from gateway.model import Address, Consent, Customer, Money
from gateway.money import ISO_4217

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rci" / "fixtures"
UTC = timezone.utc


def example_resource() -> dict:
    return json.loads((FIXTURES / "view_customer_response.json").read_text())["data"]


def test_example_customer_maps_with_exact_values():
    customer = mapping.customer_from_wire(example_resource())
    assert customer == Customer(
        email="customer@example.com",
        external_ids={"rci": "123456"},
        first_name="Eric",
        last_name="Davis",
        consent=Consent(email=True, sms=True),
        lifetime_value=Money(5700, "USD"),
        order_count=1,
        last_order_at=datetime(2016, 4, 13, 18, 32, 3, tzinfo=UTC),
        recency_score=4,
        frequency_score=1,
        monetary_score=1,
        rfm=411,
        grade="D",
        segments=["Average spender", "Promising new", "Recent low spender (RM)"],
        cohort="2022-04",
        acquisition_source="web",
        created_at=datetime(2016, 4, 13, 18, 31, 51, tzinfo=UTC),  # remote_created_at
        updated_at=datetime(2018, 5, 11, 22, 5, 16, tzinfo=UTC),  # remote_updated_at
    )
    assert customer.lifetime_value.to_decimal() == __import__("decimal").Decimal("57.00")


def test_example_round_trips_to_the_same_wire_attributes():
    resource = example_resource()
    customer = mapping.customer_from_wire(resource)
    again = mapping.customer_to_wire(
        customer,
        rci_created_at=mapping.parse_time(resource["attributes"]["created_at"]),
        rci_updated_at=mapping.parse_time(resource["attributes"]["updated_at"]),
    )
    expected = dict(resource)
    expected["attributes"] = {**resource["attributes"], "redacted_at": None}
    assert again == expected
    assert wire.CUSTOMER_RESOURCE.load(again) == again


def test_times_are_utc_and_millisecond_precise():
    assert mapping.parse_time("2016-11-14T22:26:48.601Z") == datetime(
        2016, 11, 14, 22, 26, 48, 601000, tzinfo=UTC
    )
    assert mapping.parse_time("2016-11-14T22:26:48+00:00").tzinfo == UTC
    berlin = timezone(timedelta(hours=2))
    assert mapping.format_time(datetime(2020, 1, 1, 2, 0, 0, 123999, tzinfo=berlin)) == (
        "2020-01-01T00:00:00.123Z"
    )
    assert mapping.format_time(datetime(2020, 1, 1)) == "2020-01-01T00:00:00.000Z"


def test_money_is_minor_units_of_its_currency():
    resource = example_resource()
    resource["attributes"].update(ltv_cents=5700, ltv_currency="JPY")
    assert mapping.customer_from_wire(resource).lifetime_value.to_decimal() == 5700
    resource["attributes"].update(ltv_cents=12345, ltv_currency="BHD")
    assert str(mapping.customer_from_wire(resource).lifetime_value) == "12.345 BHD"


def test_redacted_customer_carries_nothing_to_process():
    resource = example_resource()
    resource["attributes"].update(
        first_name=None, last_name=None, email=None, redacted_at="2024-02-03T04:05:06.000Z"
    )
    assert mapping.is_redacted(resource)
    assert mapping.customer_from_wire(resource) == Customer(
        external_ids={"rci": "123456"},
        redacted_at=datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
        consent=Consent(gdpr_processing=False),
    )


def test_redacted_customer_goes_out_without_pii():
    customer = mapping.customer_from_wire(example_resource())
    customer.redacted_at = datetime(2024, 1, 1, tzinfo=UTC)
    attrs = mapping.customer_to_wire(customer)["attributes"]
    assert [attrs[k] for k in wire.PII_ATTRIBUTES] == [None, None, None]
    assert attrs["email_marketing_consent"] is False and attrs["sms_marketing_consent"] is False
    assert attrs["redacted_at"] == "2024-01-01T00:00:00.000Z"


def test_invalid_email_is_kept_aside_not_used():
    resource = example_resource()
    resource["attributes"]["email"] = "not an email"
    customer = mapping.customer_from_wire(resource)
    assert customer.email is None
    assert customer.metadata == {"rci_invalid_email": "not an email"}


def test_missing_sms_consent_is_unknown_not_false():
    resource = example_resource()
    del resource["attributes"]["sms_marketing_consent"]
    assert mapping.customer_from_wire(resource).consent.sms is None


# --- round trips ---------------------------------------------------------------------------

millis = st.integers(min_value=0, max_value=999).map(lambda ms: ms * 1000)
times = st.builds(
    lambda dt, us: dt.replace(microsecond=us, tzinfo=UTC),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    millis,
)
scores = st.integers(min_value=1, max_value=5)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)
emails = st.from_regex(r"[a-z0-9._]{1,12}@[a-z0-9]{1,10}\.[a-z]{2,6}", fullmatch=True)
currencies = st.sampled_from(sorted(ISO_4217))


@st.composite
def rci_customers(draw, redacted: bool = False) -> Customer:
    """Customers holding only what RCI can hold (nothing of DROPPED_FIELDS)."""
    r, f, m = draw(scores), draw(scores), draw(scores)
    return Customer(
        email=draw(st.none() | emails),
        external_ids={"rci": draw(st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True))},
        first_name=draw(st.none() | text),
        last_name=draw(st.none() | text),
        consent=Consent(email=draw(st.none() | st.booleans()), sms=draw(st.none() | st.booleans())),
        lifetime_value=Money(draw(st.integers(0, 10**12)), draw(currencies)),
        order_count=draw(st.integers(0, 10_000)),
        last_order_at=draw(st.none() | times),
        recency_score=r,
        frequency_score=f,
        monetary_score=m,
        rfm=100 * r + 10 * f + m,
        grade=draw(st.sampled_from(wire.GRADES)),
        segments=draw(st.lists(text, max_size=4)),
        cohort=draw(st.none() | st.from_regex(r"20[0-9]{2}-(0[1-9]|1[0-2])", fullmatch=True)),
        acquisition_source=draw(st.none() | text),
        created_at=draw(times),
        updated_at=draw(times),
        redacted_at=draw(times) if redacted else None,
    )


@settings(max_examples=50, deadline=None)
@given(rci_customers())
def test_round_trip_keeps_every_field_rci_holds(customer):
    resource = mapping.customer_to_wire(customer)
    assert wire.CUSTOMER_RESOURCE.load(resource) == resource  # valid at the service
    assert mapping.customer_from_wire(resource) == customer


@settings(max_examples=50, deadline=None)
@given(rci_customers(redacted=True))
def test_round_trip_of_a_redacted_customer_keeps_only_its_id_and_redaction(customer):
    resource = mapping.customer_to_wire(customer)
    assert wire.CUSTOMER_RESOURCE.load(resource) == resource
    back = mapping.customer_from_wire(resource)
    assert back == Customer(
        external_ids=customer.external_ids,
        redacted_at=customer.redacted_at,
        consent=Consent(gdpr_processing=False),
    )


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
@given(rci_customers())
def test_exactly_the_dropped_fields_are_lost(base):
    """Fill every canonical field RCI cannot hold; exactly DROPPED_FIELDS come back changed."""
    full = dataclasses.replace(
        base,
        id="gw_1",
        external_ids={**base.external_ids, "rekindle": "rk_9"},
        phone="+15035550100",
        language="en-US",
        timezone="America/Los_Angeles",
        address=Address(line1="1 Main St", city="Portland", country="US"),
        birthdate=datetime(1990, 5, 6).date(),
        gender="f",
        tags=["vip"],
        metadata={"k": "v"},
        consent=dataclasses.replace(
            base.consent,
            whatsapp=True,
            push=False,
            gdpr_processing=True,
            opted_in_at=datetime(2020, 1, 1, tzinfo=UTC),
            unsubscribed_at=datetime(2021, 1, 1, tzinfo=UTC),
        ),
        first_order_at=datetime(2019, 1, 1, tzinfo=UTC),
        status="at_risk",
        engagement_score=42,
        returned_at=datetime(2022, 1, 1, tzinfo=UTC),
    )
    back = _field_paths(mapping.customer_from_wire(mapping.customer_to_wire(full)))
    sent = _field_paths(full)
    changed = {name for name in sent if sent[name] != back[name]}
    assert changed == set(mapping.DROPPED_FIELDS)
    assert set(sent) >= set(mapping.DROPPED_FIELDS)  # every name is a real canonical field


