"""Replenit's own request and response shapes, with its validation rules.

The client checks nothing with these on its hot path (``mapping.py`` builds plain dicts); the
sandbox validates every request body with them, and the tests hold the reference's example
payloads (``fixtures/``) to them, so a misreading shared by client and sandbox is caught.

Replenit is an ASP.NET-style service: field errors come back keyed ``[index].Field`` (nested:
``[0].OrderItems[1].Sku``) with messages such as ``The Email field is required.``. The messages
below are the reference's where it quotes one, and chosen in the same voice where it does not.
Unknown fields are ignored (not stored), as such services do.

JSON numbers are decimals here: bodies are parsed with ``parse_float=Decimal`` and written with
:func:`dumps`, which prints a ``Decimal`` as its exact decimal text.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from connectors.base import Limit
from connectors.jsontext import dumps, loads  # noqa: F401 - the wire's JSON text

__all__ = [
    "AUTH_HEADER",
    "LIMITS",
    "BATCH_MAX",
    "CustomerSchema",
    "DeleteEnvelopeSchema",
    "EnvelopeSchema",
    "ErrorEnvelopeSchema",
    "OrderItemSchema",
    "OrderSchema",
    "ProductSchema",
    "SCHEMAS",
    "VariantSchema",
    "dumps",
    "flatten_errors",
    "format_datetime",
    "loads",
    "parse_datetime",
    "validate_batch",
]

#: The documented rate limits per key: 100 a minute and 5,000 an hour.
LIMITS: tuple[Limit, ...] = (Limit(100, 60), Limit(5000, 3600))

#: The key header.
AUTH_HEADER = "x-replenit-auth-key"

#: The hard upper bound of records per POST, by endpoint (the lower bounds are advice).
BATCH_MAX = {"customers": 500, "orders": 200, "products": 100}

CUSTOMER_ID_MAX = 100

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# UTC ISO 8601 with a literal Z: 2025-08-22T21:00:00Z, fractional seconds allowed.
UTC_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$")
CURRENCY = re.compile(r"^[A-Z]{3}$")

EMAIL_INVALID = "The Email field is not a valid e-mail address."
ORDER_DATE_INVALID = ("The OrderDate field must be a UTC ISO 8601 datetime, "
                      "e.g. 2025-08-22T21:00:00Z.")


def required_message(name: str) -> str:
    return f"The {name} field is required."


# --- field builders ----------------------------------------------------------------------------


class Number(fields.Field):
    """A JSON number (int or decimal, never a string or a boolean), loaded as ``Decimal``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise self.make_error("invalid")
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        if not number.is_finite():
            raise self.make_error("invalid")
        return number

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


def _messages(name: str, kind: str) -> dict[str, str]:
    return {
        "required": required_message(name),
        "null": required_message(name),
        "invalid": f"The {name} field must be {kind}.",
    }


def _text(name: str, *, required: bool = False, max_length: int | None = None,
          extra: list | None = None) -> fields.String:
    checks: list = []
    if required:  # ASP.NET's [Required] refuses an empty string as well as a missing one
        checks.append(validate.Length(min=1, error=required_message(name)))
    if max_length is not None:
        checks.append(validate.Length(max=max_length,
                                      error=f"Maximum length is {max_length} characters."))
    checks.extend(extra or [])
    return fields.String(required=required, allow_none=not required, validate=checks,
                         error_messages=_messages(name, "a string"))


def _bool(name: str, *, required: bool = False) -> fields.Boolean:
    return fields.Boolean(required=required, allow_none=not required, truthy={True},
                          falsy={False}, error_messages=_messages(name, "a boolean"))


def _int(name: str, *, required: bool = False) -> fields.Integer:
    return fields.Integer(required=required, allow_none=not required, strict=True,
                          error_messages=_messages(name, "an integer"))


def _number(name: str, *, required: bool = False) -> Number:
    return Number(required=required, allow_none=not required,
                  error_messages=_messages(name, "a number"))


