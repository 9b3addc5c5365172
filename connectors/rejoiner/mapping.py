"""Rejoiner wire shapes <-> the canonical model: pure functions, plain dicts.

Money: Rejoiner speaks integer cents and never names the currency; the connection option
``currency`` does, and every amount must be in it (a cart in another currency is refused with
``MoneyError``, never converted). "Cents" are the currency's minor units (yen for JPY).

Dates: Rejoiner's datetimes are UTC, written without an offset (``2018-05-25T05:35:31.803626``);
they are read as UTC and written as ISO 8601 with ``Z``. ``birthdate`` is ``YYYY-MM-DD``.

The profile (``customer_to_profile`` / ``profile_to_customer``):

- A ``None`` canonical field is left out of the payload, not sent as ``""``: on ``PUT`` an absent
  field keeps what Rejoiner holds, so the gateway never blanks what it does not know.
- ``language`` goes out as its BCP 47 primary subtag when that has two letters (``en-US`` ->
  ``en``); Rejoiner takes no more than 2 characters. ``gender`` goes out as ``m``/``f`` (also from
  ``male``/``female``), otherwise not at all.
- Scores travel in two gateway-owned places: derived ``gw:`` tags for journeys
  (``gw:status:lapsed``, ``gw:grade:A``, ``gw:rfm:555``, ``gw:segment:<name>``) and one
  ``gateway`` metadata key holding the gateway's figures (ids, lifetime value, order counts and
  times, RFM, status, score). Both are reserved names: canonical tags with a derived prefix and a
  canonical metadata key ``gateway`` are regenerated, not passed through. Other ``gw:`` tags
  (``gw:winback``) are plain canonical tags the gateway owns.
- :func:`merge_profile` is the ownership rule of an upsert: keep the shop's own tags and metadata
  keys as Rejoiner holds them, replace only ``gw:`` tags and the ``gateway`` key.

The cart (``cart_to_convert`` / ``convert_to_cart``): extras of the cart and of its items go out
as strings (Rejoiner keeps them so). A unit price derived from a line total
(``qty_price / item_qty``) is rounded half-even; totals stay exact and are never rounded.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping

from marshmallow import ValidationError

from connectors.rejoiner import wire
from connectors.rejoiner.wire import as_string
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
    normalise_email,
    normalise_phone,
)

SERVICE = "rejoiner"
GW_PREFIX = "gw:"
GATEWAY_KEY = "gateway"
#: Tags derived from canonical fields; regenerated on every write, never canonical tags.
DERIVED_TAG_PREFIXES = ("gw:status:", "gw:grade:", "gw:rfm:", "gw:segment:")

#: Canonical customer fields a round trip through Rejoiner loses, and why.
DROPPED_FIELDS: dict[str, str] = {
    "consent.email": "a profile write takes no consent: it travels by the consent.opt_in and "
    "consent.unsubscribe operations, and comes back as is_opted_in / is_unsubscribed",
    "consent.opted_in_at": "Rejoiner stamps opt_in_date itself when it records the opt-in",
    "consent.unsubscribed_at": "Rejoiner stamps unsubscribe_date itself on unsubscribe",
    "consent.sms": "Rejoiner records email consent only",
    "consent.whatsapp": "Rejoiner records email consent only",
    "consent.push": "Rejoiner records email consent only",
    "consent.gdpr_processing": "Rejoiner has no processing-consent flag",
    "redacted_at": "a redacted customer is never sent (its PII is gone); erasure at Rejoiner is "
    "an unsubscribe",
    "created_at": "Rejoiner's profile carries no creation time",
    "updated_at": "Rejoiner's profile carries no update time",
}

#: Canonical fields that survive only in part, and how.
NARROWED_FIELDS: dict[str, str] = {
    "language": "only a two-letter BCP 47 primary subtag survives (en-US -> en); a three-letter "
    "language is not sent",
    "gender": "only m and f (male/female map to them); anything else is not sent",
    "phone": "read back only when Rejoiner's phone is E.164",
    "tags": "tags starting gw:status:, gw:grade:, gw:rfm:, gw:segment: are derived from the "
    "scores and regenerated",
    "metadata": "the key 'gateway' is the gateway's own block, regenerated from the canonical "
    "fields",
}

#: Rejoiner fields with no canonical home, and why they are not read.
IGNORED_WIRE_FIELDS: dict[str, str] = {
    "age": "not canonical: it follows from birthdate, and a stored age goes stale",
    "opt_in_info": "how consent was given (free strings); the canonical consent keeps the fact "
    "and its time, not the story",
}

_CART_KEYS = ("cart_value", "cart_item_count", "promo", "order_number", "return_url")
_ITEM_KEYS = ("product_id", "name", "price", "description", "category", "item_qty",
              "qty_price", "product_url", "image_url")
#: OrderLine fields carried as cart-item extras so an order survives a convert payload.
_LINE_EXTRAS = ("sku", "size", "colour", "brand")

_MALE = {"m", "male", "man"}
_FEMALE = {"f", "female", "woman"}


class MappingError(ValueError):
    """A record that cannot be expressed in Rejoiner's shapes (e.g. a cart without an email)."""


