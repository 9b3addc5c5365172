"""Zapier searches: ``GET /api/v1/actions/find-customer`` and ``GET /api/v1/searches/find-order``.

A search answers 200 with an array, best match first, and ``[]`` when nothing matches: Zapier's
convention for a search step. (Rekindle's own find-customer answers 404 for no match; a Zap
moved from Rekindle to the gateway sees ``[]`` instead, which Zapier reads the same way.) An id
or email of another tenant finds nothing here, exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS
from gateway.api.params import ZapierBlueprint
from gateway.model import Customer, Order, normalise_email
from gateway.runtime import runtime
from gateway.scoring.items import iso_time, json_amount
from gateway.store import records
from gateway.triggers import amount_text

blp = ZapierBlueprint("searches", __name__, description=(
    "Searches: 200 with an array, best match first; [] when nothing matches"))

NO_MATCH = "an empty array `[]` when nothing matches (Zapier's convention; Rekindle itself " \
           "answers 404)"


# --- answers ---------------------------------------------------------------------------------


class RekindleCustomerSchema(Schema):
    """A customer in Rekindle's shape (its find-customer item), ``id`` the gateway's id."""

    id = fields.String(required=True, metadata={"description": "the gateway's customer id"})
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    status = fields.String(allow_none=True, validate=validate.OneOf(
        ["active", "at_risk", "lapsed", "lost"]))
    engagement_score = fields.Integer(allow_none=True)
    last_purchase_date = fields.String(allow_none=True, metadata={"format": "date"})
    total_spent = fields.Raw(allow_none=True, metadata={
        "description": "lifetime value in the tenant's base currency (an exact JSON number)"})
    purchase_count = fields.Integer(allow_none=True)
    returned_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})

    class Meta:
        example = {"id": "cus_01jq3b5z0000000000000000", "name": "Jane Smith",
                   "email": "jane@example.com", "phone": "+27821234567", "status": "lapsed",
                   "engagement_score": 32, "last_purchase_date": "2024-09-01",
                   "total_spent": 4200.0, "purchase_count": 7, "returned_at": None,
                   "updated_at": "2025-03-15T10:22:00Z"}


def rekindle_customer(customer: Customer) -> dict[str, Any]:
    """A stored customer in Rekindle's shape (find-customer's item, update-customer's answer
    without ``returned``)."""
    last = customer.last_order_at
    ltv = customer.lifetime_value
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "status": customer.status,
        "engagement_score": customer.engagement_score,
        "last_purchase_date": last.date().isoformat() if last else None,
        "total_spent": json_amount(ltv.minor, ltv.currency) if ltv else None,
        "purchase_count": customer.order_count,
        "returned_at": iso_time(customer.returned_at),
        "updated_at": iso_time(customer.updated_at),
    }


class OrderLineAnswerSchema(Schema):
    product_id = fields.String(allow_none=True)
    sku = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    quantity = fields.Integer(required=True)
    unit_price = fields.String(required=True, metadata={"description": "exact decimal string"})
    original_price = fields.String(allow_none=True)
    size = fields.String(allow_none=True)
    colour = fields.String(allow_none=True)
    brand = fields.String(allow_none=True)
    gift = fields.Boolean(required=True)


class OrderAnswerSchema(Schema):
    """An order as stored: the shop's order id, its customer, exact amounts as strings."""

    id = fields.String(required=True, metadata={"description": "the shop's order id"})
    customer_id = fields.String(required=True)
    email = fields.String(allow_none=True)
    placed_at = fields.String(required=True, metadata={"format": "date-time"})
    total = fields.String(required=True, metadata={"description": "exact decimal string"})
    currency = fields.String(required=True)
    item_count = fields.Integer(required=True)
    cancelled = fields.Boolean(required=True)
    source = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(OrderLineAnswerSchema), required=True)

    class Meta:
        example = {"id": "O-789", "customer_id": "cus_01jq3b5z0000000000000000",
                   "email": "john.doe@example.com", "placed_at": "2025-08-22T21:00:00Z",
                   "total": "89.97", "currency": "USD", "item_count": 3, "cancelled": False,
                   "source": "replenit", "lines": [
                       {"product_id": "P-42", "sku": "SKU-42-RED-L", "name": None,
                        "quantity": 2, "unit_price": "29.99", "original_price": "39.99",
                        "size": "L", "colour": "red", "brand": "Acme", "gift": False},
                       {"product_id": "P-43", "sku": "SKU-43-BLUE-M", "name": None,
                        "quantity": 1, "unit_price": "29.99", "original_price": None,
                        "size": None, "colour": None, "brand": None, "gift": True}]}


def order_answer(order: Order) -> dict[str, Any]:
    """A stored order (:func:`gateway.store.records.get_order`) as the API answers it."""
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "email": order.customer_email,
        "placed_at": iso_time(order.placed_at),
        "total": amount_text(order.total),
        "currency": order.total.currency,
        "item_count": order.item_count,
        "cancelled": bool(order.cancelled),
        "source": order.source,
        "lines": [{
            "product_id": line.product_id, "sku": line.sku, "name": line.name,
            "quantity": line.quantity, "unit_price": amount_text(line.unit_price),
            "original_price": amount_text(line.original_price), "size": line.size,
            "colour": line.colour, "brand": line.brand, "gift": bool(line.gift),
        } for line in order.lines],
    }


# --- parameters ------------------------------------------------------------------------------


class FindCustomerQuery(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=320),
                         metadata={"description": "the customer's email (any case)"})


class FindOrderQuery(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "the shop's order id"})


def _bad_request(func: Any) -> Any:
    return blp.error_response(400, "a query parameter is missing, unknown or not valid",
                              RATE_LIMIT_HEADERS)(func)


# --- the searches ----------------------------------------------------------------------------


@blp.route("/actions/find-customer")
class FindCustomer(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(FindCustomerQuery, location="query")
    @blp.response(200, RekindleCustomerSchema(many=True), headers=RATE_LIMIT_HEADERS,
                  description=f"the customer with this email, in Rekindle's shape; {NO_MATCH}",
                  example=[RekindleCustomerSchema.Meta.example])
    def get(self, query):
        """Find a customer by email (Rekindle's path and item shape)."""
        try:
            email = normalise_email(query["email"])
        except ValueError:
            return []  # not an address the gateway would ever store
        with runtime().engine.connect() as conn:
            found = records.find_customer(conn, tenant_id(), email=email)
        if found is None or found.redacted_at is not None:
            return []
        return [rekindle_customer(found)]


@blp.route("/searches/find-order")
class FindOrder(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(FindOrderQuery, location="query")
    @blp.response(200, OrderAnswerSchema(many=True), headers=RATE_LIMIT_HEADERS,
                  description=f"the order with this id; {NO_MATCH}",
                  example=[OrderAnswerSchema.Meta.example])
    def get(self, query):
        """Find an order by the shop's order id."""
        with runtime().engine.connect() as conn:
            found = records.get_order(conn, tenant_id(), query["id"])
        return [order_answer(found)] if found is not None else []
