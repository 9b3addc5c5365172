"""The one table of triggers: which event types each trigger serves, with its item schema.

A trigger item is a flat JSON object (no nesting), built when its event is written and stored
with it (:func:`gateway.store.events.append_events`); pages serve it as stored. ``id`` is the
event's id. The customer items keep Rekindle's field names (built by
:func:`gateway.scoring.items.customer_item`); the items here (new customer, order, consent,
cart, product, redaction) are the ones that are not about scoring.

:data:`TRIGGERS` is the table; :func:`triggers_for` says which triggers an event belongs to
(the store writes one ``event_triggers`` row for each indexed one); REST hooks reuse both.
Every event also belongs to ``events``, whose page is the events table's own index and whose
items add the event's ``type``, ``subject_id``, ``occurred_at`` and ``source`` to the stored
item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from marshmallow import Schema, fields

from gateway.model import EVENT_TYPES, Customer, Money, Order, Product, utc
from gateway.scoring.items import customer_item

#: The statuses the customer-status trigger serves (entering ``active`` is not news).
ATTENTION_STATUSES = ("at_risk", "lapsed", "lost")

#: Item fields that hold personal data; erasure sets them to null in stored items.
PII_ITEM_FIELDS = ("email", "phone", "name", "first_name", "last_name")

#: The consent channels a consent-changed item names.
CONSENT_CHANNELS = ("email", "sms", "whatsapp", "push", "gdpr_processing")


def iso_time(moment: datetime | None) -> str | None:
    """``2025-03-15T10:22:00Z``: UTC, whole seconds (as the customer items write times)."""
    moment = utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def amount_text(money: Money | None) -> str | None:
    """An exact amount as a decimal string with the currency's places (``"59.97"``)."""
    return str(money.to_decimal()) if money is not None else None


def minor_text(minor: int | None, currency: str | None) -> str | None:
    """Minor units as an exact decimal string in ``currency``."""
    if minor is None or not currency:
        return None
    return str(Money(int(minor), currency).to_decimal())


# --- item schemas (what each trigger's items hold; for the OpenAPI document) ----------------


class _Item(Schema):
    id = fields.String(required=True, metadata={
        "description": "the event's id: unique per occurrence, never reused"})


class CustomerStatusItemSchema(_Item):
    """An item of customer-status and customer-returned (Rekindle's field names)."""

    customer_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    status = fields.String(allow_none=True, metadata={"enum": ["active", *ATTENTION_STATUSES]})
    previous_status = fields.String(allow_none=True)
    engagement_score = fields.Integer(allow_none=True)
    last_purchase_date = fields.String(allow_none=True, metadata={"format": "date"})
    total_spent = fields.Raw(allow_none=True, metadata={
        "description": "lifetime value in the base currency, an exact JSON number"})
    purchase_count = fields.Integer(allow_none=True)
    returned_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    changed_at = fields.String(allow_none=True, metadata={"format": "date-time"})

    class Meta:
        example = {
            "id": "evt_01jq3b6a1m6q7c2v1x9y8z7w6t", "customer_id": "cus_01jq3b5z0000000000000000",
            "name": "Jane Smith", "email": "jane@example.com", "phone": "+27821234567",
            "status": "lapsed", "previous_status": "at_risk", "engagement_score": 32,
            "last_purchase_date": "2024-09-01", "total_spent": 4200.0, "purchase_count": 7,
            "returned_at": None, "updated_at": "2025-03-15T10:22:00Z",
            "changed_at": "2025-03-15T10:22:00Z"}


class NewCustomerItemSchema(CustomerStatusItemSchema):
    """An item of new-customer (``customer.created``; ``customer.updated`` has the same)."""

    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    consent_email = fields.Boolean(allow_none=True)
    consent_sms = fields.Boolean(allow_none=True)
    consent_whatsapp = fields.Boolean(allow_none=True)
    consent_push = fields.Boolean(allow_none=True)
    consent_gdpr_processing = fields.Boolean(allow_none=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})

    class Meta:
        example = {**CustomerStatusItemSchema.Meta.example, "status": None,
                   "previous_status": None, "first_name": "Jane", "last_name": "Smith",
                   "language": "en", "consent_email": True, "consent_sms": None,
                   "consent_whatsapp": None, "consent_push": None,
                   "consent_gdpr_processing": True, "created_at": "2025-03-15T10:22:00Z"}