# --- small conversions -----------------------------------------------------------------------


def iso_z(value: datetime | None) -> str | None:
    """A UTC ISO 8601 string with ``Z``; a naive datetime is taken to be UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat() + "Z"


def parse_datetime(value: str | None) -> datetime | None:
    """Rejoiner's datetime (UTC, with or without an offset) as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def language_to_wire(language: str | None) -> str | None:
    """The BCP 47 primary subtag, lower-cased, when it has two letters; else None."""
    if not language:
        return None
    primary = language.replace("_", "-").split("-", 1)[0].strip().lower()
    return primary if len(primary) == 2 and primary.isalpha() else None


def gender_to_wire(gender: str | None) -> str | None:
    if not gender:
        return None
    value = gender.strip().lower()
    return "m" if value in _MALE else "f" if value in _FEMALE else None


def cents(amount: Money | None, currency: str) -> int | None:
    """Minor units of an amount in the connection's currency (refuses any other currency)."""
    if amount is None:
        return None
    if amount.currency != currency:
        raise MoneyError(f"Rejoiner's connection speaks {currency}, not {amount.currency}")
    return amount.minor


def _money(minor: Any, currency: str) -> Money | None:
    return None if minor is None else Money(int(minor), currency)


def _blank_none(value: Any) -> Any:
    return None if value == "" else value


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


# --- the profile ---------------------------------------------------------------------------


def derived_tags(customer: Customer) -> list[str]:
    """The ``gw:`` tags the gateway derives from a customer's scores, for Rejoiner journeys."""
    tags = []
    if customer.status:
        tags.append(f"gw:status:{customer.status}")
    if customer.grade:
        tags.append(f"gw:grade:{customer.grade}")
    if customer.rfm is not None:
        tags.append(f"gw:rfm:{customer.rfm}")
    tags.extend(f"gw:segment:{segment}" for segment in customer.segments)
    return tags


def gateway_block(customer: Customer) -> dict[str, Any]:
    """The value of the ``gateway`` metadata key: the gateway's figures for this customer."""
    block: dict[str, Any] = {}
    _put(block, "id", customer.id)
    if customer.external_ids:
        block["external_ids"] = dict(customer.external_ids)
    if customer.lifetime_value is not None:
        block["lifetime_value"] = {"minor": customer.lifetime_value.minor,
                                   "currency": customer.lifetime_value.currency}
    _put(block, "order_count", customer.order_count)
    _put(block, "first_order_at", iso_z(customer.first_order_at))
    _put(block, "last_order_at", iso_z(customer.last_order_at))
    _put(block, "recency_score", customer.recency_score)
    _put(block, "frequency_score", customer.frequency_score)
    _put(block, "monetary_score", customer.monetary_score)
    _put(block, "rfm", customer.rfm)
    _put(block, "grade", customer.grade)
    if customer.segments:
        block["segments"] = list(customer.segments)
    _put(block, "cohort", customer.cohort)
    _put(block, "acquisition_source", customer.acquisition_source)
    _put(block, "status", customer.status)
    _put(block, "engagement_score", customer.engagement_score)
    _put(block, "returned_at", iso_z(customer.returned_at))
    return block