def _email(*, required: bool) -> fields.String:
    return _text("Email", required=required, extra=[validate.Regexp(EMAIL, error=EMAIL_INVALID)])


def _currency(required: bool = True) -> fields.String:
    return _text("Currency", required=required, extra=[validate.Regexp(
        CURRENCY, error="The Currency field must be an ISO 4217 code, e.g. USD.")])


def _array(name: str, inner: fields.Field, *, required: bool = False,
           min_items: int = 0) -> fields.List:
    checks = [validate.Length(min=min_items, error=f"The {name} field must hold at least "
                                                   f"{min_items} item.")] if min_items else []
    return fields.List(inner, required=required, allow_none=not required, validate=checks,
                       error_messages=_messages(name, "an array"))


class WireSchema(Schema):
    """Base of the request schemas: unknown fields ignored, a non-object record refused."""

    error_messages = {"type": "The record must be a JSON object."}

    class Meta:
        unknown = EXCLUDE


def _validate_order_date(value: str) -> None:
    if not UTC_DATETIME.match(value):
        raise ValidationError(ORDER_DATE_INVALID)
    try:
        parse_datetime(value)
    except ValueError:
        raise ValidationError(ORDER_DATE_INVALID) from None


# --- requests ----------------------------------------------------------------------------------


class CustomerSchema(WireSchema):
    """POST /customers/{tenantId}: one customer. ``CustomerId`` or ``Email`` is the upsert key."""

    CustomerId = _text("CustomerId", max_length=CUSTOMER_ID_MAX)
    Email = _email(required=False)
    Name = _text("Name")
    Surname = _text("Surname")
    Phone = _text("Phone")
    Language = _text("Language")
    Username = _text("Username")
    EmailOptin = _bool("EmailOptin")
    SmsOptin = _bool("SmsOptin")
    WhatsappOptin = _bool("WhatsappOptin")
    AppPushOptin = _bool("AppPushOptin")
    GdprOptin = _bool("GdprOptin")
    IsExcluded = _bool("IsExcluded")

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _one_key(self, data: dict, original: Any, **kwargs: Any) -> None:
        # An invalid CustomerId is no key either: the reference's own example answers
        # "[0].Email": required next to "[0].CustomerId": too long. An Email that was sent but
        # is malformed has its own error already.
        if not isinstance(original, Mapping):
            return  # refused as a whole already
        sent_email = original.get("Email") not in (None, "")
        if not data.get("CustomerId") and not data.get("Email") and not sent_email:
            raise ValidationError(required_message("Email"), field_name="Email")


class OrderItemSchema(WireSchema):
    ProductId = _text("ProductId", required=True)
    Sku = _text("Sku", required=True)
    Quantity = _int("Quantity", required=True)
    Price = _number("Price", required=True)
    OriginalPrice = _number("OriginalPrice")
    Size = _text("Size")
    Color = _text("Color")
    Brand = _text("Brand")
    IsGift = _bool("IsGift")


class OrderSchema(WireSchema):
    """POST /orders/{tenantId}: one order with at least one line; ``OrderId`` is the key."""

    OrderId = _text("OrderId", required=True)
    CustomerId = _text("CustomerId", required=True, max_length=CUSTOMER_ID_MAX)
    Email = _email(required=True)
    OrderDate = _text("OrderDate", required=True, extra=[_validate_order_date])
    TotalRevenue = _number("TotalRevenue", required=True)
    Currency = _currency()
    OrderItems = _array("OrderItems", fields.Nested(OrderItemSchema), required=True,
                        min_items=1)
    TotalQuantity = _int("TotalQuantity")
    UniqueQuantity = _int("UniqueQuantity")
    IsOrderCancelled = _bool("IsOrderCancelled")


class VariantSchema(WireSchema):
    VariantId = _text("VariantId", required=True)
    Sku = _text("Sku", required=True)
    Name = _text("Name", required=True)
    OriginalPrice = _number("OriginalPrice", required=True)
    Currency = _currency()
    IsAvailable = _bool("IsAvailable", required=True)
    Image = _text("Image")
    Size = _text("Size")
    Stock = _int("Stock")
    SalePrice = _number("SalePrice")
    Language = _text("Language")
    BrandName = _text("BrandName")


