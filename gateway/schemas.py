"""The canonical format: the gateway's own JSON for customers, orders, products, carts, consent
changes and erasure requests, as marshmallow schemas.

Each schema ``load()``s to the :mod:`gateway.model` dataclasses (a consent change and an
erasure request load to a :class:`~gateway.model.Customer` holding only its identity and
consent) and dumps them back. Unknown fields are refused, naming each; every error names its
field (nested: ``{"lines": {"0": {"unit_price": [...]}}}``).

Money: an amount is an exact decimal string (``"19.99"``) or a JSON number, read as a
``Decimal`` (never through float arithmetic: a float is taken by its shortest text). Each
record names one ``currency`` (ISO 4217) for all its amounts: an order's ``total`` and its lines'
prices, a variant's ``price`` and ``sale_price``, a cart's ``value`` and its items' prices, a
customer's ``lifetime_value``. An amount with more decimal places than its currency has (JPY 0,
USD 2, BHD 3) is refused, never rounded. Amounts dump as exact decimal strings.

Times are ISO 8601; one without an offset is taken as UTC. Each schema's ``Meta.example`` is a
valid instance, for the OpenAPI document.
"""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_dump,
    validate,
    validates_schema,
)

from gateway.model import (
    SERVICES,
    Address,
    Cart,
    CartItem,
    Consent,
    Customer,
    Money,
    MoneyError,
    Order,
    OrderLine,
    Product,
    Variant,
    normalise_currency,
    normalise_email,
    normalise_phone,
)
from gateway.money import exponent

__all__ = [
    "AddressSchema",
    "Amount",
    "CartItemSchema",
    "CartSchema",
    "ConsentChangeSchema",
    "ConsentSchema",
    "CustomerSchema",
    "ErasureSchema",
    "OptInSchema",
    "OrderLineSchema",
    "OrderSchema",
    "ProductSchema",
    "UnsubscribeSchema",
    "VariantSchema",
]

#: Where an external id may come from: the four services, and the shop itself.
EXTERNAL_ID_SOURCES = (*SERVICES, "shop")
CONSENT_CHANNELS = ("email", "sms", "whatsapp", "push", "gdpr_processing")


# --- fields -----------------------------------------------------------------------------------


class Amount(fields.Field):
    """An exact amount: a decimal string or a JSON number, loaded as ``Decimal``; dumps a
    ``Money`` or ``Decimal`` as its exact decimal string."""

    default_error_messages = {
        "invalid": 'Not a valid amount: use a decimal string such as "19.99" or a number.',
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise self.make_error("invalid")
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            raise self.make_error("invalid") from None
        if not number.is_finite():
            raise self.make_error("invalid")
        return number

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Money):
            return str(value.to_decimal())
        return str(value)


