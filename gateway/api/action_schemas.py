"""What the actions answer, and how the OpenAPI document shows the bodies they take.

Answers are marshmallow schemas the views dump through. Bodies are parsed by
:func:`gateway.ingest.ingest` in the format the request names; for the document, each format's
own schema is shown: the canonical ones of :mod:`gateway.schemas`, and each service's own wire
schema (its ``connectors/<name>/wire.py``, the one its client and sandbox share), copied under
a name that says whose it is (``ReplenitOrder``, ``RejoinerConvert``), so that two services'
``Order`` never collide in the document. A format takes one record or an array of them.
"""

from __future__ import annotations

import copy
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.rejoiner import wire as rejoiner_wire
from connectors.rekindle import wire as rekindle_wire
from connectors.replenit import wire as replenit_wire
from gateway.api.searches import OrderAnswerSchema, RekindleCustomerSchema
from gateway.schemas import CustomerSchema, ErasureSchema, OrderSchema, ProductSchema

# --- answers -----------------------------------------------------------------------------------


class UpdatedCustomerSchema(RekindleCustomerSchema):
    returned = fields.Boolean(required=True, metadata={
        "description": "true when this update was a win-back return (the customer was lapsed "
                       "or lost, a win-back message went out, and this purchase followed)"})


class UpdateCustomerAnswerSchema(Schema):
    customer = fields.Nested(UpdatedCustomerSchema, required=True)

    class Meta:
        example = {"customer": {**RekindleCustomerSchema.Meta.example, "status": "active",
                                "engagement_score": 78, "returned": False}}


class OrdersAnswerSchema(Schema):
    orders = fields.List(fields.Nested(OrderAnswerSchema), required=True,
                         metadata={"description": "the orders stored, in the body's order"})
    skipped_erased = fields.Integer(required=True, metadata={
        "description": "records left out because their customer was erased"})

    class Meta:
        example = {"orders": [OrderAnswerSchema.Meta.example], "skipped_erased": 0}


class VariantAnswerSchema(Schema):
    id = fields.String(required=True)
    sku = fields.String(required=True)
    name = fields.String(allow_none=True)
    price = fields.String(allow_none=True, metadata={"description": "exact decimal string"})
    sale_price = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    available = fields.Boolean(required=True)
    stock = fields.Integer(allow_none=True)
    image = fields.String(allow_none=True)
    size = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    brand = fields.String(allow_none=True)


class ProductAnswerSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    taxonomy = fields.List(fields.String(), required=True)
    offline_exclusive = fields.Boolean(required=True)
    variants = fields.List(fields.Nested(VariantAnswerSchema), required=True)


class ProductsAnswerSchema(Schema):
    products = fields.List(fields.Nested(ProductAnswerSchema), required=True)

    class Meta:
        example = {"products": [{
            "id": "P-42", "name": "Women's Training Tank Top",
            "taxonomy": ["Apparel", "Women", "Activewear", "Tops"], "offline_exclusive": False,
            "variants": [{"id": "V-42-BLK-S", "sku": "SKU-42-BLK-S", "name": "Black / Small",
                          "price": "34.99", "sale_price": "27.99", "currency": "USD",
                          "available": True, "stock": 84, "image": None, "size": "S",
                          "language": None, "brand": None}]}]}


class RecordSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(
        ["customer", "order", "product", "cart", "consent", "erasure"]))
    id = fields.String(allow_none=True)
    outcome = fields.String(required=True, validate=validate.OneOf(
        ["created", "updated", "unchanged", "skipped_erased", "erased", "tombstoned",
         "not_found"]))
    customer_id = fields.String(allow_none=True)


class IngestAnswerSchema(Schema):
    """What an action stored: one summary per record, and the events it wrote."""

    records = fields.List(fields.Nested(RecordSchema), required=True)
    event_ids = fields.List(fields.String(), required=True, metadata={
        "description": "the events written (none when nothing changed)"})
    skipped_erased = fields.Integer(required=True)

    class Meta:
        example = {"records": [{"kind": "consent", "id": "cus_01jq3b5z0000000000000000",
                                "outcome": "updated",
                                "customer_id": "cus_01jq3b5z0000000000000000"}],
                   "event_ids": ["evt_01jq3b6a1m6q7c2v1x9y8z7w6t"], "skipped_erased": 0}


