"""``POST /api/v1/actions/...``: Zapier's actions, each through the one ingest path.

Every action parses its body in its format (``?format=`` where the design's topic x format
table offers more than one), stores, re-scores and writes events in one transaction
(:func:`gateway.ingest.ingest`), and answers what it created or updated: 201 when something was
created, 200 otherwise. A failure is a 4xx in the one error shape, never a 2xx that carries an
error, and never a partial write:

- 400: the body (or a query parameter) is not valid; ``errors`` names each bad field, by index
  for arrays (``{"3": {"Email": [...]}}``); an array of more than 100 records (so that every
  request answers well within Zapier's 30 s);
- 404: an id (``customer_id``) that is not this tenant's customer, exactly as for one that does
  not exist;
- 413 / 415: a body over the limit / not JSON, or a ``format`` the action does not take (415
  names the accepted formats);
- 422: every record was about an erased customer, so nothing was stored (``errors`` says
  which); or an ``Idempotency-Key`` reused for another request;
- 409: a retry while the first request with its ``Idempotency-Key`` still runs.

Every action takes an ``Idempotency-Key`` header (:mod:`gateway.api.idempotency`).
"""

from __future__ import annotations

from typing import Any, Callable

from flask import request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate

from gateway import ingest as core
from gateway.api.action_schemas import (
    BODIES,
    CANONICAL_EXTRAS,
    MAX_RECORDS,
    CancelAnswerSchema,
    CancelBodySchema,
    ErasureAnswerSchema,
    IngestAnswerSchema,
    OrdersAnswerSchema,
    ProductsAnswerSchema,
    UpdateCustomerAnswerSchema,
    WinbackAnswerSchema,
    WinbackSentSchema,
)
from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS
from gateway.api.idempotency import HEADER_DOC, REPLAYED_HEADER, idempotent
from gateway.api.params import ZapierBlueprint
from gateway.api.searches import order_answer, rekindle_customer
from gateway.model import Product, normalise_email
from gateway.relay import plan_journey_cancel
from gateway.store import erasure, records
from gateway.triggers import amount_text, iso_time

blp = ZapierBlueprint("actions", __name__, description=(
    "Actions: each answers what it created (201) or updated (200); any failure is a 4xx"))

#: The most records one action request takes: so that a request answers well within Zapier's
#: 30 s even on a busy machine (ingest itself takes up to gateway.ingest.MAX_RECORDS).
MAX_ACTION_RECORDS = MAX_RECORDS

ERASED = ("this customer was erased at their request: nothing was stored, and nothing about "
          "them will be")


# --- bodies and parameters --------------------------------------------------------------------


def json_body() -> Any:
    """The request's JSON body (the app's JSON path answers 415 / 400 for a body that is not
    JSON or not valid JSON)."""
    return request.get_json()


def object_body() -> dict[str, Any]:
    """The request's JSON body, which must be one object (else a 400 saying so)."""
    body = json_body()
    if not isinstance(body, dict):
        abort(400, message="the body must be a JSON object",
              errors={"_schema": ["must be a JSON object"]})
    return body


def format_query(topic: str) -> type[Schema]:
    """A query schema whose ``format`` documents the formats ``topic`` takes (a format it does
    not take is :class:`gateway.ingest.UnsupportedFormat`: a 415 naming them)."""
    accepted = core.accepted_formats(topic)
    return type(f"{topic.title().replace('-', '')}FormatQuery", (Schema,), {
        "format": fields.String(load_default=core.CANONICAL, validate=validate.Length(max=32),
                                metadata={"enum": accepted, "description": (
                                    "the body's format: " + ", ".join(accepted) + " (any other "
                                    "is a 415 naming these)")})})


class NoQuery(Schema):
    """An action without query parameters: any parameter is unknown (a 400)."""


def _body_doc(action: str, description: str) -> Callable:
    """Document the action's body (:data:`gateway.api.action_schemas.BODIES`), with an
    example per format."""
    schema, examples = BODIES[action]
    return blp.doc(requestBody={"required": True, "description": description, "content": {
        "application/json": {"schema": schema, "examples": {
            name: {"value": value} for name, value in examples.items()}}}})