class Email(fields.String):
    """An email address, normalised (trimmed, lower-cased)."""

    default_error_messages = {"email": "Not a valid email address."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_email(text)
        except ValueError:
            raise self.make_error("email") from None


class Phone(fields.String):
    """A phone number in E.164 (``+`` and 7-15 digits; separators are dropped)."""

    default_error_messages = {
        "phone": "Not a phone number in E.164 form (a + and the country code, e.g. "
                 "+14155550123).",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():
            return None
        phone = normalise_phone(text)
        if phone is None:
            raise self.make_error("phone")
        return phone


class Currency(fields.String):
    """An ISO 4217 currency code (upper-cased)."""

    default_error_messages = {"currency": "Not an ISO 4217 currency code (e.g. USD)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_currency(text)
        except MoneyError:
            raise self.make_error("currency") from None


def _time(**kw: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(format="iso", default_timezone=timezone.utc, allow_none=True,
                                **kw)


def _text(max_length: int, **kw: Any) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(max=max_length), **kw)


def _key(max_length: int = 200) -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=1, max=max_length))


class _Canonical(Schema):
    class Meta:
        unknown = RAISE


def _money_errors(data: Mapping[str, Any], currency_field: str,
                  amounts: list[str]) -> dict[str, list[str]]:
    """Errors for amounts of ``data`` that its currency cannot hold exactly."""
    currency = data.get(currency_field)
    given = [name for name in amounts if data.get(name) is not None]
    if not given:
        return {}
    if not currency:
        return {currency_field: [f"Required with {', '.join(given)}."]}
    errors: dict[str, list[str]] = {}
    for name in given:
        try:
            Money.from_decimal(data[name], currency)
        except MoneyError:
            errors[name] = [f"More decimal places than {currency} has ({exponent(currency)})."]
    return errors


def _money(value: Decimal | None, currency: str | None) -> Money | None:
    return Money.from_decimal(value, currency) if value is not None and currency else None


# --- customers --------------------------------------------------------------------------------


class AddressSchema(_Canonical):
    line1 = _text(200)
    line2 = _text(200)
    line3 = _text(200)
    city = _text(100)
    region = _text(100)
    postal_code = _text(32)
    country = fields.String(allow_none=True, validate=validate.Regexp(
        r"^[A-Z]{2}$", error="An ISO 3166-1 alpha-2 code, e.g. US."))

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Address:
        return Address(**data)


class ConsentSchema(_Canonical):
    """Per-channel consent; ``null`` (or absent) is "not known", which is not ``false``."""

    email = fields.Boolean(allow_none=True)
    sms = fields.Boolean(allow_none=True)
    whatsapp = fields.Boolean(allow_none=True)
    push = fields.Boolean(allow_none=True)
    gdpr_processing = fields.Boolean(allow_none=True)
    opted_in_at = _time()
    unsubscribed_at = _time()

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Consent:
        return Consent(**data)


_CUSTOMER_EXAMPLE = {
    "email": "jane@example.com",
    "external_ids": {"shop": "C-123"},
    "first_name": "Jane",
    "last_name": "Smith",
    "phone": "+27821234567",
    "language": "en-ZA",
    "timezone": "Africa/Johannesburg",
    "address": {"line1": "1 Long Street", "city": "Cape Town", "postal_code": "8001",
                "country": "ZA"},
    "birthdate": "1990-04-01",
    "tags": ["vip"],
    "metadata": {"loyalty_tier": "gold"},
    "consent": {"email": True, "sms": False, "gdpr_processing": True},
    "lifetime_value": "4200.00",
    "currency": "USD",
    "order_count": 7,
    "last_order_at": "2024-09-01T10:00:00Z",
}


class CustomerSchema(_Canonical):
    """A customer. ``email`` (normalised) is the usual key; a customer needs an ``email``, an
    external id or the gateway's ``id``. Scores and times the gateway computes are read only
    (dumped, refused on load)."""

    id = fields.String(allow_none=True, metadata={"description": "the gateway's id"})
    email = Email(allow_none=True, validate=validate.Length(max=320))
    external_ids = fields.Dict(keys=fields.String(validate=validate.OneOf(EXTERNAL_ID_SOURCES)),
                               values=fields.String(validate=validate.Length(min=1, max=200)),
                               load_default=dict)
    first_name = _text(200)
    last_name = _text(200)
    phone = Phone(allow_none=True)
    language = _text(35, metadata={"description": "BCP 47, e.g. en-US"})
    timezone = _text(64, metadata={"description": "IANA, e.g. Europe/Berlin"})
    address = fields.Nested(AddressSchema, allow_none=True)
    birthdate = fields.Date(allow_none=True)
    gender = _text(16)
    tags = fields.List(fields.String(validate=validate.Length(max=200)), load_default=list)
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    consent = fields.Nested(ConsentSchema, load_default=None, allow_none=True)
    lifetime_value = Amount(allow_none=True, metadata={"description": "in `currency`"})
    currency = Currency(allow_none=True, metadata={"description": "of lifetime_value"})
    order_count = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    first_order_at = _time()
    last_order_at = _time()
    cohort = fields.String(allow_none=True, validate=validate.Regexp(
        r"^\d{4}-(0[1-9]|1[0-2])$", error="YYYY-MM."))
    acquisition_source = _text(100)
    # Computed by the gateway: dumped only.
    recency_score = fields.Integer(dump_only=True)
    frequency_score = fields.Integer(dump_only=True)
    monetary_score = fields.Integer(dump_only=True)
    rfm = fields.Integer(dump_only=True)
    grade = fields.String(dump_only=True)
    segments = fields.List(fields.String(), dump_only=True)
    status = fields.String(dump_only=True)
    engagement_score = fields.Integer(dump_only=True)
    returned_at = _time(dump_only=True)
    redacted_at = _time(dump_only=True)
    created_at = _time(dump_only=True)
    updated_at = _time(dump_only=True)

    class Meta:
        unknown = RAISE
        example = _CUSTOMER_EXAMPLE

    @validates_schema(skip_on_field_errors=False)
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        if not (data.get("email") or data.get("external_ids") or data.get("id")):
            raise ValidationError("A customer needs an email, an external id or an id.",
                                  field_name="email")
        errors = _money_errors(data, "currency", ["lifetime_value"])
        if errors:
            raise ValidationError(errors)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Customer:
        currency = data.pop("currency", None)
        data["lifetime_value"] = _money(data.get("lifetime_value"), currency)
        data["consent"] = data.get("consent") or Consent()
        return Customer(**data)

    @pre_dump
    def _flatten(self, customer: Customer, **_: Any) -> dict[str, Any]:
        values = {name: getattr(customer, name) for name in Customer.__slots__}
        ltv = customer.lifetime_value
        values["lifetime_value"] = ltv
        values["currency"] = ltv.currency if ltv else None
        return values


# --- orders -----------------------------------------------------------------------------------


class OrderLineSchema(_Canonical):
    product_id = _text(200)
    sku = _text(200)
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    unit_price = Amount(required=True, metadata={"description": "paid per unit, after discounts"})
    original_price = Amount(allow_none=True)
    name = _text(500)
    size = _text(100)
    colour = _text(100)
    brand = _text(200)
    gift = fields.Boolean(load_default=False)

    @validates_schema(skip_on_field_errors=False)
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        if not (data.get("product_id") or data.get("sku")):
            raise ValidationError("A line needs a product_id or a sku.", field_name="product_id")


_ORDER_EXAMPLE = {
    "id": "O-789",
    "placed_at": "2025-08-22T21:00:00Z",
    "total": "89.97",
    "currency": "USD",
    "customer_email": "john@example.com",
    "customer_external_id": "C-123",
    "lines": [
        {"product_id": "P-42", "sku": "SKU-42-RED-L", "quantity": 2, "unit_price": "29.99",
         "original_price": "39.99", "size": "L", "colour": "red", "brand": "Acme"},
        {"product_id": "P-43", "sku": "SKU-43-BLUE-M", "quantity": 1, "unit_price": "29.99",
         "gift": True},
    ],
}


class OrderSchema(_Canonical):
    """An order with its lines. ``id`` is the shop's order id (the natural key); the customer is
    named by ``customer_id`` (the gateway's), ``customer_email`` or ``customer_external_id``
    (the shop's own id); one the gateway has never seen is created minimally."""

    id = _key()
    placed_at = fields.AwareDateTime(format="iso", default_timezone=timezone.utc,
                                     required=True)
    total = Amount(required=True)
    currency = Currency(required=True)
    lines = fields.List(fields.Nested(OrderLineSchema), load_default=list)
    customer_id = _text(40)
    customer_email = Email(allow_none=True, validate=validate.Length(max=320))
    customer_external_id = _text(200)
    cancelled = fields.Boolean(load_default=False)
    source = _text(32)

    class Meta:
        unknown = RAISE
        example = _ORDER_EXAMPLE

    @validates_schema(skip_on_field_errors=False)
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, Any] = {}
        if not (data.get("customer_id") or data.get("customer_email")
                or data.get("customer_external_id")):
            errors["customer_email"] = [
                "An order names its customer: customer_email, customer_external_id or "
                "customer_id."]
        errors.update(_money_errors(data, "currency", ["total"]))
        currency = data.get("currency")
        if currency:
            lines: dict[int, Any] = {}
            for i, line in enumerate(data.get("lines") or ()):
                line_errors = _money_errors({**line, "currency": currency}, "currency",
                                            ["unit_price", "original_price"])
                if line_errors:
                    lines[i] = line_errors
            if lines:
                errors["lines"] = lines
        if errors:
            raise ValidationError(errors)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Order:
        currency = data.pop("currency")
        lines = [OrderLine(
            product_id=line.get("product_id"), sku=line.get("sku"), quantity=line["quantity"],
            unit_price=Money.from_decimal(line["unit_price"], currency),
            original_price=_money(line.get("original_price"), currency),
            name=line.get("name"), size=line.get("size"), colour=line.get("colour"),
            brand=line.get("brand"), gift=line.get("gift", False),
        ) for line in data.pop("lines")]
        data["total"] = Money.from_decimal(data["total"], currency)
        return Order(lines=lines, **data)

    @pre_dump
    def _flatten(self, order: Order, **_: Any) -> dict[str, Any]:
        values = {name: getattr(order, name) for name in Order.__slots__}
        values["currency"] = order.total.currency
        values["lines"] = [{name: getattr(line, name) for name in OrderLine.__slots__}
                           for line in order.lines]
        return values


