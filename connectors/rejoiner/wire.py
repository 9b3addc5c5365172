"""Rejoiner's own request and response shapes, as marshmallow schemas.

Shared by the client (to check what it sends and what it reads back) and by the sandbox (to
validate what it receives and shape what it answers), and held to ``fixtures/`` by the tests.

Rejoiner is a Django REST Framework API, so the error messages here are DRF's own wording
("This field is required.", "Ensure this field has no more than 2 characters.", ...);
:func:`drf_errors` turns marshmallow's error dict into DRF's shape (lists of messages per field,
and a list with one entry per item for a nested list).

Extra fields on ``cart_data``, on a cart item and on an opt-in body are accepted and "treated as
strings": :func:`as_string` is the one rule (strings as they are, other JSON values as compact
JSON, so ``true`` -> ``"true"``, ``5`` -> ``"5"``); the schemas collect them under ``metadata``.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, missing, post_load, validate

BIRTHDATE_FORMAT = "%Y-%m-%d"

#: DRF's messages, used for every field below.
REQUIRED = {"required": "This field is required.", "null": "This field may not be null."}
STRING = {**REQUIRED, "invalid": "Not a valid string."}
INTEGER = {**REQUIRED, "invalid": "A valid integer is required."}


def as_string(value: Any) -> str:
    """How Rejoiner keeps an extra field: strings unchanged, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _opt_str(**kw: Any) -> fields.String:
    """An optional, nullable string; absent loads as None unless ``load_default`` says else."""
    kw.setdefault("load_default", None)
    return fields.String(allow_none=True, error_messages=STRING, **kw)


def _opt_int(**kw: Any) -> fields.Integer:
    kw.setdefault("load_default", None)
    return fields.Integer(strict=True, allow_none=True, error_messages=INTEGER, **kw)


#: In a profile write an absent field keeps its stored value, so absent stays absent.
ABSENT = missing


