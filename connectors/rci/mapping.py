"""Repeat Customer Insights <-> canonical: pure functions, plain dicts, no marshmallow.

Direction: RCI is read only, so the gateway's direction is wire -> canonical
(:func:`customer_from_wire`). :func:`customer_to_wire` goes the other way for the sandbox's
seeding and the round-trip tests.

Choices where the reference leaves room:

- ``created_at`` / ``updated_at`` of the canonical customer come from ``remote_created_at`` /
  ``remote_updated_at`` (when the shop created and last updated the customer), not from RCI's
  own ``created_at`` / ``updated_at`` (when RCI imported and re-analysed it: bookkeeping of RCI,
  moved by every re-score). ``customer_to_wire`` sets RCI's own pair to the remote pair unless
  ``rci_created_at`` / ``rci_updated_at`` are given.
- ``ltv_cents`` is read as minor units of ``ltv_currency`` (cents for USD, yen for JPY, fils for
  BHD): ``Money(ltv_cents, ltv_currency)``, exact both ways. A customer without a lifetime value
  goes out as ``0`` in ``currency`` (default USD), as the service never sends ``null``.
- Timestamps on the wire are ISO 8601 UTC with milliseconds, as the reference prints them
  (``2016-04-13T18:31:51.000Z``); the canonical side is aware UTC. Going out, microseconds below
  the millisecond are truncated, so only millisecond-precision times survive a round trip.
- A redacted customer (``redacted_at`` set) must not be processed except to erase it. Reading one
  gives a customer holding only its RCI id, ``redacted_at`` and ``consent.gdpr_processing =
  False``, whatever else the document carries; writing one blanks its PII (names, email) and its
  marketing consents, as RCI does.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Mapping

from marshmallow import ValidationError

from connectors.rci.wire import CustomerResourceSchema
from gateway.model import Consent, Customer, Money, normalise_email

SERVICE = "rci"

#: Canonical fields a round trip through RCI loses, and why.
DROPPED_FIELDS: dict[str, str] = {
    "id": "the gateway's own id; RCI keys a customer by the shop's id (external_ids['rci'])",
    "external_ids": "only external_ids['rci'] (the resource id) is held, not other services' ids",
    "phone": "RCI holds no phone number",
    "language": "RCI holds no language",
    "timezone": "RCI holds no timezone",
    "address": "RCI holds no address",
    "birthdate": "RCI holds no birthdate",
    "gender": "RCI holds no gender",
    "tags": "RCI has segments (its own analysis), not the shop's tags",
    "metadata": "RCI holds no free-form metadata",
    "consent.whatsapp": "RCI has email and SMS marketing consent only",
    "consent.push": "RCI has email and SMS marketing consent only",
    "consent.gdpr_processing": "RCI has no processing flag; only redaction (redacted_at) says no",
    "consent.opted_in_at": "RCI holds consent flags without their times",
    "consent.unsubscribed_at": "RCI holds consent flags without their times",
    "first_order_at": "RCI holds only its month, as cohort (YYYY-MM)",
    "status": "engagement status is the gateway's (or Rekindle's) scoring, not RCI's",
    "engagement_score": "engagement score is the gateway's (or Rekindle's) scoring, not RCI's",
    "returned_at": "win-back attribution is not RCI's",
}

_EPOCH_FMT = "%Y-%m-%dT%H:%M:%S"


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp (``...Z`` or with an offset) as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime | None) -> str | None:
    """An aware (or naive UTC) datetime as RCI writes it: ``2016-04-13T18:31:51.000Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return f"{value.strftime(_EPOCH_FMT)}.{value.microsecond // 1000:03d}Z"


def is_redacted(resource: dict[str, Any]) -> bool:
    """Whether a customer resource is redacted (its data must not be processed)."""
    return bool(resource["attributes"].get("redacted_at"))


