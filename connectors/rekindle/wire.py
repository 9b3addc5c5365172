"""Rekindle's own request and response shapes (its Zapier API), as marshmallow schemas.

The client and the sandbox both use these, so the fixtures in ``fixtures/`` (transcribed from the
reference) hold both to the reference text. Field names and types are Rekindle's:

* a customer item (both triggers and find-customer): ``id``, ``name``, ``email``, ``phone``,
  ``status``, ``engagement_score``, ``last_purchase_date`` (a date), ``total_spent`` (a JSON
  number in the account's business currency), ``purchase_count``, ``returned_at``, ``updated_at``;
* the update-customer body: ``name`` and ``email`` required; ``phone``, ``last_purchase_date``,
  ``total_spent``, ``purchase_count`` optional;
* its answer ``{"customer": {...}}``, which carries a boolean ``returned`` instead of
  ``returned_at``;
* an error ``{"error": "..."}``.

Money stays exact: ``total_spent`` is read as :class:`~decimal.Decimal` (parse JSON with
:func:`loads`) and written as a JSON number with :func:`dumps`, never through a float.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from connectors.jsontext import dumps, loads  # noqa: F401 - the wire's JSON text

#: Rekindle's engagement statuses.
STATUSES = ("active", "at_risk", "lapsed", "lost")
#: The statuses the customer-status trigger lists.
ATTENTION_STATUSES = ("at_risk", "lapsed", "lost")
#: How many items a trigger answers at most.
TRIGGER_LIMIT = 10

ERROR_TOO_MANY = "Too many requests. Please slow down and try again shortly."
ERROR_NOT_FOUND = "Customer not found"
RETRY_AFTER_SECONDS = 30

__all__ = [
    "ATTENTION_STATUSES",
    "CustomerItem",
    "ErrorBody",
    "FindCustomerQuery",
    "JsonNumber",
    "STATUSES",
    "TRIGGER_LIMIT",
    "UpdateCustomerRequest",
    "UpdateCustomerResponse",
    "UpdatedCustomer",
    "ValidationError",
    "dumps",
    "loads",
]


class JsonNumber(fields.Field):
    """A JSON number (not a string, not a boolean), held as an exact ``Decimal``."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise self.make_error("invalid")
        number = value if isinstance(value, Decimal) else Decimal(repr(value))
        if not number.is_finite():
            raise self.make_error("invalid")
        return number

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class StrictInteger(fields.Integer):
    """An integer that refuses strings, booleans and fractions (``"7"``, ``true``, ``7.5``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, (float, Decimal)) and math.isfinite(value) and value % 1 == 0:
            value = int(value)  # JSON does not tell 8 from 8.0
        return super()._validated(value)


class _Strict(Schema):
    """Request shapes: unknown fields are refused."""

    class Meta:
        unknown = RAISE


class _Lenient(Schema):
    """Response shapes: a client ignores fields the reference does not name."""

    class Meta:
        unknown = EXCLUDE


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


class UpdateCustomerRequest(_Strict):
    """``POST /actions/update-customer`` body. ``email`` is the unique identifier."""

    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    email = fields.Email(required=True)
    phone = fields.String(allow_none=True, validate=validate.Length(max=32))
    last_purchase_date = fields.Date(allow_none=True)
    total_spent = JsonNumber(allow_none=True, validate=validate.Range(min=0))
    purchase_count = StrictInteger(allow_none=True, validate=validate.Range(min=0))


class FindCustomerQuery(_Lenient):
    """``GET /actions/find-customer`` query string."""

    email = fields.Email(required=True)


class _CustomerBase(_Lenient):
    id = fields.String(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    phone = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    engagement_score = StrictInteger(required=True, validate=validate.Range(min=0, max=100))
    last_purchase_date = fields.Date(allow_none=True)
    total_spent = JsonNumber(allow_none=True)
    purchase_count = StrictInteger(allow_none=True, validate=validate.Range(min=0))
    updated_at = fields.AwareDateTime(required=True, format="iso", default_timezone=None)


class CustomerItem(_CustomerBase):
    """A trigger item or a find-customer match."""

    returned_at = fields.AwareDateTime(allow_none=True, format="iso")


class UpdatedCustomer(_CustomerBase):
    """The customer in update-customer's answer: ``returned`` instead of ``returned_at``."""

    returned = fields.Boolean(required=True, truthy={True}, falsy={False})


class UpdateCustomerResponse(_Lenient):
    customer = fields.Nested(UpdatedCustomer, required=True)


class ErrorBody(_Strict):
    error = fields.String(required=True)


def error_message(errors: dict[str, Any]) -> str:
    """One line naming the bad fields of a marshmallow error dict, as Rekindle's ``error``."""
    parts = []
    for name, messages in sorted(errors.items()):
        if isinstance(messages, dict):  # nested: flatten one level
            messages = [m for sub in messages.values() for m in sub]
        text = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
        parts.append(f"{name}: {text}")
    return "Missing or invalid parameter. " + " ".join(parts)