class OrderItemSchema(_Item):
    """An item of new-order (``order.placed``; ``order.cancelled`` has the same)."""

    order_id = fields.String(required=True, metadata={"description": "the shop's order id"})
    customer_id = fields.String(required=True)
    email = fields.String(allow_none=True)
    placed_at = fields.String(required=True, metadata={"format": "date-time"})
    total = fields.String(required=True, metadata={"description": "exact decimal string"})
    currency = fields.String(required=True)
    item_count = fields.Integer(required=True)
    line_count = fields.Integer(required=True)
    cancelled = fields.Boolean(required=True)

    class Meta:
        example = {"id": "evt_01jq3b6a1m6q7c2v1x9y8z7w6t", "order_id": "O-789",
                   "customer_id": "cus_01jq3b5z0000000000000000", "email": "john@example.com",
                   "placed_at": "2025-08-22T21:00:00Z", "total": "89.97", "currency": "USD",
                   "item_count": 3, "line_count": 2, "cancelled": False}


class ConsentItemSchema(_Item):
    """An item of consent-changed (``customer.unsubscribed``, ``customer.opted_in``)."""

    customer_id = fields.String(required=True)
    email = fields.String(allow_none=True)
    channel = fields.String(required=True, metadata={"enum": list(CONSENT_CHANNELS)})
    consent = fields.Boolean(required=True)
    changed_at = fields.String(required=True, metadata={"format": "date-time"})

    class Meta:
        example = {"id": "evt_01jq3b6a1m6q7c2v1x9y8z7w6t",
                   "customer_id": "cus_01jq3b5z0000000000000000", "email": "jane@example.com",
                   "channel": "email", "consent": False, "changed_at": "2025-03-15T10:22:00Z"}


class EventItemSchema(_Item):
    """An item of the events trigger: the event's envelope, and the type's own fields."""

    type = fields.String(required=True, metadata={"enum": sorted(EVENT_TYPES)})
    subject_id = fields.String(allow_none=True)
    occurred_at = fields.String(required=True, metadata={"format": "date-time"})
    source = fields.String(allow_none=True)

    class Meta:
        example = {**OrderItemSchema.Meta.example, "type": "order.placed",
                   "subject_id": "O-789", "occurred_at": "2025-08-22T21:00:05Z",
                   "source": "replenit"}


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trigger:
    """One trigger: the event types it serves, its item schema, the item field that says when
    (``time_field``), and, for customer-status, the statuses it serves (``statuses``: an event
    of its type into any other status is not its item). ``indexed``: its membership is stored
    in ``event_triggers`` (all but ``events``, which is every event)."""

    name: str
    event_types: frozenset[str]
    item_schema: type[Schema]
    time_field: str
    statuses: tuple[str, ...] | None = None
    indexed: bool = True

    def includes(self, event_type: str, item: Mapping[str, Any]) -> bool:
        if event_type not in self.event_types:
            return False
        return self.statuses is None or item.get("status") in self.statuses

    def status_of(self, item: Mapping[str, Any]) -> str | None:
        """The status stored with the membership (what ``?status=`` narrows by)."""
        return item.get("status") if self.statuses is not None else None


TRIGGERS: dict[str, Trigger] = {
    t.name: t
    for t in (
        Trigger("customer-status", frozenset({"customer.status_changed"}),
                CustomerStatusItemSchema, "changed_at", statuses=ATTENTION_STATUSES),
        Trigger("customer-returned", frozenset({"customer.returned"}),
                CustomerStatusItemSchema, "returned_at"),
        Trigger("new-customer", frozenset({"customer.created"}), NewCustomerItemSchema,
                "created_at"),
        Trigger("new-order", frozenset({"order.placed"}), OrderItemSchema, "placed_at"),
        Trigger("consent-changed", frozenset({"customer.unsubscribed", "customer.opted_in"}),
                ConsentItemSchema, "changed_at"),
        Trigger("events", frozenset(EVENT_TYPES), EventItemSchema, "occurred_at",
                indexed=False),
    )
}


def triggers_for(event_type: str, item: Mapping[str, Any]) -> list[str]:
    """The names of the triggers an event of ``event_type`` with ``item`` belongs to, in table
    order; ``events`` is always among them."""
    return [t.name for t in TRIGGERS.values() if t.includes(event_type, item)]