def customer_to_profile(customer: Customer) -> dict[str, Any]:
    """The body of ``POST /customers/`` (or ``PUT``) for a canonical customer.

    Fields the customer does not have are left out (a ``PUT`` keeps Rejoiner's value for them).
    """
    if not customer.email:
        raise MappingError("Rejoiner keys customers by email; this customer has none")
    body: dict[str, Any] = {"email": customer.email}
    _put(body, "first_name", customer.first_name)
    _put(body, "last_name", customer.last_name)
    _put(body, "phone", customer.phone)
    _put(body, "timezone", customer.timezone)
    _put(body, "gender", gender_to_wire(customer.gender))
    _put(body, "language", language_to_wire(customer.language))
    address = customer.address
    if address is not None:
        _put(body, "address1", address.line1)
        _put(body, "address2", address.line2)
        _put(body, "address3", address.line3)
        _put(body, "city", address.city)
        _put(body, "state", address.region)
        _put(body, "postal_code", address.postal_code)
        _put(body, "country", address.country)
    if customer.birthdate is not None:
        body["birthdate"] = customer.birthdate.isoformat()
    tags = [t for t in customer.tags if not t.startswith(DERIVED_TAG_PREFIXES)]
    tags.extend(derived_tags(customer))
    body["tags"] = list(dict.fromkeys(tags))
    metadata = {k: v for k, v in customer.metadata.items() if k != GATEWAY_KEY}
    block = gateway_block(customer)
    if block:
        metadata[GATEWAY_KEY] = block
    body["metadata"] = metadata
    return body


def _from_block(customer: Customer, block: Mapping[str, Any]) -> None:
    customer.id = block.get("id")
    customer.external_ids.update(block.get("external_ids") or {})
    ltv = block.get("lifetime_value")
    if ltv:
        customer.lifetime_value = Money(int(ltv["minor"]), ltv["currency"])
    customer.order_count = block.get("order_count")
    customer.first_order_at = parse_datetime(block.get("first_order_at"))
    customer.last_order_at = parse_datetime(block.get("last_order_at"))
    customer.recency_score = block.get("recency_score")
    customer.frequency_score = block.get("frequency_score")
    customer.monetary_score = block.get("monetary_score")
    customer.rfm = block.get("rfm")
    customer.grade = block.get("grade")
    customer.segments = list(block.get("segments") or [])
    customer.cohort = block.get("cohort")
    customer.acquisition_source = block.get("acquisition_source")
    customer.status = block.get("status")
    customer.engagement_score = block.get("engagement_score")
    customer.returned_at = parse_datetime(block.get("returned_at"))


def profile_to_customer(profile: Mapping[str, Any]) -> Customer:
    """A canonical customer from Rejoiner's profile (an answer, or a request body inbound)."""
    get = profile.get
    customer = Customer(
        email=normalise_email(get("email")),
        first_name=_blank_none(get("first_name")),
        last_name=_blank_none(get("last_name")),
        phone=normalise_phone(get("phone")),
        language=_blank_none(get("language")),
        timezone=_blank_none(get("timezone")),
        gender=_blank_none(get("gender")),
        birthdate=date.fromisoformat(get("birthdate")) if get("birthdate") else None,
    )
    lines = [_blank_none(get(k)) for k in ("address1", "address2", "address3", "city", "state",
                                           "postal_code", "country")]
    if any(v is not None for v in lines):
        customer.address = Address(*lines)
    customer.tags = [t for t in get("tags") or () if not t.startswith(DERIVED_TAG_PREFIXES)]
    metadata = dict(get("metadata") or {})
    block = metadata.pop(GATEWAY_KEY, None)
    customer.metadata = metadata
    if isinstance(block, Mapping):
        _from_block(customer, block)
    if get("id"):
        customer.external_ids[SERVICE] = get("id")
    if "is_unsubscribed" in profile or "is_opted_in" in profile:
        email_consent = False if get("is_unsubscribed") else True if get("is_opted_in") else None
        customer.consent = Consent(
            email=email_consent,
            opted_in_at=parse_datetime(get("opt_in_date")),
            unsubscribed_at=parse_datetime(get("unsubscribe_date")),
        )
    return customer


