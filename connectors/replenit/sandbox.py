"""A verified fake of Replenit's ingestion API, as its reference describes it.

Served paths (the service lives at the root, :data:`BASE_PATH` is ``""``, so a client's base
URL differs from production only in scheme, host and port):

``POST /customers/{tenantId}``, ``POST /orders/{tenantId}``, ``POST /products/{tenantId}``
    upserts of a JSON array of records (at most 500 / 200 / 100): ``200 {"success": true,
    "message": "Customers saved.", "data": {"count": n, "processedAt": "...Z"}}``.
``DELETE /customers/{tenantId}?customerId=|email=``, ``DELETE /orders/{tenantId}/{orderId}``,
``DELETE /orders/{tenantId}/{orderId}/items?productId=&sku=``,
``DELETE /products/{tenantId}/{productId}``,
``DELETE /products/{tenantId}/{productId}/variants/{variantId}``
    deletes.

Choices where the reference is silent (NOTES.md first, then these):

- **Auth before tenant**: a missing or wrong ``x-replenit-auth-key`` is a 401 whatever the
  tenant (so an unauthenticated caller learns nothing about which tenants exist); a right key
  with another tenant id is a 404 ``Tenant not found``. Only the configured key and tenant are
  accepted. Failure bodies use the envelope: ``{"success": false, "message": ..., "data": {}}``.
- **Rate limits**: 100 in any sliding 60 s window AND 5,000 in any sliding 3,600 s window, per
  key (:data:`CREDENTIAL`: the ``x-replenit-auth-key`` value, the one thing the service reads
  its key from; no other header counts), counted by the kit before auth; every request without
  the right key counts against one pair of windows per client address. EVERY service
  response, errors and 429s included, carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``
  and ``X-RateLimit-Reset`` (epoch seconds, service clock) of the
  *tightest* window: the one with the fewest requests left (the minute window normally; the hour
  window once fewer than the minute's remain in it). A 429 also carries ``Retry-After`` (whole
  service seconds until every window has room) and the body ``{"success": false, "message":
  "Rate limit exceeded. Retry after N seconds.", "data": {}}``. A 429 costs nothing.
- **Bodies** are read by the kit's bounded parser: JSON nested deeper than 64 levels, ``NaN`` /
  ``Infinity`` and anything else that is not JSON are a 400 ``Validation failed`` keyed ``$``.
  Any unexpected failure is a 500 in the envelope (``Server error.``), never an HTML page.
- **Validation** (400, ``{"success": false, "message": "Validation failed", "data": {},
  "errors": {...}}``, rules and messages in :mod:`.wire`): errors about the body as a whole (not
  JSON, not an array, more records than the endpoint's maximum) are keyed ``$``; record errors
  ``[i].Field`` and ``[i].OrderItems[j].Field``. **One invalid record rejects the whole batch:
  nothing of it is saved**; every invalid record of the batch is named. A customer needs
  ``CustomerId`` or ``Email``; an invalid ``CustomerId`` does not count as a key (the
  reference's own example). Unknown fields are ignored and not stored. An empty array is valid
  (``count`` 0). An empty ``ProductVariants`` array is accepted (the reference says a product
  *should* carry one variant). Phone, Language and Image are not format-checked.
- **Upserts** replace a record whole. Keys: ``CustomerId``, else the ``Email``
  (case-insensitive) for customers sent without one; ``OrderId``; ``ProductId``. An order item
  whose ``Sku`` matches no stored variant is accepted and counted as unlinked (computed over the
  current state, so it links once the product arrives).
- **Deletes** are idempotent and answer 200 with the envelope, ``count`` being how many records
  went (0 for an unknown one): ``Customer deletion queued.`` (applied at once here, although the
  reference calls it asynchronous), ``Order deleted.``, ``Order item deleted.``, ``Product
  deleted.``, ``Variant deleted.``. A customer delete takes ``customerId`` or ``email`` (or both:
  every customer matching either goes) and also removes that customer's orders (an erasure);
  neither is a 400 keyed ``customerId``. An item delete needs both ``productId`` and ``sku``
  (400 otherwise) and removes the matching lines; an order may be left with none.
- **Ids in paths** are single segments: a ``%2F`` is decoded before routing (as servers do), so
  an id containing ``/`` cannot be addressed (the client refuses such a delete).
- **Other paths** answer 404 ``Not found`` and other methods 405, in the envelope.
- **Seeding** (``--seed-customers N``) from :func:`connectors.sandbox_kit.synthetic_customers`:
  customers keyed by their shop id (``cus_000042``) with consent flags and ``GdprOptin`` from
  the person's processing consent, their orders (USD decimals), and the products their orders
  name (one variant each, so every seeded line is linked). Redacted people are absent: at
  Replenit a redaction is a delete.
- **Faults**: ``reject_keys`` (the kit's) rejects a record by its key (``CustomerId``/``Email``,
  ``OrderId``, ``ProductId``) with a 400 naming ``[i].<key field>``.

Control routes besides the kit's: ``POST /_sandbox/seed {"customers": N, "seed": 0}`` replaces
the store with N synthetic customers; ``GET /_sandbox/records/<kind>/<key>`` (kinds
``customers`` by CustomerId or email, ``orders``, ``products``) answers the stored wire record,
numbers exact.
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from flask import Blueprint, Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from connectors.sandbox_kit import (
    BodyError,
    HeaderCredential,
    RateDecision,
    SandboxConfig,
    SandboxSpec,
    build_sandbox,
    kit_state,
    parse_json_body,
    synthetic_customers,
)

from . import wire

BASE_PATH = ""
NAME = "replenit"
AUTH_HEADER = wire.AUTH_HEADER
#: How Replenit reads its key: the whole ``x-replenit-auth-key`` value.
CREDENTIAL = HeaderCredential(AUTH_HEADER)
LIMITS = wire.LIMITS
DEFAULT_TENANT = "00000000-0000-4000-8000-000000000000"

_SAVED = {"customers": "Customers saved.", "orders": "Orders saved.",
          "products": "Products saved."}


class _ExactJson(DefaultJSONProvider):
    """Flask JSON that writes ``Decimal`` as an exact JSON number (wire.dumps)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return wire.dumps(obj)