class WinbackAnswerSchema(Schema):
    customer_id = fields.String(required=True)
    status = fields.String(allow_none=True, metadata={
        "description": "the customer's status when the message went out"})
    attributable = fields.Boolean(required=True, metadata={
        "description": "whether an order after it can count as a return (the customer is "
                       "lapsed or lost)"})
    started_at = fields.String(required=True, metadata={"format": "date-time"})

    class Meta:
        example = {"customer_id": "cus_01jq3b5z0000000000000000", "status": "lapsed",
                   "attributable": True, "started_at": "2025-03-15T10:22:00Z"}


class ErasureAnswerSchema(Schema):
    customer_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the erased customer; null when an email erased earlier is asked for "
                       "again (its row no longer holds the email)"})
    outcome = fields.String(required=True, validate=validate.OneOf(["erased",
                                                                    "already_erased"]))
    event_ids = fields.List(fields.String(), required=True)

    class Meta:
        example = {"customer_id": "cus_01jq3b5z0000000000000000", "outcome": "erased",
                   "event_ids": ["evt_01jq3b6a1m6q7c2v1x9y8z7w6t"]}


class CancelAnswerSchema(Schema):
    email = fields.String(required=True)
    customer_id = fields.String(allow_none=True, metadata={
        "description": "the gateway's customer with this email, if it holds one"})
    delivery = fields.String(required=True, validate=validate.OneOf(["queued", "not_connected"]),
                             metadata={"description": "`queued` for Rejoiner; `not_connected` "
                                       "when the tenant has no Rejoiner connection"})

    class Meta:
        example = {"email": "customer@example.com",
                   "customer_id": "cus_01jq3b5z0000000000000000", "delivery": "queued"}


# --- bodies ------------------------------------------------------------------------------------


class WinbackSentSchema(Schema):
    """The record-winback-sent body: the customer (by email or id) and when it went out."""

    class Meta:
        example = {"email": "jane@example.com", "sent_at": "2025-03-15T10:22:00Z"}

    @validates_schema
    def _named(self, data: dict[str, Any], **_: Any) -> None:
        if not (data.get("email") or data.get("customer_id")):
            raise ValidationError("Name the customer: email or customer_id.",
                                  field_name="email")

    email = fields.Email(allow_none=True, validate=validate.Length(max=320))
    customer_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))
    sent_at = fields.AwareDateTime(format="iso", allow_none=True, metadata={
        "description": "when the message went out (default: now)"})


def _named_copy(schema: type[Schema], name: str, **extra: fields.Field) -> type[Schema]:
    """A copy of ``schema`` (its fields, nested schemas copied too, and its ``unknown``) called
    ``name`` + ``Schema``, with ``extra`` fields added: for the document only."""
    declared: dict[str, Any] = {}
    for field_name, field in schema._declared_fields.items():
        declared[field_name] = _copied_field(field, name)
    declared.update(extra)
    declared["Meta"] = type("Meta", (), {"unknown": schema().unknown})
    return type(f"{name}Schema", (Schema,), declared)


def _copied_field(field: fields.Field, prefix: str) -> fields.Field:
    copied = copy.deepcopy(field)
    if isinstance(copied, fields.Nested) and isinstance(copied.nested, type):
        base = copied.nested.__name__.removesuffix("Schema")
        copied.nested = _named_copy(copied.nested, prefix + base)
    elif isinstance(copied, fields.List):
        copied.inner = _copied_field(copied.inner, prefix)
    return copied


#: The most records an action's array may hold (see gateway.api.actions.MAX_ACTION_RECORDS).
MAX_RECORDS = 100


def one_or_many(*schemas: Any) -> dict[str, Any]:
    """A body of any of ``schemas``, as one record or an array of up to MAX_RECORDS."""
    return {"anyOf": [variant for schema in schemas
                      for variant in (schema, {"type": "array", "items": schema,
                                               "minItems": 1, "maxItems": MAX_RECORDS})]}


#: Rekindle's update-customer body, and the canonical fields update-customer takes besides.
CANONICAL_EXTRAS = ("first_name", "last_name", "language", "timezone", "consent",
                    "external_ids")
UpdateCustomerBodySchema = _named_copy(
    rekindle_wire.UpdateCustomerRequest, "UpdateCustomerBody",
    **{name: copy.deepcopy(CustomerSchema._declared_fields[name]) for name in CANONICAL_EXTRAS})

ReplenitOrderSchema = _named_copy(replenit_wire.OrderSchema, "ReplenitOrder")
ReplenitProductSchema = _named_copy(replenit_wire.ProductSchema, "ReplenitProduct")
RejoinerConvertSchema = _named_copy(rejoiner_wire.ConvertSchema, "RejoinerConvert")
RejoinerEmailSchema = _named_copy(rejoiner_wire.EmailSchema, "RejoinerEmail")
RejoinerOptInSchema = _named_copy(rejoiner_wire.OptInSchema, "RejoinerOptIn")