def _action_docs(func: Callable) -> Callable:
    """The answers every action can give besides its success (see the module docstring)."""
    docs = [
        blp.key_responses("zapier"),
        blp.body_responses(),
        blp.doc(parameters=[HEADER_DOC]),
        blp.error_response(409, "a request with this Idempotency-Key is still running",
                           {**RATE_LIMIT_HEADERS, "Retry-After": {
                               "description": "seconds to wait", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}),
        blp.error_response(422, "the customer was erased, so nothing was stored; or the "
                                "Idempotency-Key was used for another request",
                           RATE_LIMIT_HEADERS),
    ]
    for decorator in reversed(docs):
        func = decorator(func)
    return func


SUCCESS_HEADERS = {**RATE_LIMIT_HEADERS, REPLAYED_HEADER: {
    "description": "`true` on the stored answer to a retried Idempotency-Key",
    "required": False, "schema": {"type": "string", "enum": ["true"]}}}


# --- helpers ---------------------------------------------------------------------------------


def run_ingest(conn: Any, topic: str, fmt: str, payload: Any) -> core.IngestResult:
    """:func:`gateway.ingest.ingest` with its errors as answers: 415, 400. An array longer
    than :data:`MAX_ACTION_RECORDS` is a 400 before anything is parsed."""
    if isinstance(payload, list) and len(payload) > MAX_ACTION_RECORDS:
        message = (f"an action takes at most {MAX_ACTION_RECORDS} records a request (this "
                   f"array holds {len(payload)}); send the rest in further requests")
        abort(400, message=message, errors={"_schema": [message]})
    try:
        return core.ingest(conn, tenant_id(), topic, fmt, payload)
    except core.UnsupportedFormat as exc:
        abort(415, message=exc.message, errors={"format": [exc.message]})
    except core.PayloadInvalid as exc:
        abort(400, message=exc.message, errors=exc.errors)


def refuse_if_all_erased(result: core.IngestResult) -> None:
    """Abort 422 when every record was about an erased customer (nothing was stored)."""
    if result.records and all(r.outcome == "skipped_erased" for r in result.records):
        abort(422, message=ERASED, errors={"customer": [ERASED]})


def require_own_customers(conn: Any, body: Any) -> None:
    """404 when a canonical record names, by ``customer_id``, a customer this tenant does not
    hold (another tenant's id answers exactly as one that does not exist)."""
    many = isinstance(body, list)
    for index, record in enumerate(body if many else [body]):
        named = record.get("customer_id") if isinstance(record, dict) else None
        if isinstance(named, str) and named and \
                records.get_customer(conn, tenant_id(), named) is None:
            error = {"customer_id": ["this tenant holds no customer with this id"]}
            abort(404, message="no such customer (customer_id)",
                  errors={str(index): error} if many else error)


def created_status(result: core.IngestResult) -> int:
    return 201 if any(r.outcome == "created" for r in result.records) else 200


class Action(MethodView):
    """An action: a ``zapier`` key, and an ``Idempotency-Key`` honoured."""

    decorators = [idempotent, requires("zapier")]


# --- the actions -----------------------------------------------------------------------------


@blp.route("/actions/update-customer")
class UpdateCustomer(Action):
    @_action_docs
    @_body_doc("update-customer", "Rekindle's update-customer body (`name` and `email` "
               "required), optionally with canonical fields: "
               + ", ".join(f"`{f}`" for f in CANONICAL_EXTRAS))
    @blp.response(200, UpdateCustomerAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the customer was updated; its status as the rules give now",
                  example=UpdateCustomerAnswerSchema.Meta.example)
    @blp.alt_response(201, schema=UpdateCustomerAnswerSchema, headers=SUCCESS_HEADERS,
                      description="the customer is new", success=True)
    @blp.arguments(NoQuery, location="query")
    def post(self, _query, *, conn):
        """Create or update a customer (Rekindle's action), re-scored at once."""
        body = object_body()
        rekindle = {k: v for k, v in body.items() if k not in CANONICAL_EXTRAS}
        extras = {k: v for k, v in body.items() if k in CANONICAL_EXTRAS}
        if extras:
            _check_canonical_extras(body.get("email"), extras)
        try:
            update = core.update_customer(conn, tenant_id(), rekindle, fmt="rekindle")
        except core.PayloadInvalid as exc:
            abort(400, message=exc.message, errors=exc.errors)
        if update.customer is None:
            abort(422, message=ERASED, errors={"email": [ERASED]})
        customer = update.customer
        if extras:
            run_ingest(conn, "customers", core.CANONICAL, {"email": customer.email, **extras})
            customer = records.get_customer(conn, tenant_id(), customer.id)
        answer = {"customer": {**rekindle_customer(customer), "returned": update.returned}}
        return answer, created_status(update.result)


def _check_canonical_extras(email: Any, extras: dict[str, Any]) -> None:
    """400 naming the canonical fields that are not valid (before anything is written)."""
    try:
        core.parse("customers", core.CANONICAL, {"email": email, **extras})
    except core.PayloadInvalid as exc:
        errors = {k: v for k, v in exc.errors.items() if k in extras}
        if errors:
            abort(400, message="the request is not valid; see errors", errors=errors)


@blp.route("/actions/record-order")
class RecordOrder(Action):
    @_action_docs
    @_body_doc("record-order", "one order (or an array): canonical (the default), Replenit's "
               "order (`?format=replenit`), or Rejoiner's convert payload with "
               "`cart_data.order_number` (`?format=rejoiner`)")
    @blp.arguments(format_query("orders"), location="query")
    @blp.response(200, OrdersAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the order was updated (or was already so)",
                  example=OrdersAnswerSchema.Meta.example)
    @blp.alt_response(201, schema=OrdersAnswerSchema, headers=SUCCESS_HEADERS,
                      description="the order is new", success=True)
    @blp.error_response(404, "the order names a customer_id this tenant does not hold",
                        RATE_LIMIT_HEADERS)
    def post(self, query, *, conn):
        """Record an order (its customer is created minimally when new)."""
        body = json_body()
        if query["format"] == core.CANONICAL:
            require_own_customers(conn, body)
        result = run_ingest(conn, "orders", query["format"], body)
        refuse_if_all_erased(result)
        orders = [order_answer(records.get_order(conn, tenant_id(), r.id))
                  for r in result.records if r.kind == "order" and r.id is not None]
        return ({"orders": orders, "skipped_erased": result.skipped_erased},
                created_status(result))


@blp.route("/actions/upsert-products")
class UpsertProducts(Action):
    @_action_docs
    @_body_doc("upsert-products", "a product or an array of them: canonical (the default) or "
               "Replenit's (`?format=replenit`)")
    @blp.arguments(format_query("products"), location="query")
    @blp.response(200, ProductsAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the products were updated (or were already so)",
                  example=ProductsAnswerSchema.Meta.example)
    @blp.alt_response(201, schema=ProductsAnswerSchema, headers=SUCCESS_HEADERS,
                      description="some product is new", success=True)
    def post(self, query, *, conn):
        """Create or replace products and their variants."""
        result = run_ingest(conn, "products", query["format"], json_body())
        products = [product_answer(records.get_product(conn, tenant_id(), r.id))
                    for r in result.records if r.kind == "product"]
        return {"products": products}, created_status(result)


def product_answer(product: Product) -> dict[str, Any]:
    return {
        "id": product.id, "name": product.name, "taxonomy": list(product.taxonomy),
        "offline_exclusive": bool(product.offline_exclusive),
        "variants": [{
            "id": v.id, "sku": v.sku, "name": v.name, "price": amount_text(v.price),
            "sale_price": amount_text(v.sale_price),
            "currency": (v.price or v.sale_price).currency if (v.price or v.sale_price)
            else None,
            "available": bool(v.available), "stock": v.stock, "image": v.image, "size": v.size,
            "language": v.language, "brand": v.brand,
        } for v in product.variants],
    }


def ingest_answer(result: core.IngestResult) -> dict[str, Any]:
    return {"records": [{"kind": r.kind, "id": r.id, "outcome": r.outcome,
                         "customer_id": r.customer_id} for r in result.records],
            "event_ids": list(result.events), "skipped_erased": result.skipped_erased}


def _rejoiner_action(action: str, topic: str, summary: str) -> type[MethodView]:
    """An action that takes one of Rejoiner's bodies (one or an array) for ``topic`` and
    answers what it stored."""

    @_action_docs
    @_body_doc(action, "Rejoiner's body for this call (one, or an array)")
    @blp.response(200, IngestAnswerSchema, headers=SUCCESS_HEADERS,
                  description="what was stored", example=IngestAnswerSchema.Meta.example)
    @blp.alt_response(201, schema=IngestAnswerSchema, headers=SUCCESS_HEADERS,
                      description="a new record (customer or conversion) was stored",
                      success=True)
    @blp.arguments(NoQuery, location="query")
    def post(self, _query, *, conn):
        result = run_ingest(conn, topic, "rejoiner", json_body())
        refuse_if_all_erased(result)
        return ingest_answer(result), created_status(result)

    post.__doc__ = summary
    view = type(f"{topic.title().replace('-', '')}Action", (Action,), {"post": post})
    return blp.route(f"/actions/{action}")(view)


ConvertCart = _rejoiner_action("convert-cart", "conversions",
                               "Record a converted cart (Rejoiner's convert body).")
Unsubscribe = _rejoiner_action("unsubscribe", "unsubscribes",
                               "Unsubscribe a customer from email (Rejoiner's body).")
OptIn = _rejoiner_action("opt-in", "opt-ins",
                         "Record a customer's explicit consent (Rejoiner's body; extras kept).")


@blp.route("/actions/cancel-journeys")
class CancelJourneys(Action):
    @_action_docs
    @_body_doc("cancel-journeys", "Rejoiner's cancel body: the customer's `email`")
    @blp.response(200, CancelAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the cancel is queued for Rejoiner, ahead of the customer's "
                              "other queued writes",
                  example=CancelAnswerSchema.Meta.example)
    @blp.arguments(NoQuery, location="query")
    def post(self, _query, *, conn):
        """Stop the customer's active Rejoiner journeys (queued to Rejoiner's cancel)."""
        body = object_body()
        try:
            email = normalise_email(CancelBodySchema().load(body)["email"])
        except (ValidationError, ValueError) as exc:
            errors = exc.messages if isinstance(exc, ValidationError) else {"email": [str(exc)]}
            abort(400, message="the request is not valid; see errors", errors=errors)
        if erasure.is_erased(conn, tenant_id(), email=email):
            abort(422, message=ERASED, errors={"email": [ERASED]})
        customer_id = records.customer_id_for(conn, tenant_id(), email=email)
        queued = plan_journey_cancel(conn, tenant_id(), email, customer_id=customer_id)
        return {"email": email, "customer_id": customer_id,
                "delivery": "queued" if queued else "not_connected"}


@blp.route("/actions/record-winback-sent")
class RecordWinbackSent(Action):
    @_action_docs
    @_body_doc("record-winback-sent", "the customer, by `email` or `customer_id`, and when the "
               "message went out (`sent_at`, default now)")
    @blp.response(200, WinbackAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the message is recorded; the attribution window opens",
                  example=WinbackAnswerSchema.Meta.example)
    @blp.error_response(404, "no customer of this tenant has this email or id",
                        RATE_LIMIT_HEADERS)
    @blp.arguments(NoQuery, location="query")
    def post(self, _query, *, conn):
        """Record that a win-back message went out to a customer (by email or id)."""
        body = object_body()
        try:
            sent_to = WinbackSentSchema().load(body)
        except ValidationError as exc:
            abort(400, message="the request is not valid; see errors", errors=exc.messages)
        sent = core.record_winback_sent(conn, tenant_id(), email=sent_to.get("email"),
                                        customer_id=sent_to.get("customer_id"),
                                        at=sent_to.get("sent_at"))
        if sent is None:
            abort(404, message="no such customer")
        return {"customer_id": sent.customer_id, "status": sent.status,
                "attributable": sent.attributable, "started_at": iso_time(sent.started_at)}


@blp.route("/actions/delete-customer")
class DeleteCustomer(Action):
    @_action_docs
    @_body_doc("delete-customer", "the customer to erase: by `email`, the gateway's "
               "`customer_id`, or `external_ids`")
    @blp.response(200, ErasureAnswerSchema, headers=SUCCESS_HEADERS,
                  description="the customer's personal data is gone (or was already); a "
                              "tombstone keeps any later write about them from storing "
                              "anything",
                  example=ErasureAnswerSchema.Meta.example)
    @blp.error_response(404, "this tenant holds no such customer (nothing was written)",
                        RATE_LIMIT_HEADERS)
    @blp.arguments(NoQuery, location="query")
    def post(self, _query, *, conn):
        """Erase a customer (GDPR): by email, the gateway's customer id, or external ids."""
        result = run_ingest(conn, "erasures", core.CANONICAL, json_body())
        done = [r for r in result.records if r.outcome in ("erased", "unchanged")]
        if not done:
            abort(404, message="no such customer")
        return {"customer_id": done[0].customer_id,
                "outcome": "erased" if done[0].outcome == "erased" else "already_erased",
                "event_ids": list(result.events)}