class _ExtrasAsMetadata(Schema):
    """Unknown keys are kept, as strings, under ``metadata`` (Rejoiner's rule for extras)."""

    class Meta:
        unknown = INCLUDE

    @post_load
    def _collect_extras(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        known = {k: v for k, v in data.items() if k in self.fields}
        extras = {k: as_string(v) for k, v in data.items() if k not in self.fields}
        known["metadata"] = extras
        return known


# --- POST /customer/convert/ --------------------------------------------------------------


class CartDataSchema(_ExtrasAsMetadata):
    cart_value = _opt_int()  # cents
    cart_item_count = _opt_int()
    promo = _opt_str()
    order_number = _opt_str()
    return_url = _opt_str()


class CartItemSchema(_ExtrasAsMetadata):
    product_id = fields.String(required=True, error_messages=STRING, validate=validate.Length(
        min=1, error="This field may not be blank."))
    name = _opt_str()
    price = _opt_int()  # unit price, cents
    description = _opt_str()
    category = fields.List(fields.String(error_messages=STRING), load_default=None,
                           allow_none=True, error_messages=REQUIRED)
    item_qty = _opt_int()
    qty_price = _opt_int()  # price x quantity, cents
    product_url = _opt_str()
    image_url = _opt_str()


class ConvertSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    email = fields.Email(required=True, error_messages={
        **REQUIRED, "invalid": "Enter a valid email address."})
    cart_data = fields.Nested(CartDataSchema, load_default=None, allow_none=True)
    cart_items = fields.List(fields.Nested(CartItemSchema), load_default=None, allow_none=True)


# --- POST /customer/cancel/, /customer/unsubscribe/, /customer/opt_in/ ----------------------


class EmailSchema(Schema):
    """The body of ``cancel`` and ``unsubscribe``: ``{"email": ...}``."""

    class Meta:
        unknown = EXCLUDE

    email = fields.Email(required=True, error_messages={
        **REQUIRED, "invalid": "Enter a valid email address."})


class OptInSchema(_ExtrasAsMetadata):
    """``{"email": ..., <any extras>}``; the extras become the consent record's info."""

    email = fields.Email(required=True, error_messages={
        **REQUIRED, "invalid": "Enter a valid email address."})


# --- customers -----------------------------------------------------------------------------


class ProfileSchema(Schema):
    """The body of ``POST /customers/`` and ``PUT /customers/<id or email>/``.

    Read-only fields of the profile (``id``, consent flags and dates) are ignored when sent, as
    DRF ignores read-only fields, so a profile read back can be written back whole.
    """

    class Meta:
        unknown = EXCLUDE

    email = fields.Email(required=True, error_messages={
        **REQUIRED, "invalid": "Enter a valid email address."})
    first_name = _opt_str(load_default=ABSENT)
    last_name = _opt_str(load_default=ABSENT)
    phone = _opt_str(load_default=ABSENT)
    timezone = _opt_str(load_default=ABSENT)
    age = _opt_int(load_default=ABSENT)
    gender = fields.String(load_default=ABSENT, allow_none=True, error_messages=STRING,
                           validate=validate.OneOf(["m", "f", ""],
                                                   error='"{input}" is not a valid choice.'))
    language = _opt_str(load_default=ABSENT, validate=validate.Length(
        max=2, error="Ensure this field has no more than {max} characters."))
    address1 = _opt_str(load_default=ABSENT)
    address2 = _opt_str(load_default=ABSENT)
    address3 = _opt_str(load_default=ABSENT)
    city = _opt_str(load_default=ABSENT)
    state = _opt_str(load_default=ABSENT)
    postal_code = _opt_str(load_default=ABSENT)
    country = _opt_str(load_default=ABSENT)
    birthdate = fields.Date(BIRTHDATE_FORMAT, load_default=ABSENT, allow_none=True, error_messages={
        **REQUIRED,
        "invalid": "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."})
    tags = fields.List(fields.String(error_messages=STRING), load_default=ABSENT, allow_none=True,
                       error_messages={**REQUIRED, "invalid": 'Expected a list of items.'})
    metadata = fields.Dict(keys=fields.String(), load_default=ABSENT, allow_none=True,
                           error_messages={**REQUIRED, "invalid": "Value must be valid JSON."})


#: The profile fields a write can set (everything but ``email``); absent ones keep their value.
PROFILE_FIELDS = tuple(name for name in ProfileSchema().fields if name != "email")
STRING_PROFILE_FIELDS = (
    "first_name", "last_name", "phone", "timezone", "gender", "language", "address1",
    "address2", "address3", "city", "state", "postal_code", "country",
)


class CustomerSchema(Schema):
    """The answer of ``GET``/``PUT``/``POST`` customers: the whole stored profile."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)
    email = fields.String(required=True)
    first_name = fields.String(required=True)
    last_name = fields.String(required=True)
    phone = fields.String(required=True)
    timezone = fields.String(required=True)
    age = fields.Integer(required=True, allow_none=True, strict=True)
    gender = fields.String(required=True)
    language = fields.String(required=True)
    address1 = fields.String(required=True)
    address2 = fields.String(required=True)
    address3 = fields.String(required=True)
    city = fields.String(required=True)
    state = fields.String(required=True)
    postal_code = fields.String(required=True)
    country = fields.String(required=True)
    birthdate = fields.Date(BIRTHDATE_FORMAT, required=True, allow_none=True)
    tags = fields.List(fields.String(), required=True)
    is_unsubscribed = fields.Boolean(required=True, truthy={True}, falsy={False})
    unsubscribe_date = fields.NaiveDateTime(required=True, allow_none=True)
    is_opted_in = fields.Boolean(required=True, truthy={True}, falsy={False})
    opt_in_date = fields.NaiveDateTime(required=True, allow_none=True)
    opt_in_info = fields.Dict(required=True)
    metadata = fields.Dict(required=True)


class StatusSchema(Schema):
    """``{"status": "success"}``: the answer of ``/ping/`` and of the four customer actions."""

    status = fields.String(required=True, validate=validate.Equal("success"))


class DetailSchema(Schema):
    """DRF's error body for 401, 404, 429 and unparseable requests: ``{"detail": "..."}``."""

    detail = fields.String(required=True)


def drf_errors(messages: Any) -> Any:
    """Marshmallow's error messages in DRF's shape.

    Marshmallow keys a nested list's errors by index (``{1: {...}}``); DRF answers a list with one
    entry per item (``[{}, {...}]``). Marshmallow's ``_schema`` errors become
    ``non_field_errors``.
    """
    if isinstance(messages, dict):
        if messages and all(isinstance(k, int) for k in messages):
            if all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                   for v in messages.values()):
                # errors of scalar list items (e.g. tags): DRF keys them by index too
                return {str(k): v for k, v in messages.items()}
            size = max(messages) + 1
            return [drf_errors(messages.get(i, {})) for i in range(size)]
        return {("non_field_errors" if k == "_schema" else k): drf_errors(v)
                for k, v in messages.items()}
    return messages