class Store:
    """The tenant's records in wire shape, thread-safe. Upserts replace a record whole."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict] = {}
        self.orders: dict[str, dict] = {}
        self.products: dict[str, dict] = {}

    def clear(self) -> None:
        with self.lock:
            self.customers.clear()
            self.orders.clear()
            self.products.clear()

    @staticmethod
    def customer_key(record: dict) -> str:
        return record.get("CustomerId") or "email:" + str(record.get("Email", "")).lower()

    def upsert(self, kind: str, records: list[dict]) -> None:
        with self.lock:
            if kind == "customers":
                for r in records:
                    self.customers[self.customer_key(r)] = r
            elif kind == "orders":
                for r in records:
                    self.orders[r["OrderId"]] = r
            else:
                for r in records:
                    self.products[r["ProductId"]] = r

    def delete_customers(self, customer_id: str | None, email: str | None) -> int:
        email = email.lower() if email else None
        with self.lock:
            gone = [k for k, c in self.customers.items()
                    if (customer_id and c.get("CustomerId") == customer_id)
                    or (email and str(c.get("Email") or "").lower() == email)]
            for k in gone:
                del self.customers[k]
            orders = [k for k, o in self.orders.items()
                      if (customer_id and o.get("CustomerId") == customer_id)
                      or (email and str(o.get("Email") or "").lower() == email)]
            for k in orders:
                del self.orders[k]
            return len(gone)

    def delete_order(self, order_id: str) -> int:
        with self.lock:
            return 1 if self.orders.pop(order_id, None) is not None else 0

    def delete_order_items(self, order_id: str, product_id: str, sku: str) -> int:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return 0
            items = order["OrderItems"]
            kept = [i for i in items if not (i["ProductId"] == product_id and i["Sku"] == sku)]
            self.orders[order_id] = {**order, "OrderItems": kept}
            return len(items) - len(kept)

    def delete_product(self, product_id: str) -> int:
        with self.lock:
            return 1 if self.products.pop(product_id, None) is not None else 0

    def delete_variant(self, product_id: str, variant_id: str) -> int:
        with self.lock:
            product = self.products.get(product_id)
            if product is None:
                return 0
            variants = product["ProductVariants"]
            kept = [v for v in variants if v["VariantId"] != variant_id]
            self.products[product_id] = {**product, "ProductVariants": kept}
            return len(variants) - len(kept)

    def counts(self) -> dict[str, int]:
        with self.lock:
            skus = {v["Sku"] for p in self.products.values() for v in p["ProductVariants"]}
            items = [i for o in self.orders.values() for i in o["OrderItems"]]
            return {
                "customers": len(self.customers),
                "orders": len(self.orders),
                "order_items": len(items),
                "unlinked_order_items": sum(1 for i in items if i["Sku"] not in skus),
                "products": len(self.products),
                "variants": sum(len(p["ProductVariants"]) for p in self.products.values()),
            }

    def lookup(self, kind: str, key: str) -> dict | None:
        with self.lock:
            if kind == "customers":
                found = self.customers.get(key) or self.customers.get("email:" + key.lower())
                if found is None:
                    found = next((c for c in self.customers.values()
                                  if str(c.get("Email") or "").lower() == key.lower()), None)
                return found
            if kind == "orders":
                return self.orders.get(key)
            if kind == "products":
                return self.products.get(key)
            return None


# --- answers -----------------------------------------------------------------------------------


def _answer(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.dumps(body), status=status, mimetype="application/json",
                    headers=headers)


def _failure(status: int, message: str, errors: dict | None = None) -> Response:
    body: dict[str, Any] = {"success": False, "message": message, "data": {}}
    if errors is not None:
        body["errors"] = errors
    return _answer(status, body)


def _validation_failed(errors: dict[str, list[str]]) -> Response:
    return _failure(400, "Validation failed", errors)


def rate_limited(decision: RateDecision) -> Response:
    """The 429 (the kit adds the X-RateLimit-* headers after it)."""
    response = _failure(429, f"Rate limit exceeded. Retry after {decision.retry_after} seconds.")
    response.headers["Retry-After"] = str(decision.retry_after)
    return response


def _processed_at(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- seeding -----------------------------------------------------------------------------------


def _cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def seed_records(n: int, seed: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """Customers, orders and products in wire shape for ``n`` synthetic people."""
    customers, orders, products = [], [], {}
    for person in synthetic_customers(n, seed):
        if person.redacted_at is not None:
            continue  # a redaction is a delete at Replenit
        customers.append({
            "CustomerId": person.id, "Email": person.email, "Name": person.first_name,
            "Surname": person.last_name, "Phone": person.phone, "Language": person.language,
            "EmailOptin": person.email_opt_in, "SmsOptin": person.sms_opt_in,
            "GdprOptin": person.gdpr_processing, "IsExcluded": False,
        })
        for order in person.orders:
            orders.append({
                "OrderId": order.id, "CustomerId": person.id, "Email": person.email,
                "OrderDate": wire.format_datetime(order.placed_at),
                "TotalRevenue": _cents(order.total_cents), "Currency": order.currency,
                "TotalQuantity": sum(line.quantity for line in order.lines),
                "UniqueQuantity": len({line.sku for line in order.lines}),
                "IsOrderCancelled": False,
                "OrderItems": [{"ProductId": line.product_id, "Sku": line.sku,
                                "Quantity": line.quantity,
                                "Price": _cents(line.unit_price_cents), "IsGift": False}
                               for line in order.lines],
            })
            for line in order.lines:
                products.setdefault(line.product_id, {
                    "ProductId": line.product_id, "ProductName": line.name,
                    "IsOfflineExclusive": False,
                    "ProductVariants": [{
                        "VariantId": f"V-{line.sku}", "Sku": line.sku, "Name": line.name,
                        "OriginalPrice": _cents(line.unit_price_cents),
                        "Currency": order.currency, "IsAvailable": True,
                    }],
                })
    return customers, orders, list(products.values())


# --- the app -----------------------------------------------------------------------------------


def create_sandbox(config: SandboxConfig) -> Flask:
    """The Replenit sandbox for one tenant (``config.tenant_id``, or :data:`DEFAULT_TENANT`)."""
    tenant = config.tenant_id or DEFAULT_TENANT
    store = Store()

    def reseed(n: int, seed: int = 0) -> None:
        store.clear()
        customers, orders, products = seed_records(n, seed)
        store.upsert("products", products)
        store.upsert("customers", customers)
        store.upsert("orders", orders)

    app = build_sandbox(
        NAME, config, record_counts=store.counts, record_lookup=store.lookup,
        rate_limited=rate_limited, rate_headers=True, limits=LIMITS,
        on_reset=lambda: reseed(config.seed_customers), credential=CREDENTIAL,
    )
    app.json = _ExactJson(app)
    kit = kit_state(app)
    reseed(config.seed_customers)

    def now_text() -> str:
        return _processed_at(kit.clock.now())

    def ok(message: str, count: int) -> Response:
        return _answer(200, {"success": True, "message": message,
                             "data": {"count": count, "processedAt": now_text()}})

    api = Blueprint("replenit", __name__)
    expected_key = config.api_key.encode()

    @api.before_request
    def _auth_then_tenant() -> Response | None:
        presented = CREDENTIAL.read(request)
        if presented is None or not hmac.compare_digest(presented.encode(), expected_key):
            return _failure(401, "Unauthorized: missing or invalid x-replenit-auth-key.")
        if (request.view_args or {}).get("tenant_id") != tenant:
            return _failure(404, "Tenant not found.")
        return None

    def upsert(kind: str) -> Response:
        try:
            body = parse_json_body(request.get_data(), exact=True)
        except BodyError as exc:
            return _validation_failed({"$": [_body_message(exc)]})
        records, errors = wire.validate_batch(kind, body)
        if not errors:
            errors = _rejected_by_faults(kind, records)
        if errors:
            return _validation_failed(errors)
        store.upsert(kind, records)
        return ok(_SAVED[kind], len(records))

    def _rejected_by_faults(kind: str, records: list[dict]) -> dict[str, list[str]]:
        field = {"customers": "CustomerId", "orders": "OrderId", "products": "ProductId"}[kind]
        errors: dict[str, list[str]] = {}
        for i, record in enumerate(records):
            key = record.get(field) or (record.get("Email") if kind == "customers" else None)
            message = kit.faults.rejects(key) if key else None
            if message:
                name = field if record.get(field) else "Email"
                errors[f"[{i}].{name}"] = [message]
        return errors

    def route(rule: str, methods: list[str]) -> Callable:
        return api.route(rule, methods=methods)

    @route("/customers/<tenant_id>", ["POST", "DELETE"])
    def customers(tenant_id: str) -> Response:
        if request.method == "POST":
            return upsert("customers")
        customer_id = request.args.get("customerId") or None
        email = request.args.get("email") or None
        if not customer_id and not email:
            return _validation_failed({"customerId": ["Either customerId or email is required."]})
        if email and not wire.EMAIL.match(email):
            return _validation_failed({"email": ["The email field is not a valid e-mail "
                                                 "address."]})
        return ok("Customer deletion queued.", store.delete_customers(customer_id, email))

    @route("/orders/<tenant_id>", ["POST"])
    def orders(tenant_id: str) -> Response:
        return upsert("orders")

    @route("/orders/<tenant_id>/<order_id>", ["DELETE"])
    def order(tenant_id: str, order_id: str) -> Response:
        return ok("Order deleted.", store.delete_order(order_id))

    @route("/orders/<tenant_id>/<order_id>/items", ["DELETE"])
    def order_items(tenant_id: str, order_id: str) -> Response:
        product_id, sku = request.args.get("productId"), request.args.get("sku")
        errors = {name: [f"The {name} field is required."]
                  for name, value in (("productId", product_id), ("sku", sku)) if not value}
        if errors:
            return _validation_failed(errors)
        return ok("Order item deleted.", store.delete_order_items(order_id, product_id, sku))

    @route("/products/<tenant_id>", ["POST"])
    def products(tenant_id: str) -> Response:
        return upsert("products")

    @route("/products/<tenant_id>/<product_id>", ["DELETE"])
    def product(tenant_id: str, product_id: str) -> Response:
        return ok("Product deleted.", store.delete_product(product_id))

    @route("/products/<tenant_id>/<product_id>/variants/<variant_id>", ["DELETE"])
    def variant(tenant_id: str, product_id: str, variant_id: str) -> Response:
        return ok("Variant deleted.", store.delete_variant(product_id, variant_id))

    app.register_blueprint(api, url_prefix=BASE_PATH or None)

    @app.post("/_sandbox/seed")
    def _seed() -> Response:
        try:
            body = parse_json_body(request.get_data() or b"{}")
        except BodyError as exc:
            return _answer(400, {"error": _body_message(exc)})
        if not isinstance(body, dict):
            return _answer(400, {"error": "seed takes a JSON object"})
        n, seed = body.get("customers", 0), body.get("seed", 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0 or not isinstance(seed, int):
            return _answer(400, {"error": "customers and seed must be non-negative integers"})
        reseed(n, seed)
        return _answer(200, store.counts())

    @app.errorhandler(404)
    def _not_found(error: Exception) -> Response:
        return _failure(404, "Not found.")

    @app.errorhandler(405)
    def _not_allowed(error: Any) -> Response:
        response = _failure(405, "Method not allowed.")
        valid = getattr(error, "valid_methods", None)
        if valid:
            response.headers["Allow"] = ", ".join(valid)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _failure(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def _crash(_: Exception) -> Response:
        return _failure(500, "Server error.")

    return app


def _body_message(exc: BodyError) -> str:
    """The ``$`` message for a body the kit's parser refused."""
    if exc.reason == BodyError.TOO_DEEP:
        return f"The request body is {exc.message}."
    return "The request body is not valid JSON."


SANDBOX = SandboxSpec(name=NAME, base_path=BASE_PATH, create=create_sandbox, limits=LIMITS,
                      description="Replenit ingestion API: batch upserts and deletes",
                      credential=CREDENTIAL)
