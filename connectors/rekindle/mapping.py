"""Rekindle's wire shapes <-> the canonical :class:`~gateway.model.Customer`. Pure functions.

Plain dict building on the hot path (no marshmallow): :func:`customer_to_wire` is what the relay
calls for every customer it sends, tens of thousands a second.

* Money: ``total_spent`` is a decimal in the account's business currency, which the API never
  names; the connection option ``currency`` says which. It becomes ``lifetime_value`` exactly;
  a ``total_spent`` with more decimals than that currency has is a :class:`MappingError`, and so
  is a ``lifetime_value`` in another currency (the gateway never converts).
* Dates: ``last_purchase_date`` is a date; canonically it is ``last_order_at`` at midnight UTC.
  Going out, ``last_order_at`` is taken in UTC and its date is sent.
* Names: Rekindle holds one ``name``; :func:`split_name` cuts it into first and last (surname
  particles such as "van der" stay with the surname). The joined name (``Customer.name``) is what
  round-trips; how it was split is re-derived.
* ``returned``: update-customer's answer says whether this very update was a win-back return.
  Its customer has no ``returned_at``; when ``returned`` is true the return happened at this
  update, so ``returned_at`` is taken as the answer's ``updated_at``; otherwise it is unknown
  (``None``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Mapping

from gateway.model import Customer, Money, MoneyError, normalise_email, normalise_phone

__all__ = [
    "DROPPED_FIELDS",
    "MappingError",
    "NARROWED_FIELDS",
    "PARTICLES",
    "customer_from_wire",
    "customer_to_wire",
    "customers_from_wire",
    "join_name",
    "split_name",
    "updated_from_wire",
]

SERVICE = "rekindle"

#: Canonical fields a round trip through Rekindle loses, and why.
DROPPED_FIELDS: dict[str, str] = {
    "id": "the gateway's own id; Rekindle keys customers by email and assigns its own id "
    "(kept as external_ids['rekindle'] on the way back)",
    "external_ids": "Rekindle knows none of them; only its own id comes back, as "
    "external_ids['rekindle']",
    "language": "Rekindle has no language field",
    "timezone": "Rekindle has no timezone field",
    "address": "Rekindle has no address fields",
    "birthdate": "Rekindle has no birthdate field",
    "gender": "Rekindle has no gender field",
    "tags": "Rekindle has no tags",
    "metadata": "Rekindle has no custom fields",
    "consent": "Rekindle keeps no consent flags (it messages under its own terms)",
    "first_order_at": "Rekindle keeps only the last purchase date",
    "recency_score": "RFM scores are RCI's; Rekindle has only its engagement score",
    "frequency_score": "RFM scores are RCI's; Rekindle has only its engagement score",
    "monetary_score": "RFM scores are RCI's; Rekindle has only its engagement score",
    "rfm": "RFM scores are RCI's; Rekindle has only its engagement score",
    "grade": "RCI's grade; Rekindle has none",
    "segments": "RCI's segments; Rekindle has none",
    "cohort": "Rekindle has no cohort",
    "acquisition_source": "Rekindle has no acquisition source",
    "status": "computed by Rekindle: it re-scores on every upsert, the gateway's status is not "
    "sent",
    "engagement_score": "computed by Rekindle: it re-scores on every upsert, the gateway's "
    "score is not sent",
    "returned_at": "set by Rekindle's own win-back attribution, never sent",
    "redacted_at": "Rekindle has no redaction marker (and no delete: erasure there is manual)",
    "created_at": "Rekindle does not expose when it first saw a customer",
    "updated_at": "Rekindle's own: it stamps every upsert and re-score",
}

#: Canonical fields that survive a round trip only in part, and how.
NARROWED_FIELDS: dict[str, str] = {
    "first_name": "Rekindle holds one name: the joined name survives, its split into first and "
    "last is re-derived by split_name",
    "last_name": "Rekindle holds one name: the joined name survives, its split into first and "
    "last is re-derived by split_name",
    "last_order_at": "Rekindle keeps a date: the time of day comes back as midnight UTC",
}

#: Words that begin a surname: "van der Berg", "de la Cruz", "bin Said", "al Amin".
PARTICLES = frozenset(
    """van von der den de del della dela dei degli da das dos do di du la le les lo
    ter ten te het 't bin ibn ben al el st st. saint""".split()
)


class MappingError(ValueError):
    """A value that cannot be carried across exactly (money precision, currency, a bad email)."""