# --- products ---------------------------------------------------------------------------------


class VariantSchema(_Canonical):
    id = _key()
    sku = _key()
    name = _text(500)
    price = Amount(allow_none=True, metadata={"description": "full retail price"})
    sale_price = Amount(allow_none=True)
    currency = Currency(allow_none=True, metadata={"description": "of price and sale_price"})
    available = fields.Boolean(load_default=True)
    stock = fields.Integer(strict=True, allow_none=True)
    image = fields.Url(allow_none=True, require_tld=False)
    size = _text(100)
    language = _text(35)
    brand = _text(200)

    @validates_schema(skip_on_field_errors=False)
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        errors = _money_errors(data, "currency", ["price", "sale_price"])
        if errors:
            raise ValidationError(errors)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Variant:
        currency = data.pop("currency", None)
        data["price"] = _money(data.get("price"), currency)
        data["sale_price"] = _money(data.get("sale_price"), currency)
        return Variant(**data)

    @pre_dump
    def _flatten(self, variant: Variant, **_: Any) -> dict[str, Any]:
        values = {name: getattr(variant, name) for name in Variant.__slots__}
        priced = variant.price or variant.sale_price
        values["currency"] = priced.currency if priced else None
        return values


class ProductSchema(_Canonical):
    """A product with its variants. ``id`` is the shop's product id (the natural key); a write
    replaces the product's variants with the ones given."""

    id = _key()
    name = _text(500)
    variants = fields.List(fields.Nested(VariantSchema), load_default=list)
    taxonomy = fields.List(fields.String(validate=validate.Length(max=200)), load_default=list,
                           metadata={"description": "broadest first"})
    offline_exclusive = fields.Boolean(load_default=False)

    class Meta:
        unknown = RAISE
        example = {
            "id": "P-42", "name": "Women's Training Tank Top",
            "taxonomy": ["Apparel", "Women", "Activewear", "Tops"],
            "variants": [{"id": "V-42-BLK-S", "sku": "SKU-42-BLK-S", "name": "Black / Small",
                          "price": "34.99", "sale_price": "27.99", "currency": "USD",
                          "available": True, "stock": 84, "size": "S"}],
        }

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Product:
        return Product(**data)


