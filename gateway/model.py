"""The canonical records every connector translates to and from.

Plain dataclasses, no I/O. Times are timezone-aware UTC datetimes; money is :class:`Money`;
emails are normalised with :func:`normalise_email`. A connector's mapping turns its wire shapes
into these and back, and nothing outside ``connectors/<name>/`` knows a vendor's field names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from gateway.money import Money, MoneyError, exponent, money_sum, normalise_currency

__all__ = [
    "Address",
    "Cart",
    "CartItem",
    "Consent",
    "Customer",
    "Event",
    "EVENT_TYPES",
    "Money",
    "MoneyError",
    "Order",
    "OrderLine",
    "Product",
    "SERVICES",
    "STATUSES",
    "Variant",
    "exponent",
    "money_sum",
    "normalise_currency",
    "normalise_email",
    "normalise_phone",
    "utc",
]

#: The four services a customer can carry an external id for.
SERVICES = ("rekindle", "rejoiner", "rci", "replenit")

#: Engagement statuses, from healthiest to gone.
STATUSES = ("active", "at_risk", "lapsed", "lost")

EVENT_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.status_changed",
        "customer.returned",
        "customer.unsubscribed",
        "customer.opted_in",
        "customer.redacted",
        "order.placed",
        "order.cancelled",
        "cart.converted",
        "product.updated",
        "hook.disabled",
    }
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_email(email: str | None) -> str | None:
    """Trim and lower-case an email (the usual join key); ``None`` or blank gives ``None``.

    Raises ``ValueError`` for a string that is not an email address.
    """
    if email is None:
        return None
    value = email.strip().lower()
    if not value:
        return None
    if not _EMAIL.match(value):
        raise ValueError(f"not an email address: {email!r}")
    return value


def normalise_phone(phone: str | None) -> str | None:
    """Reduce a phone number to E.164 (``+`` and digits) when it is one; otherwise ``None``.

    Separators (spaces, dashes, dots, brackets) are dropped; a number without a leading ``+`` or
    ``00`` has no known country and is not guessed at.
    """
    if not phone:
        return None
    compact = re.sub(r"[\s\-().]", "", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if _E164.match(compact) else None


def utc(value: datetime | None) -> datetime | None:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(slots=True)
class Address:
    line1: str | None = None
    line2: str | None = None
    line3: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2 where known


@dataclass(slots=True)
class Consent:
    """Per-channel consent. ``None`` means "not known", which is not the same as ``False``."""

    email: bool | None = None
    sms: bool | None = None
    whatsapp: bool | None = None
    push: bool | None = None
    gdpr_processing: bool | None = None
    opted_in_at: datetime | None = None
    unsubscribed_at: datetime | None = None


@dataclass(slots=True)
class Customer:
    """A shop's customer. ``email`` is the usual join key across services."""

    id: str | None = None  # the gateway's id; None before it is stored
    email: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)  # service -> that service's id
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None  # E.164
    language: str | None = None  # BCP 47
    timezone: str | None = None
    address: Address | None = None
    birthdate: date | None = None
    gender: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    consent: Consent = field(default_factory=Consent)
    # Aggregates. Computed by the gateway from its orders, or reported by a source.
    lifetime_value: Money | None = None
    order_count: int | None = None
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    # Scores.
    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    rfm: int | None = None
    grade: str | None = None
    segments: list[str] = field(default_factory=list)
    cohort: str | None = None  # YYYY-MM of the first order
    acquisition_source: str | None = None
    status: str | None = None  # one of STATUSES
    engagement_score: int | None = None  # 0-100
    returned_at: datetime | None = None
    redacted_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def name(self) -> str | None:
        """First and last name joined with one space; ``None`` when both are missing."""
        parts = [p.strip() for p in (self.first_name, self.last_name) if p and p.strip()]
        return " ".join(parts) or None


@dataclass(slots=True)
class OrderLine:
    product_id: str | None
    sku: str | None
    quantity: int
    unit_price: Money  # price actually paid per unit, after discounts
    original_price: Money | None = None
    name: str | None = None
    size: str | None = None
    colour: str | None = None
    brand: str | None = None
    gift: bool = False

    @property
    def total(self) -> Money:
        return self.unit_price * self.quantity


@dataclass(slots=True)
class Order:
    id: str  # the shop's order id (the natural key)
    placed_at: datetime
    total: Money
    lines: list[OrderLine] = field(default_factory=list)
    customer_id: str | None = None  # the gateway's customer id, once resolved
    customer_email: str | None = None
    customer_external_id: str | None = None  # the shop's own customer id, if it sent one
    cancelled: bool = False
    source: str | None = None

    @property
    def currency(self) -> str:
        return self.total.currency

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)


@dataclass(slots=True)
class Variant:
    id: str
    sku: str
    name: str | None = None
    price: Money | None = None  # full retail price
    sale_price: Money | None = None
    available: bool = True
    stock: int | None = None
    image: str | None = None
    size: str | None = None
    language: str | None = None
    brand: str | None = None


@dataclass(slots=True)
class Product:
    id: str  # the shop's product id (the natural key)
    name: str | None = None
    variants: list[Variant] = field(default_factory=list)
    taxonomy: list[str] = field(default_factory=list)  # broadest first
    offline_exclusive: bool = False


@dataclass(slots=True)
class CartItem:
    product_id: str
    name: str | None = None
    unit_price: Money | None = None
    quantity: int | None = None
    line_total: Money | None = None
    description: str | None = None
    categories: list[str] = field(default_factory=list)
    product_url: str | None = None
    image_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Cart:
    """A converted (or abandoned) cart: Rejoiner's convert payload."""

    email: str
    value: Money | None = None
    item_count: int | None = None
    promo: str | None = None
    order_number: str | None = None
    return_url: str | None = None
    items: list[CartItem] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Event:
    """Something that happened to a tenant's data; ``item`` is its flat trigger item."""

    id: str
    tenant_id: str
    type: str
    subject_id: str | None
    occurred_at: datetime
    source: str | None = None
    item: dict[str, Any] = field(default_factory=dict)