# --- names ----------------------------------------------------------------------------------


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """Cut a full name into (first, last).

    The last word is the surname, together with any surname particles just before it; at least
    one word stays the first name. "Jane Smith" -> ("Jane", "Smith"); "Madonna" ->
    ("Madonna", None); "Mary Ann van der Berg" -> ("Mary Ann", "van der Berg").
    """
    if not name:
        return None, None
    words = name.split()
    if not words:
        return None, None
    if len(words) == 1:
        return words[0], None
    start = len(words) - 1
    while start > 1 and words[start - 1].lower() in PARTICLES:
        start -= 1
    return " ".join(words[:start]), " ".join(words[start:])


def join_name(first: str | None, last: str | None) -> str | None:
    """First and last joined with one space (what ``Customer.name`` gives)."""
    parts = [p.strip() for p in (first, last) if p and p.strip()]
    return " ".join(parts) or None


# --- wire -> canonical ----------------------------------------------------------------------


def _money(value: Any, currency: str) -> Money | None:
    if value is None:
        return None
    if isinstance(value, float):  # a response parsed without parse_float=Decimal
        value = Decimal(repr(value))
    try:
        return Money.from_decimal(value, currency)
    except MoneyError as exc:
        raise MappingError(f"total_spent {value}: {exc}") from None


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise MappingError(f"not an ISO 8601 datetime: {value!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _midnight(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        value = value.date()
    elif not isinstance(value, date):
        try:
            value = date.fromisoformat(value)
        except (TypeError, ValueError):
            raise MappingError(f"not an ISO 8601 date: {value!r}") from None
    return datetime.combine(value, time(0), tzinfo=timezone.utc)


def _email(value: Any) -> str | None:
    try:
        return normalise_email(value)
    except (ValueError, AttributeError):
        raise MappingError(f"not an email address: {value!r}") from None


def _customer(item: Mapping[str, Any], currency: str, returned_at: Any) -> Customer:
    first, last = split_name(item.get("name"))
    rekindle_id = item.get("id")
    return Customer(
        email=_email(item.get("email")),
        external_ids={SERVICE: str(rekindle_id)} if rekindle_id else {},
        first_name=first,
        last_name=last,
        phone=normalise_phone(item.get("phone")),
        lifetime_value=_money(item.get("total_spent"), currency),
        order_count=item.get("purchase_count"),
        last_order_at=_midnight(item.get("last_purchase_date")),
        status=item.get("status"),
        engagement_score=item.get("engagement_score"),
        returned_at=_datetime(returned_at),
        updated_at=_datetime(item.get("updated_at")),
    )


def customer_from_wire(item: Mapping[str, Any], currency: str = "USD") -> Customer:
    """A trigger item, a find-customer match or an update-customer body, as a Customer."""
    return _customer(item, currency, item.get("returned_at"))


def customers_from_wire(items: Any, currency: str = "USD") -> list[Customer]:
    """A trigger's or find-customer's array of items."""
    return [customer_from_wire(item, currency) for item in items]


def updated_from_wire(answer: Mapping[str, Any], currency: str = "USD") -> tuple[Customer, bool]:
    """update-customer's answer ``{"customer": {...}}`` as (Customer, returned)."""
    item = answer["customer"]
    returned = item.get("returned") is True
    customer = _customer(item, currency, item.get("updated_at") if returned else None)
    return customer, returned


# --- canonical -> wire ----------------------------------------------------------------------


def customer_to_wire(customer: Customer, currency: str = "USD") -> dict[str, Any]:
    """The update-customer body for a Customer; fields the gateway does not know are left out.

    ``name`` and ``email`` are Rekindle's required fields: a customer without them still maps
    (the service answers 400 for it, naming the field); a ``lifetime_value`` in a currency other
    than the connection's is a :class:`MappingError`.
    """
    body: dict[str, Any] = {}
    name = customer.name
    if name is not None:
        body["name"] = name
    if customer.email is not None:
        body["email"] = customer.email
    if customer.phone:
        body["phone"] = customer.phone
    moment = customer.last_order_at
    if moment is not None:
        if moment.tzinfo is not None and moment.utcoffset():
            moment = moment.astimezone(timezone.utc)
        body["last_purchase_date"] = moment.date().isoformat()
    value = customer.lifetime_value
    if value is not None:
        if value.currency != currency and value.currency != currency.upper():
            raise MappingError(
                f"lifetime_value is in {value.currency}, but this Rekindle account's business "
                f"currency is {currency.upper()} (the gateway does not convert)"
            )
        body["total_spent"] = value.to_decimal()
    if customer.order_count is not None:
        body["purchase_count"] = customer.order_count
    return body