def customer_from_wire(resource: dict[str, Any]) -> Customer:
    """A ``customer`` resource object (``{"type", "id", "attributes", "links"}``) as a Customer."""
    a = resource["attributes"]
    ids = {SERVICE: str(resource["id"])}
    redacted_at = a.get("redacted_at")
    if redacted_at:
        return Customer(
            external_ids=ids,
            redacted_at=parse_time(redacted_at),
            consent=Consent(gdpr_processing=False),
        )
    raw_email = a.get("email")
    try:
        email, metadata = normalise_email(raw_email), {}
    except ValueError:  # the shop's data, not ours to refuse: kept aside, not used as a join key
        email, metadata = None, {"rci_invalid_email": raw_email}
    cents = a.get("ltv_cents")
    currency = a.get("ltv_currency")
    return Customer(
        email=email,
        external_ids=ids,
        metadata=metadata,
        first_name=a.get("first_name"),
        last_name=a.get("last_name"),
        consent=Consent(
            email=a.get("email_marketing_consent"),
            sms=a.get("sms_marketing_consent"),
        ),
        lifetime_value=Money(cents, currency) if cents is not None and currency else None,
        order_count=a.get("orders_count"),
        last_order_at=parse_time(a.get("recent_order_at")),
        recency_score=a.get("recency_score"),
        frequency_score=a.get("frequency_score"),
        monetary_score=a.get("monetary_score"),
        rfm=a.get("rfm"),
        grade=a.get("grade"),
        segments=list(a.get("segments") or ()),
        cohort=a.get("cohort"),
        acquisition_source=a.get("acquisition_source"),
        created_at=parse_time(a.get("remote_created_at")),
        updated_at=parse_time(a.get("remote_updated_at")),
    )


def customer_attributes(
    customer: Customer,
    *,
    currency: str = "USD",
    rci_created_at: datetime | None = None,
    rci_updated_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``attributes`` of a customer resource, every attribute present."""
    ltv = customer.lifetime_value
    remote_created = format_time(customer.created_at)
    remote_updated = format_time(customer.updated_at)
    redacted = customer.redacted_at is not None
    consent = customer.consent
    return {
        "remote_created_at": remote_created,
        "remote_updated_at": remote_updated,
        "first_name": None if redacted else customer.first_name,
        "last_name": None if redacted else customer.last_name,
        "email": None if redacted else customer.email,
        "email_marketing_consent": False if redacted else consent.email,
        "sms_marketing_consent": False if redacted else consent.sms,
        "created_at": format_time(rci_created_at) if rci_created_at else remote_created,
        "updated_at": format_time(rci_updated_at) if rci_updated_at else remote_updated,
        "ltv_cents": ltv.minor if ltv is not None else 0,
        "ltv_currency": ltv.currency if ltv is not None else currency,
        "orders_count": customer.order_count or 0,
        "recent_order_at": format_time(customer.last_order_at),
        "recency_score": customer.recency_score,
        "frequency_score": customer.frequency_score,
        "monetary_score": customer.monetary_score,
        "rfm": customer.rfm,
        "grade": customer.grade,
        "acquisition_source": customer.acquisition_source,
        "cohort": customer.cohort,
        "segments": list(customer.segments),
        "redacted_at": format_time(customer.redacted_at),
    }


def customer_to_wire(
    customer: Customer,
    *,
    base_url: str = "https://repeat-customer-insights.littlestreamsoftware.com/api/v1",
    currency: str = "USD",
    rci_created_at: datetime | None = None,
    rci_updated_at: datetime | None = None,
) -> dict[str, Any]:
    """A Customer as an RCI ``customer`` resource object (id from ``external_ids['rci']``).

    ``base_url`` is the API base the resource's ``links.self`` is built on.
    """
    rci_id = customer.external_ids.get(SERVICE)
    if not rci_id:
        raise ValueError("an RCI customer needs external_ids['rci']")
    return {
        "type": "customer",
        "id": rci_id,
        "attributes": customer_attributes(
            customer,
            currency=currency,
            rci_created_at=rci_created_at,
            rci_updated_at=rci_updated_at,
        ),
        "links": {"self": f"{base_url.rstrip('/')}/customers/{rci_id}"},
    }


# --- inbound: RCI's shapes posted to the gateway (see connectors.base.InboundParser) ---------


_SCHEMAS = threading.local()


def _inbound_schema() -> CustomerResourceSchema:
    """This thread's schema for inbound resources (``links`` optional): building one costs
    more than a load, so each thread keeps one."""
    schema = getattr(_SCHEMAS, "inbound", None)
    if schema is None:
        schema = _SCHEMAS.inbound = CustomerResourceSchema(partial=("links",))
    return schema


def parse_customer(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``customers`` topic: one ``customer`` resource object (or a document holding one
    in ``data``), checked by the wire schema (``links`` may be left out). A redacted resource
    gives a customer holding only its RCI id and ``redacted_at``: an erasure."""
    if isinstance(record, Mapping) and "data" in record and "type" not in record:
        record = record["data"]
    if not isinstance(record, Mapping):
        raise ValidationError({"_schema": ["The record must be a JSON object."]})
    _inbound_schema().load(record)
    try:
        return [customer_from_wire(dict(record))]
    except ValueError as exc:
        raise ValidationError({"attributes": [str(exc)]}) from None


#: The inbound formats this connector parses, by ingest topic.
INBOUND = {"customers": parse_customer}