def get_trigger(name: str) -> Trigger:
    """The trigger called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return TRIGGERS[name]
    except KeyError:
        raise KeyError(f"unknown trigger {name!r}; triggers: {', '.join(TRIGGERS)}") from None


# --- item builders (``id`` is added by the event writer) --------------------------------------


def new_customer_item(customer: Customer) -> dict[str, Any]:
    """The item of ``customer.created`` / ``customer.updated`` for a stored customer (read
    back with :func:`gateway.store.records.get_customer`)."""
    item = customer_item(
        customer_id=customer.id, first_name=customer.first_name,
        last_name=customer.last_name, email=customer.email, phone=customer.phone,
        status=customer.status, previous_status=None,
        engagement_score=customer.engagement_score, last_order_at=customer.last_order_at,
        ltv_minor=customer.lifetime_value.minor if customer.lifetime_value else None,
        currency=customer.lifetime_value.currency if customer.lifetime_value else "USD",
        purchase_count=customer.order_count, returned_at=customer.returned_at,
        updated_at=customer.updated_at, changed_at=None)
    consent = customer.consent
    item.update(
        first_name=customer.first_name, last_name=customer.last_name,
        language=customer.language, consent_email=consent.email, consent_sms=consent.sms,
        consent_whatsapp=consent.whatsapp, consent_push=consent.push,
        consent_gdpr_processing=consent.gdpr_processing,
        created_at=iso_time(customer.created_at))
    return item


def order_item(order: Order, *, customer_id: str, email: str | None) -> dict[str, Any]:
    """The item of ``order.placed`` / ``order.cancelled``; ``total`` is an exact decimal
    string in the order's ``currency``."""
    return {
        "order_id": order.id,
        "customer_id": customer_id,
        "email": email,
        "placed_at": iso_time(order.placed_at),
        "total": amount_text(order.total),
        "currency": order.total.currency,
        "item_count": order.item_count,
        "line_count": len(order.lines),
        "cancelled": bool(order.cancelled),
    }


def consent_item(*, customer_id: str, email: str | None, channel: str, consent: bool,
                 changed_at: datetime) -> dict[str, Any]:
    """The item of ``customer.unsubscribed`` (``consent`` false) / ``customer.opted_in``."""
    if channel not in CONSENT_CHANNELS:
        raise ValueError(f"unknown consent channel {channel!r}")
    return {"customer_id": customer_id, "email": email, "channel": channel,
            "consent": bool(consent), "changed_at": iso_time(changed_at)}


def cart_item(*, customer_id: str, email: str | None, order_number: str | None,
              value: Money | None, item_count: int | None, promo: str | None) -> dict[str, Any]:
    """The item of ``cart.converted``."""
    return {"customer_id": customer_id, "email": email, "order_number": order_number,
            "value": amount_text(value), "currency": value.currency if value else None,
            "item_count": item_count, "promo": promo}


def product_item(product: Product) -> dict[str, Any]:
    """The item of ``product.updated``."""
    return {"product_id": product.id, "name": product.name,
            "taxonomy": " > ".join(product.taxonomy) or None,
            "variant_count": len(product.variants),
            "available_count": sum(1 for v in product.variants if v.available)}


def redacted_item(*, customer_id: str, redacted_at: datetime) -> dict[str, Any]:
    """The item of ``customer.redacted`` (no personal data, by design)."""
    return {"customer_id": customer_id, "redacted_at": iso_time(redacted_at)}


def scrub_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item with every personal field (:data:`PII_ITEM_FIELDS`) set to null; its keys,
    and so its format, stay."""
    return {k: (None if k in PII_ITEM_FIELDS else v) for k, v in item.items()}


__all__ = [
    "ATTENTION_STATUSES", "CONSENT_CHANNELS", "ConsentItemSchema", "CustomerStatusItemSchema",
    "EventItemSchema", "NewCustomerItemSchema", "OrderItemSchema", "PII_ITEM_FIELDS",
    "TRIGGERS", "Trigger", "amount_text", "cart_item", "consent_item",
    "get_trigger", "iso_time", "minor_text", "new_customer_item", "order_item", "product_item",
    "redacted_item", "scrub_item", "triggers_for",
]
