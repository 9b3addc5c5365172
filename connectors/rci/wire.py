"""Repeat Customer Insights' own shapes: JSON:API 1.0 documents of ``customer`` resources.

One set of marshmallow schemas, used by the client (every page it reads is loaded through them)
and by the sandbox (every resource it serves is checked by them). Timestamps stay strings here
(``2016-04-13T18:31:51.000Z``): loading a document returns the wire shape unchanged, and
``mapping.py`` does the conversion to the canonical model.

The reference's rules, as validators: scores 1-5, ``rfm`` 111-555 and made of the three scores
(``100 * recency + 10 * frequency + monetary``), ``grade`` A-F without E, ``cohort`` ``YYYY-MM``,
``ltv_currency`` an ISO 4217 code, timestamps ISO 8601 in UTC. Attributes the reference does not
list are tolerated when loading (the API is in beta and adds attributes, as its changelog shows),
and kept as they came.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from connectors.base import Limit
from gateway.money import ISO_4217

#: The documented limit: 60 requests a minute (the sandbox counts a sliding 60 s window).
LIMITS: tuple[Limit, ...] = (Limit(60, 60),)

#: The media type of every JSON:API document (requests may also send plain ``application/json``).
MEDIA_TYPE = "application/vnd.api+json"

#: ``jsonapi`` member of every document.
JSONAPI = {"version": "1.0"}

#: The resource type of a customer.
CUSTOMER_TYPE = "customer"

#: The query parameter that carries the opaque cursor (``page%5Bcursor%5D`` once encoded).
CURSOR_PARAM = "page[cursor]"

#: Every attribute of a customer, in the reference's order (``redacted_at`` is listed in the
#: attribute table but absent from its example: it is present, and set, for redacted customers).
ATTRIBUTES: tuple[str, ...] = (
    "remote_created_at",
    "remote_updated_at",
    "first_name",
    "last_name",
    "email",
    "email_marketing_consent",
    "sms_marketing_consent",
    "created_at",
    "updated_at",
    "ltv_cents",
    "ltv_currency",
    "orders_count",
    "recent_order_at",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "rfm",
    "grade",
    "acquisition_source",
    "cohort",
    "segments",
    "redacted_at",
)

#: The attributes blanked (``null``) when a customer is redacted.
PII_ATTRIBUTES: tuple[str, ...] = ("first_name", "last_name", "email")

GRADES: tuple[str, ...] = ("A", "B", "C", "D", "F")

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]00:?00)$")
_COHORT = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class StrictBoolean(fields.Boolean):
    """A JSON ``true``/``false``; no ``"yes"``, ``1`` or ``"true"``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Timestamp(fields.String):
    """An ISO 8601 timestamp in UTC, kept as the string the service sent."""

    default_error_messages = {"timestamp": "Not an ISO 8601 UTC timestamp."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _TIMESTAMP.match(text):
            raise self.make_error("timestamp")
        return text


def _score(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(1, 5), **kw)


class CustomerAttributesSchema(Schema):
    """``attributes`` of a ``customer`` resource."""

    class Meta:
        unknown = INCLUDE

    remote_created_at = Timestamp(required=True, allow_none=True)
    remote_updated_at = Timestamp(required=True, allow_none=True)
    first_name = fields.String(required=True, allow_none=True)
    last_name = fields.String(required=True, allow_none=True)
    email = fields.String(required=True, allow_none=True)
    email_marketing_consent = StrictBoolean(required=True, allow_none=True)
    # Added 2023-03-06: an older document may lack it.
    sms_marketing_consent = StrictBoolean(load_default=None, allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    ltv_cents = fields.Integer(required=True, strict=True)
    ltv_currency = fields.String(required=True, validate=validate.OneOf(sorted(ISO_4217)))
    orders_count = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    recent_order_at = Timestamp(required=True, allow_none=True)
    recency_score = _score(required=True, allow_none=True)
    frequency_score = _score(required=True, allow_none=True)
    monetary_score = _score(required=True, allow_none=True)
    rfm = fields.Integer(
        strict=True, required=True, allow_none=True, validate=validate.Range(111, 555)
    )
    grade = fields.String(required=True, allow_none=True, validate=validate.OneOf(GRADES))
    acquisition_source = fields.String(required=True, allow_none=True)
    cohort = fields.String(required=True, allow_none=True, validate=validate.Regexp(_COHORT))
    # Added 2022-06-16 with cohort; an empty list when there are none.
    segments = fields.List(fields.String(), load_default=list)
    redacted_at = Timestamp(load_default=None, allow_none=True)

    @validates_schema
    def _rfm_is_made_of_scores(self, data: dict[str, Any], **kwargs: Any) -> None:
        scores = [data.get(k) for k in ("recency_score", "frequency_score", "monetary_score")]
        rfm = data.get("rfm")
        if rfm is None or None in scores:
            return
        r, f, m = scores
        if rfm != 100 * r + 10 * f + m:
            raise ValidationError(f"rfm {rfm} is not made of the scores {r}{f}{m}", "rfm")


class ResourceLinksSchema(Schema):
    class Meta:
        unknown = RAISE

    self = fields.Url(required=True, require_tld=False)


class CustomerResourceSchema(Schema):
    """One ``customer`` resource object."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.Equal(CUSTOMER_TYPE))
    id = fields.String(required=True, validate=validate.Length(min=1))
    attributes = fields.Nested(CustomerAttributesSchema, required=True)
    links = fields.Nested(ResourceLinksSchema, required=True)


class JsonApiSchema(Schema):
    version = fields.String(required=True, validate=validate.Equal("1.0"))


class ListLinksSchema(Schema):
    """Top-level ``links`` of a list: ``first`` always, ``next`` only when another page exists
    (JSON:API allows ``null`` for it too)."""

    class Meta:
        unknown = INCLUDE

    first = fields.Url(required=True, require_tld=False)
    next = fields.Url(require_tld=False, allow_none=True)


class CustomerListDocumentSchema(Schema):
    """``GET /api/v1/customers``."""

    class Meta:
        unknown = RAISE

    data = fields.List(fields.Nested(CustomerResourceSchema), required=True)
    links = fields.Nested(ListLinksSchema, required=True)
    jsonapi = fields.Nested(JsonApiSchema, required=True)


class CustomerDocumentSchema(Schema):
    """``GET /api/v1/customers/<id>``."""

    class Meta:
        unknown = RAISE

    data = fields.Nested(CustomerResourceSchema, required=True)
    jsonapi = fields.Nested(JsonApiSchema, required=True)


class ErrorObjectSchema(Schema):
    """One JSON:API error object; ``status`` is the HTTP status as a string."""

    class Meta:
        unknown = INCLUDE

    status = fields.String(required=True, validate=validate.Regexp(r"^[45]\d\d$"))
    title = fields.String(required=True)
    detail = fields.String()


class ErrorDocumentSchema(Schema):
    class Meta:
        unknown = RAISE

    errors = fields.List(
        fields.Nested(ErrorObjectSchema), required=True, validate=validate.Length(min=1)
    )
    jsonapi = fields.Nested(JsonApiSchema, required=True)


class ListQuerySchema(Schema):
    """The query of ``GET /api/v1/customers``: only ``page[cursor]``, a non-empty opaque string.

    Any other ``page[...]`` member is refused (422): the reference documents no page size.
    """

    class Meta:
        unknown = INCLUDE  # non-page parameters are ignored; page ones are checked below

    cursor = fields.String(data_key=CURSOR_PARAM, validate=validate.Length(min=1))

    @validates_schema(pass_original=True)
    def _only_the_cursor(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        for key in original:
            if (key == "page" or key.startswith("page[")) and key != CURSOR_PARAM:
                raise ValidationError(f"unsupported page parameter {key!r}", key)


def error_document(status: int, title: str, detail: str) -> dict[str, Any]:
    """A JSON:API error document with one error."""
    return {
        "errors": [{"status": str(status), "title": title, "detail": detail}],
        "jsonapi": dict(JSONAPI),
    }


LIST_DOCUMENT = CustomerListDocumentSchema()
CUSTOMER_DOCUMENT = CustomerDocumentSchema()
CUSTOMER_RESOURCE = CustomerResourceSchema()
ERROR_DOCUMENT = ErrorDocumentSchema()
LIST_QUERY = ListQuerySchema()