#: cancel-journeys takes Rejoiner's cancel body, and parses it with Rejoiner's own schema.
CancelBodySchema = rejoiner_wire.EmailSchema

def naming_the_customer(schema: Any, *, external_ids: bool) -> dict[str, Any]:
    """``schema``, with the rule its validator adds: the body names the customer by a
    (well-formed) ``email``, a ``customer_id``{, or ``external_ids``}."""
    ways: list[dict[str, Any]] = [
        {"required": ["email"], "properties": {"email": {"type": "string", "format": "email"}}},
        {"required": ["customer_id"],
         "properties": {"customer_id": {"type": "string", "minLength": 1}}},
    ]
    if external_ids:
        ways.append({"required": ["external_ids"],
                     "properties": {"external_ids": {"type": "object", "minProperties": 1}}})
    return {"allOf": [schema, {"anyOf": ways}]}


#: Each action's body (as documented) and its examples, by format.
BODIES: dict[str, tuple[Any, dict[str, Any]]] = {
    "update-customer": (UpdateCustomerBodySchema, {
        "rekindle": {"name": "Jane Smith", "email": "jane@example.com",
                     "phone": "+27821234567", "last_purchase_date": "2025-01-15",
                     "total_spent": 4700.0, "purchase_count": 8},
        "with canonical fields": {"name": "Jane Smith", "email": "jane@example.com",
                                  "language": "en-ZA",
                                  "consent": {"email": True, "gdpr_processing": True},
                                  "external_ids": {"shop": "C-123"}}}),
    "record-order": (one_or_many(OrderSchema, ReplenitOrderSchema, RejoinerConvertSchema), {
        "canonical": OrderSchema.Meta.example,
        "replenit (?format=replenit)": [{
            "OrderId": "O-789", "CustomerId": "C-123", "Email": "john.doe@example.com",
            "OrderDate": "2025-08-22T21:00:00Z", "TotalRevenue": 89.97, "Currency": "USD",
            "OrderItems": [{"ProductId": "P-42", "Sku": "SKU-42-RED-L", "Quantity": 3,
                            "Price": 29.99}]}],
        "rejoiner (?format=rejoiner)": {
            "email": "customer@example.com",
            "cart_data": {"cart_value": 2000, "cart_item_count": 2, "order_number": "O-12345"},
            "cart_items": [{"product_id": "12345", "price": 1000, "item_qty": 2,
                            "qty_price": 2000}]}}),
    "upsert-products": (one_or_many(ProductSchema, ReplenitProductSchema), {
        "canonical": ProductSchema.Meta.example,
        "replenit (?format=replenit)": [{
            "ProductId": "P-42", "ProductName": "Women's Training Tank Top",
            "Taxonomy": ["Apparel", "Women"], "ProductVariants": [{
                "VariantId": "V-42-BLK-S", "Sku": "SKU-42-BLK-S", "Name": "Black / Small",
                "OriginalPrice": 34.99, "Currency": "USD", "IsAvailable": True}]}]}),
    "convert-cart": (one_or_many(RejoinerConvertSchema), {"rejoiner": {
        "email": "customer@example.com",
        "cart_data": {"cart_value": 2000, "cart_item_count": 3, "promo": "SALE",
                      "order_number": "O-12345"}}}),
    "unsubscribe": (one_or_many(RejoinerEmailSchema), {"rejoiner": {
        "email": "customer@example.com"}}),
    "opt-in": (one_or_many(RejoinerOptInSchema), {"rejoiner": {
        "email": "customer@example.com", "type": "accepts marketing checkbox",
        "otherInfo": "accepted marketing on checkout page"}}),
    "cancel-journeys": (RejoinerEmailSchema, {"rejoiner": {"email": "customer@example.com"}}),
    "record-winback-sent": (naming_the_customer(WinbackSentSchema, external_ids=False), {
        "by email": WinbackSentSchema.Meta.example,
        "by id": {"customer_id": "cus_01jq3b5z0000000000000000"}}),
    "delete-customer": (naming_the_customer(ErasureSchema, external_ids=True), {
        "by email": ErasureSchema.Meta.example,
        "by id": {"customer_id": "cus_01jq3b5z0000000000000000"},
        "by external id": {"external_ids": {"shop": "C-123"}}}),
}