# --- carts ------------------------------------------------------------------------------------


class CartItemSchema(_Canonical):
    product_id = _key()
    name = _text(500)
    unit_price = Amount(allow_none=True)
    quantity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    line_total = Amount(allow_none=True)
    description = fields.String(allow_none=True)
    categories = fields.List(fields.String(), load_default=list)
    product_url = fields.Url(allow_none=True, require_tld=False)
    image_url = fields.Url(allow_none=True, require_tld=False)
    extra = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class CartSchema(_Canonical):
    """A converted cart (Rejoiner's convert, in canonical terms). ``currency`` is that of
    ``value`` and of every item's prices."""

    email = Email(required=True, validate=validate.Length(max=320))
    value = Amount(allow_none=True)
    currency = Currency(allow_none=True)
    item_count = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    promo = _text(200)
    order_number = _text(200)
    return_url = fields.Url(allow_none=True, require_tld=False)
    items = fields.List(fields.Nested(CartItemSchema), load_default=list)
    extra = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)

    class Meta:
        unknown = RAISE
        example = {
            "email": "customer@example.com", "value": "20.00", "currency": "USD",
            "item_count": 3, "promo": "SALE", "order_number": "O-12345",
            "return_url": "http://example.com/cart/12345/",
            "items": [{"product_id": "12345", "name": "Product #1", "unit_price": "10.00",
                       "quantity": 1, "line_total": "10.00"},
                      {"product_id": "54321", "name": "Product #2", "unit_price": "5.00",
                       "quantity": 2, "line_total": "10.00"}],
        }

    @validates_schema(skip_on_field_errors=False)
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, Any] = dict(_money_errors(data, "currency", ["value"]))
        items: dict[int, Any] = {}
        for i, item in enumerate(data.get("items") or ()):
            item_errors = _money_errors({**item, "currency": data.get("currency")}, "currency",
                                        ["unit_price", "line_total"])
            item_errors.pop("currency", None)
            if item_errors:
                items[i] = item_errors
        if items:
            errors["items"] = items
        if any(item.get("unit_price") is not None or item.get("line_total") is not None
               for item in data.get("items") or ()) and not data.get("currency"):
            errors.setdefault("currency", ["Required with item prices."])
        if errors:
            raise ValidationError(errors)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Cart:
        currency = data.pop("currency", None)
        data["value"] = _money(data.get("value"), currency)
        data["items"] = [CartItem(**{
            **item, "unit_price": _money(item.get("unit_price"), currency),
            "line_total": _money(item.get("line_total"), currency)}) for item in data["items"]]
        return Cart(**data)

    @pre_dump
    def _flatten(self, cart: Cart, **_: Any) -> dict[str, Any]:
        values = {name: getattr(cart, name) for name in Cart.__slots__}
        priced = cart.value or next((i.unit_price or i.line_total for i in cart.items
                                     if i.unit_price or i.line_total), None)
        values["currency"] = priced.currency if priced else None
        values["items"] = [{name: getattr(item, name) for name in CartItem.__slots__}
                           for item in cart.items]
        return values