class ProductSchema(WireSchema):
    """POST /products/{tenantId}: one product and its variants; ``ProductId`` is the key."""

    ProductId = _text("ProductId", required=True)
    ProductName = _text("ProductName", required=True)
    ProductVariants = _array("ProductVariants", fields.Nested(VariantSchema), required=True)
    Taxonomy = _array("Taxonomy", _text("Taxonomy"))
    IsOfflineExclusive = _bool("IsOfflineExclusive")


#: The request schema of each POST endpoint.
SCHEMAS: dict[str, type[WireSchema]] = {
    "customers": CustomerSchema,
    "orders": OrderSchema,
    "products": ProductSchema,
}

# --- responses ---------------------------------------------------------------------------------

PROCESSED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class EnvelopeDataSchema(Schema):
    count = fields.Integer(required=True, strict=True)
    processedAt = fields.String(required=True, validate=validate.Regexp(PROCESSED_AT))


class EnvelopeSchema(Schema):
    """A 200 answer: ``{"success": true, "message", "data": {"count", "processedAt"}}``."""

    success = fields.Boolean(required=True, validate=validate.Equal(True))
    message = fields.String(required=True)
    data = fields.Nested(EnvelopeDataSchema, required=True)


DeleteEnvelopeSchema = EnvelopeSchema  # deletes answer the same envelope (sandbox's choice)


class ErrorEnvelopeSchema(Schema):
    """A failure: ``{"success": false, "message", "data": {}, "errors"?: {key: [messages]}}``."""

    success = fields.Boolean(required=True, validate=validate.Equal(False))
    message = fields.String(required=True)
    data = fields.Dict(required=True, validate=validate.Length(equal=0))
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


# --- helpers -----------------------------------------------------------------------------------


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested errors as Replenit's flat keys.

    ``{0: {"OrderItems": {1: {"Sku": [...]}}}}`` -> ``{"[0].OrderItems[1].Sku": [...]}``.
    """
    if isinstance(errors, list):
        return {prefix or "$": [str(m) for m in errors]}
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        if isinstance(key, int):
            path = f"{prefix}[{key}]"
        elif key == "_schema":
            path = prefix
        else:
            path = f"{prefix}.{key}" if prefix else key
        for k, msgs in flatten_errors(value, path).items():
            flat.setdefault(k, []).extend(msgs)
    return flat


def validate_batch(kind: str, body: Any) -> tuple[list[dict], dict[str, list[str]]]:
    """Check one POST body: ``(records, {})`` when valid, else ``([], errors)``.

    ``errors`` uses Replenit's keys: ``$`` for the body as a whole (not an array, too many
    records), ``[i].Field`` for a record.
    """
    if not isinstance(body, list):
        return [], {"$": ["The request body must be a JSON array of objects, e.g. [{...}]."]}
    limit = BATCH_MAX[kind]
    if len(body) > limit:
        return [], {"$": [f"A request may hold at most {limit} {kind}; this one holds "
                          f"{len(body)}."]}
    try:
        return SCHEMAS[kind](many=True).load(body), {}
    except ValidationError as exc:
        return [], flatten_errors(exc.messages)


def format_datetime(value: datetime) -> str:
    """A UTC ISO 8601 datetime with ``Z`` (microseconds only when there are some)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat() + "Z"


def parse_datetime(value: str) -> datetime:
    """Parse ``2025-08-22T21:00:00Z`` (fractions up to 7 digits, .NET's precision) as UTC."""
    body = value[:-1] if value.endswith("Z") else value
    if "." in body:
        head, frac = body.split(".", 1)
        body = f"{head}.{frac[:6].ljust(6, '0')}"
    return datetime.fromisoformat(body).replace(tzinfo=timezone.utc)