def merge_profile(existing: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The body an upsert writes: ``desired``'s fields, but only the gateway's tags and key.

    Of the tags, the shop's own (not ``gw:``) are kept as Rejoiner holds them and every ``gw:``
    tag comes from ``desired`` (so a ``gw:`` tag the gateway no longer sends is removed). Of the
    metadata, every key but ``gateway`` is kept as Rejoiner holds it, and ``gateway`` comes from
    ``desired`` (removed when ``desired`` has none). Rejoiner replaces tags and metadata whole,
    so both are always sent whole.
    """
    held_tags = list(existing.get("tags") or ()) if existing else []
    held_meta = dict(existing.get("metadata") or {}) if existing else {}
    body = {k: v for k, v in desired.items() if k not in ("tags", "metadata")}
    tags = [t for t in held_tags if not t.startswith(GW_PREFIX)]
    tags.extend(t for t in desired.get("tags") or () if t.startswith(GW_PREFIX))
    body["tags"] = list(dict.fromkeys(tags))
    held_meta.pop(GATEWAY_KEY, None)
    block = (desired.get("metadata") or {}).get(GATEWAY_KEY)
    if block is not None:
        held_meta[GATEWAY_KEY] = block
    body["metadata"] = held_meta
    return body


# --- the cart ------------------------------------------------------------------------------


def _item_to_wire(item: CartItem, currency: str) -> dict[str, Any]:
    wire: dict[str, Any] = {k: v for k, v in item.extra.items() if k not in _ITEM_KEYS}
    wire["product_id"] = item.product_id
    _put(wire, "name", item.name)
    unit = item.unit_price
    total = item.line_total
    qty = item.quantity
    if unit is None and total is not None and qty:
        unit = total.split_half_even(qty)
    if total is None and unit is not None and qty is not None:
        total = unit * qty
    _put(wire, "price", cents(unit, currency))
    _put(wire, "description", item.description)
    if item.categories:
        wire["category"] = list(item.categories)
    _put(wire, "item_qty", qty)
    _put(wire, "qty_price", cents(total, currency))
    _put(wire, "product_url", item.product_url)
    _put(wire, "image_url", item.image_url)
    return wire


def cart_to_convert(cart: Cart, currency: str) -> dict[str, Any]:
    """The body of ``POST /customer/convert/`` for a canonical cart."""
    if not cart.email:
        raise MappingError("a convert needs the customer's email")
    data: dict[str, Any] = {k: v for k, v in cart.extra.items() if k not in _CART_KEYS}
    _put(data, "cart_value", cents(cart.value, currency))
    _put(data, "cart_item_count", cart.item_count)
    _put(data, "promo", cart.promo)
    _put(data, "order_number", cart.order_number)
    _put(data, "return_url", cart.return_url)
    body: dict[str, Any] = {"email": cart.email}
    if data:
        body["cart_data"] = data
    if cart.items:
        body["cart_items"] = [_item_to_wire(item, currency) for item in cart.items]
    return body


def _item_from_wire(wire: Mapping[str, Any], currency: str) -> CartItem:
    qty = wire.get("item_qty")
    unit = _money(wire.get("price"), currency)
    total = _money(wire.get("qty_price"), currency)
    if unit is None and total is not None and qty:
        unit = total.split_half_even(qty)
    if total is None and unit is not None and qty is not None:
        total = unit * qty
    return CartItem(
        product_id=str(wire["product_id"]),
        name=wire.get("name"),
        unit_price=unit,
        quantity=qty,
        line_total=total,
        description=wire.get("description"),
        categories=list(wire.get("category") or ()),
        product_url=wire.get("product_url"),
        image_url=wire.get("image_url"),
        extra={k: as_string(v) for k, v in wire.items() if k not in _ITEM_KEYS},
    )


def convert_to_cart(payload: Mapping[str, Any], currency: str) -> Cart:
    """A canonical cart from a convert body (as sent, extras still at the top of each object)."""
    data = payload.get("cart_data") or {}
    return Cart(
        email=normalise_email(payload.get("email")) or "",
        value=_money(data.get("cart_value"), currency),
        item_count=data.get("cart_item_count"),
        promo=data.get("promo"),
        order_number=data.get("order_number"),
        return_url=data.get("return_url"),
        items=[_item_from_wire(item, currency) for item in payload.get("cart_items") or ()],
        extra={k: as_string(v) for k, v in data.items() if k not in _CART_KEYS},
    )


def order_to_cart(order: Order) -> Cart:
    """An order as Rejoiner's convert: a purchase ends the customer's abandonment journeys.

    The line's sku, size, colour and brand travel as item extras (strings), so
    :func:`cart_to_order` gets them back; ``placed_at`` and ``cancelled`` have no place.
    """
    if not order.customer_email:
        raise MappingError(f"order {order.id}: a convert needs the customer's email")
    items = []
    for line in order.lines:
        extra = {k: str(getattr(line, k)) for k in _LINE_EXTRAS if getattr(line, k) is not None}
        if line.original_price is not None:
            extra["original_price"] = str(line.original_price.minor)
        if line.gift:
            extra["gift"] = "true"
        items.append(CartItem(
            product_id=line.product_id or line.sku or "",
            name=line.name,
            unit_price=line.unit_price,
            quantity=line.quantity,
            line_total=line.total,
            extra=extra,
        ))
    return Cart(email=order.customer_email, value=order.total, item_count=order.item_count,
                order_number=order.id, items=items)


def cart_to_order(cart: Cart, placed_at: datetime) -> Order:
    """An order from a convert with an ``order_number`` (the ``orders`` topic's rejoiner format).

    The convert carries no time: ``placed_at`` is when the gateway received it.
    """
    if not cart.order_number:
        raise MappingError("a convert is an order only with cart_data.order_number")
    currency = cart.value.currency if cart.value else None
    lines = []
    for item in cart.items:
        unit = item.unit_price
        if unit is None:
            if currency is None:
                raise MappingError(
                    f"order {cart.order_number}: item {item.product_id} has no price")
            unit = Money.zero(currency)
        currency = currency or unit.currency
        original = item.extra.get("original_price")
        lines.append(OrderLine(
            product_id=item.product_id,
            sku=item.extra.get("sku"),
            quantity=item.quantity if item.quantity is not None else 1,
            unit_price=unit,
            original_price=Money(int(original), unit.currency) if original else None,
            name=item.name,
            size=item.extra.get("size"),
            colour=item.extra.get("colour"),
            brand=item.extra.get("brand"),
            gift=item.extra.get("gift") == "true",
        ))
    if cart.value is not None:
        total = cart.value
    elif lines:
        total = Money(sum(line.total.minor for line in lines), lines[0].unit_price.currency)
    else:
        raise MappingError(f"order {cart.order_number}: no cart_value and no items")
    return Order(id=cart.order_number, placed_at=placed_at, total=total, lines=lines,
                 customer_email=cart.email or None, source=SERVICE)


# --- consent and journeys -------------------------------------------------------------------


def email_of(record: Customer | Cart | str) -> str:
    """The email a record is keyed by at Rejoiner."""
    email = record if isinstance(record, str) else record.email
    if not email:
        raise MappingError("Rejoiner keys customers by email; this record has none")
    return email


def email_body(record: Customer | Cart | str) -> dict[str, str]:
    """The body of ``cancel`` and ``unsubscribe``: ``{"email": ...}``."""
    return {"email": email_of(record)}


def opt_in_body(customer: Customer | str, info: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The body of ``opt_in``: the email and, as strings, how consent was given."""
    body = {k: as_string(v) for k, v in (info or {}).items() if k != "email"}
    if isinstance(customer, Customer) and customer.consent.opted_in_at is not None:
        body.setdefault("opted_in_at", iso_z(customer.consent.opted_in_at))
    body["email"] = email_of(customer)
    return body


def opt_in_to_customer(payload: Mapping[str, Any], received_at: datetime) -> Customer:
    """An inbound opt-in (``{"email": ...}`` plus extras) as a consent change."""
    at = parse_datetime(payload.get("opted_in_at")) if payload.get("opted_in_at") else None
    return Customer(email=normalise_email(payload.get("email")),
                    consent=Consent(email=True, opted_in_at=at or received_at))


def unsubscribe_to_customer(payload: Mapping[str, Any], received_at: datetime) -> Customer:
    """An inbound unsubscribe (``{"email": ...}``) as a consent change."""
    return Customer(email=normalise_email(payload.get("email")),
                    consent=Consent(email=False, unsubscribed_at=received_at))


def profiles_to_customers(profiles: Iterable[Mapping[str, Any]]) -> list[Customer]:
    return [profile_to_customer(p) for p in profiles]


# --- inbound: Rejoiner's shapes posted to the gateway (see connectors.base.InboundParser) ----


def _check(schema: Any, record: Any) -> None:
    """Validate ``record`` with a wire schema; ``ValidationError`` names each bad field."""
    if not isinstance(record, Mapping):
        raise ValidationError({"_schema": ["The record must be a JSON object."]})
    schema.load(record)


def _as_field_error(exc: ValueError) -> ValidationError:
    return ValidationError({"_schema": [str(exc)]})


def parse_order(record: Any, context: Mapping[str, Any]) -> list[Order]:
    """The ``orders`` topic: a convert payload with ``cart_data.order_number`` (required here)
    as an order placed when the gateway received it (the convert carries no time)."""
    _check(wire.ConvertSchema(), record)
    if not (record.get("cart_data") or {}).get("order_number"):
        raise ValidationError({"cart_data": {"order_number": [
            "This field is required: a convert is an order only with its order number."]}})
    try:
        cart = convert_to_cart(record, context["currency"])
        return [cart_to_order(cart, context["received_at"])]
    except (MappingError, MoneyError) as exc:
        raise _as_field_error(exc) from None


def parse_conversion(record: Any, context: Mapping[str, Any]) -> list[Cart]:
    """The ``conversions`` topic: a convert payload as a canonical cart."""
    _check(wire.ConvertSchema(), record)
    try:
        return [convert_to_cart(record, context["currency"])]
    except (MappingError, MoneyError) as exc:
        raise _as_field_error(exc) from None


def parse_customer(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``customers`` topic: a customer profile (a write body, or a profile as Rejoiner
    answers it, consent flags included)."""
    _check(wire.ProfileSchema(), record)
    try:
        return [profile_to_customer(record)]
    except ValueError as exc:
        raise _as_field_error(exc) from None


def parse_unsubscribe(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``unsubscribes`` topic: ``{"email": ...}``, withdrawn on receipt."""
    _check(wire.EmailSchema(), record)
    return [unsubscribe_to_customer(record, context["received_at"])]


def parse_opt_in(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``opt-ins`` topic: ``{"email": ...}`` plus how consent was given (the extras, which
    the canonical consent does not keep; ``opted_in_at``, when sent, is the time)."""
    _check(wire.OptInSchema(), record)
    try:
        return [opt_in_to_customer(record, context["received_at"])]
    except ValueError as exc:
        raise ValidationError({"opted_in_at": [str(exc)]}) from None


#: The inbound formats this connector parses, by ingest topic.
INBOUND = {
    "orders": parse_order,
    "customers": parse_customer,
    "conversions": parse_conversion,
    "unsubscribes": parse_unsubscribe,
    "opt-ins": parse_opt_in,
}