# --- consent changes and erasure requests -----------------------------------------------------


class _Identity(_Canonical):
    """Who a consent change or an erasure is about: an email, the gateway's ``customer_id``, or
    external ids (at least one)."""

    email = Email(allow_none=True, validate=validate.Length(max=320))
    customer_id = _text(40)
    external_ids = fields.Dict(keys=fields.String(validate=validate.OneOf(EXTERNAL_ID_SOURCES)),
                               values=fields.String(validate=validate.Length(min=1, max=200)),
                               load_default=dict)

    @validates_schema
    def _named(self, data: dict[str, Any], **_: Any) -> None:
        if not (data.get("email") or data.get("customer_id") or data.get("external_ids")):
            raise ValidationError("Name the customer: email, customer_id or external_ids.",
                                  field_name="email")


class ConsentChangeSchema(_Identity):
    """A consent change: the customer gives (``consent: true``) or withdraws (``false``)
    consent on ``channels`` (default ``["email"]``) at ``changed_at`` (default: on receipt).
    Loads to a Customer holding only its identity and that consent."""

    consent = fields.Boolean(required=True)
    channels = fields.List(fields.String(validate=validate.OneOf(CONSENT_CHANNELS)),
                           load_default=lambda: ["email"], validate=validate.Length(min=1))
    changed_at = _time()

    class Meta:
        unknown = RAISE
        example = {"email": "customer@example.com", "consent": False, "channels": ["email"],
                   "changed_at": "2025-03-15T10:22:00Z"}

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Customer:
        given = data["consent"]
        at = data.get("changed_at")
        consent = Consent(**{channel: given for channel in data["channels"]})
        if given:
            consent.opted_in_at = at
        else:
            consent.unsubscribed_at = at
        return Customer(id=data.get("customer_id"), email=data.get("email"),
                        external_ids=dict(data.get("external_ids") or {}), consent=consent)

    @pre_dump
    def _flatten(self, customer: Customer, **_: Any) -> dict[str, Any]:
        consent = customer.consent
        channels = [c for c in CONSENT_CHANNELS if getattr(consent, c) is not None]
        given = any(getattr(consent, c) for c in channels)
        return {"email": customer.email, "customer_id": customer.id,
                "external_ids": customer.external_ids, "consent": given,
                "channels": channels,
                "changed_at": consent.opted_in_at if given else consent.unsubscribed_at}


def _fixed(direction: bool) -> fields.Boolean:
    return fields.Boolean(load_default=direction, validate=validate.Equal(
        direction, error=f"Must be {str(direction).lower()} for this topic."))


class UnsubscribeSchema(ConsentChangeSchema):
    """The ``unsubscribes`` topic's canonical record: ``consent`` is false (may be left out)."""

    consent = _fixed(False)

    class Meta:
        unknown = RAISE
        example = {"email": "customer@example.com", "channels": ["email"]}


class OptInSchema(ConsentChangeSchema):
    """The ``opt-ins`` topic's canonical record: ``consent`` is true (may be left out)."""

    consent = _fixed(True)

    class Meta:
        unknown = RAISE
        example = {"email": "customer@example.com", "channels": ["email", "sms"],
                   "changed_at": "2025-03-15T10:22:00Z"}


class ErasureSchema(_Identity):
    """An erasure request: the customer to forget, by email, the gateway's ``customer_id`` or
    external ids. Loads to a Customer holding only that identity."""

    class Meta:
        unknown = RAISE
        example = {"email": "customer@example.com"}

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Customer:
        return Customer(id=data.get("customer_id"), email=data.get("email"),
                        external_ids=dict(data.get("external_ids") or {}))

