"""A verified fake of Repeat Customer Insights (``/api/v1``), as its reference describes it.

Served paths (everything under :data:`BASE_PATH`, so a client's base URL differs from
production only in scheme, host and port):

``GET /api/v1/customers[?page[cursor]=...]``
    a JSON:API list document: ``data`` (customer resources, each with ``links.self``),
    ``links.first`` and, only when another page exists, ``links.next`` carrying an opaque
    ``page[cursor]``; ``jsonapi: {"version": "1.0"}``.
``GET /api/v1/customers/<id>``
    a single resource document, or 404.

Choices where the reference is silent (NOTES.md first, then these):

- **Auth**: ``Authorization: Bearer <token>`` (:data:`CREDENTIAL`; scheme case-insensitive),
  only the configured token. Missing header, other scheme or wrong token: 401 with a JSON:API
  error document and ``WWW-Authenticate: Bearer realm="api"`` (plus ``error="invalid_token"``
  when a token was presented, as RFC 6750 says). Auth is checked before anything else of the
  service, so an unknown id with a bad token is a 401, not a 404.
- **Errors** are JSON:API error documents, ``Content-Type: application/vnd.api+json``:
  ``{"errors": [{"status": "401", "title": ..., "detail": ...}], "jsonapi": {"version": "1.0"}}``.
  404 for an unknown customer id and for any unknown path under the base; 405 (with ``Allow``)
  for another method on a documented path; 422 for a malformed or tampered cursor, an empty
  cursor, or any other ``page`` parameter (``page[size]``, ``page[number]``, ``page=2``: the
  reference documents only the cursor). Query parameters outside ``page`` are ignored.
- **Rate limit**: 60 requests in any sliding 60 s window, counted by the kit before auth and
  keyed on the token as auth reads it (``Bearer``, ``bearer`` and ``BEARER`` with one token are
  one budget; no other header counts); every request without the right token counts against
  one window per client address. Above it: 429, a JSON:API
  error document (title ``Too Many Requests``) and ``Retry-After`` in whole seconds until the
  window has room again (service seconds; at least 1). No ``X-RateLimit-*`` headers: the
  reference documents none.
- **Pagination**: 100 customers a page (``POST /_sandbox/page-size {"size": n}`` changes it; a
  client must not depend on it), ordered by id. The cursor is keyset: the last id of the page
  served, base64url-encoded JSON and signed with an HMAC of a per-app secret; customers added
  during a walk after the cursor's position appear, none is served twice.
- **Redaction**: a redacted customer has ``redacted_at`` set, ``first_name``, ``last_name`` and
  ``email`` null and both marketing consents false (the customer withdrew consent); its scores,
  value and dates stay as they were. Unredacted customers carry ``redacted_at: null``.
- **Bodies**: the service reads none (it is read only: a write is a 405 before any body is
  looked at); the control routes below read theirs with the kit's bounded parser, so JSON nested
  deeper than 64 levels, ``NaN`` or non-JSON is a 400 ``{"error": ...}``. Any other HTTP error
  under the base is a JSON:API error document, and an unexpected failure a 500 one; outside the
  base, plain ``{"error": ...}`` (not the API's shape, so a wrong base URL shows); never HTML.
- **Seeding** from :func:`connectors.sandbox_kit.synthetic_customers` (``--seed-customers N``):
  ids ``cus_000000``..., money in USD cents, ``remote_created_at`` the person's creation,
  ``remote_updated_at`` its last order (or creation), RCI's own ``created_at`` an hour after
  ``remote_created_at`` and ``updated_at`` two hours after ``remote_updated_at``. A customer
  without orders has ``recent_order_at``, ``cohort`` and ``acquisition_source`` null and scores
  111, grade F.

Control routes besides the kit's (stats, faults, reset, records, clock):

``POST /_sandbox/seed {"customers": N, "seed": 0, "records": [resource, ...]}``
    REPLACES the store with the first ``N`` synthetic customers of ``seed`` (so seeding the same
    N twice gives the same store), then adds the given resource objects (checked against the
    wire schema; 400 with the errors otherwise). Answers ``{"customers": count}``.
``POST /_sandbox/page-size {"size": n}``
    the page size (1-1000).
``POST /_sandbox/reset``
    (the kit's) also puts the store back to the config's ``seed_customers`` and the page size
    to 100.
``GET /_sandbox/records/customers/<id>``
    the stored resource object.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import os
import threading
from datetime import timedelta
from typing import Any, Iterable
from urllib.parse import quote

from flask import Blueprint, Flask, Response, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from connectors.sandbox_kit import (
    BEARER,
    BodyError,
    RateDecision,
    SandboxConfig,
    SandboxSpec,
    Synthetic,
    build_sandbox,
    parse_json_body,
    synthetic_customers,
)
from gateway.model import Consent, Customer, Money

from . import mapping, wire

BASE_PATH = "/api/v1"
PAGE_SIZE = 100
SERVICE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: How RCI reads its token: ``Authorization: Bearer <token>``.
CREDENTIAL = BEARER


# --- responses --------------------------------------------------------------------------------


def _document(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
              ) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype=wire.MEDIA_TYPE)


def _error(status: int, title: str, detail: str, headers: dict[str, str] | None = None
           ) -> Response:
    return _document(wire.error_document(status, title, detail), status, headers)


UNAUTHORIZED_DETAIL = (
    "The API request is unauthorized. Ensure you have set the Authentication header correctly "
    "and your account has access to the API."
)
NOT_FOUND_DETAIL = (
    "The resource cannot be found in your account. Ensure you are using the correct id "
    "parameter."
)


def rate_limited(decision: RateDecision) -> Response:
    """The 429 answer: a JSON:API error document and ``Retry-After``."""
    retry_after = max(1, int(decision.retry_after))
    return _error(
        429,
        "Too Many Requests",
        "You have reached the limit of your API requests (60 requests per minute). "
        f"Retry after {retry_after} seconds.",
        {"Retry-After": str(retry_after)},
    )


# --- state --------------------------------------------------------------------------------------


def synthetic_to_customer(person: Synthetic) -> tuple[Customer, dict[str, Any]]:
    """A synthetic person as the canonical customer RCI would report, and RCI's own times."""
    has_orders = bool(person.orders)
    remote_updated = person.last_order_at or person.created_at
    customer = Customer(
        email=person.email,
        external_ids={mapping.SERVICE: person.id},
        first_name=person.first_name,
        last_name=person.last_name,
        consent=Consent(email=person.email_opt_in, sms=person.sms_opt_in),
        lifetime_value=Money(person.ltv_cents, person.currency),
        order_count=person.order_count,
        last_order_at=person.last_order_at,
        recency_score=person.recency,
        frequency_score=person.frequency,
        monetary_score=person.monetary,
        rfm=person.rfm,
        grade=person.grade,
        segments=list(person.segments),
        cohort=person.cohort if has_orders else None,
        acquisition_source=person.acquisition_source if has_orders else None,
        redacted_at=person.redacted_at,
        created_at=person.created_at,
        updated_at=remote_updated,
    )
    times = {
        "rci_created_at": person.created_at + timedelta(hours=1),
        "rci_updated_at": remote_updated + timedelta(hours=2),
    }
    return customer, times


class CustomerStore:
    """The customers of one account: id -> attributes, ids kept sorted for keyset pages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attributes: dict[str, dict[str, Any]] = {}
        self._ids: list[str] = []

    def replace(self, resources: Iterable[tuple[str, dict[str, Any]]]) -> None:
        attributes = dict(resources)
        with self._lock:
            self._attributes = attributes
            self._ids = sorted(attributes)

    def put(self, rci_id: str, attributes: dict[str, Any]) -> None:
        with self._lock:
            if rci_id not in self._attributes:
                bisect.insort(self._ids, rci_id)
            self._attributes[rci_id] = attributes

    def get(self, rci_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._attributes.get(rci_id)

    def page(self, after: str | None, size: int) -> tuple[list[tuple[str, dict]], bool]:
        """Up to ``size`` customers with ids after ``after``, and whether more follow."""
        with self._lock:
            start = 0 if after is None else bisect.bisect_right(self._ids, after)
            ids = self._ids[start:start + size + 1]
            return [(i, self._attributes[i]) for i in ids[:size]], len(ids) > size

    def __len__(self) -> int:
        return len(self._attributes)


def seeded(n: int, seed: int = 0) -> Iterable[tuple[str, dict[str, Any]]]:
    """``n`` synthetic customers as (id, attributes)."""
    for person in synthetic_customers(n, seed=seed):
        customer, times = synthetic_to_customer(person)
        yield person.id, mapping.customer_attributes(customer, **times)


class Cursors:
    """Opaque, signed keyset cursors: base64url(JSON {"after": id}) + "." + HMAC."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def encode(self, after: str) -> str:
        payload = base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()
        payload = payload.rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    def decode(self, cursor: str) -> str:
        """The id a cursor continues after; ``ValueError`` if it is malformed or tampered."""
        payload, _, signature = cursor.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise ValueError("the cursor is invalid")
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            after = json.loads(raw)["after"]
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise ValueError("the cursor is invalid") from None
        if not isinstance(after, str):
            raise ValueError("the cursor is invalid")
        return after


class RciState:
    """The service's own state, on ``app.extensions["rci"]``."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = CustomerStore()
        self.cursors = Cursors()
        self.page_size = PAGE_SIZE
        self.reset()

    def reset(self) -> None:
        self.store.replace(seeded(self.config.seed_customers))
        self.page_size = PAGE_SIZE


# --- the service --------------------------------------------------------------------------------


def _base_url() -> str:
    return request.host_url.rstrip("/") + BASE_PATH


def _resource(rci_id: str, attributes: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "type": wire.CUSTOMER_TYPE,
        "id": rci_id,
        "attributes": attributes,
        "links": {"self": f"{base}/customers/{quote(rci_id, safe='')}"},
    }


def _authorized(token: str) -> Response | None:
    """None when the request carries ``Bearer <token>``, else the 401 answer."""
    presented = CREDENTIAL.read(request)
    if presented is not None and hmac.compare_digest(presented.encode(), token.encode()):
        return None
    scheme, _, rest = request.headers.get("Authorization", "").partition(" ")
    challenge = 'Bearer realm="api"'
    if scheme.lower() == "bearer" and rest.strip():  # a token was presented, and is refused
        challenge += ', error="invalid_token"'
    return _error(401, "Unauthorized", UNAUTHORIZED_DETAIL, {"WWW-Authenticate": challenge})


def _method_not_allowed() -> Response:
    return _error(
        405,
        "Method Not Allowed",
        f"{request.method} is not allowed here; the API is read only.",
        {"Allow": "GET, HEAD"},
    )


def _service_blueprint(state: RciState) -> Blueprint:
    bp = Blueprint("rci", __name__, url_prefix=BASE_PATH)

    @bp.before_request
    def _auth() -> Response | None:
        return _authorized(state.config.api_key)

    @bp.route("/customers", methods=SERVICE_METHODS)
    def list_customers() -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed()
        try:
            query = wire.LIST_QUERY.load(request.args.to_dict())
        except ValidationError as exc:
            return _error(422, "Unprocessable Entity", _first_message(exc.messages))
        after = None
        if "cursor" in query:
            try:
                after = state.cursors.decode(query["cursor"])
            except ValueError:
                return _error(
                    422,
                    "Unprocessable Entity",
                    "The page[cursor] parameter is invalid. Use the cursor from links.next "
                    "unmodified.",
                )
        base = _base_url()
        rows, more = state.store.page(after, state.page_size)
        links = {"first": f"{base}/customers"}
        if more:
            links["next"] = (
                f"{base}/customers?page%5Bcursor%5D={state.cursors.encode(rows[-1][0])}"
            )
        return _document(
            {
                "links": links,
                "data": [_resource(i, a, base) for i, a in rows],
                "jsonapi": dict(wire.JSONAPI),
            }
        )

    @bp.route("/customers/<path:rci_id>", methods=SERVICE_METHODS)
    def view_customer(rci_id: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed()
        attributes = state.store.get(rci_id)
        if attributes is None:
            return _error(404, "Not Found", NOT_FOUND_DETAIL)
        return _document(
            {"data": _resource(rci_id, attributes, _base_url()), "jsonapi": dict(wire.JSONAPI)}
        )

    @bp.route("/", defaults={"rest": ""}, methods=SERVICE_METHODS)
    @bp.route("/<path:rest>", methods=SERVICE_METHODS)
    def unknown(rest: str) -> Response:
        return _error(404, "Not Found", "No such resource.")

    return bp


def _first_message(messages: Any) -> str:
    if isinstance(messages, dict):
        for key, value in messages.items():
            return f"{key}: {_first_message(value)}"
    if isinstance(messages, list) and messages:
        return _first_message(messages[0])
    return str(messages)


# --- control ------------------------------------------------------------------------------------


def _control_blueprint(state: RciState) -> Blueprint:
    bp = Blueprint("rci_control", __name__, url_prefix="/_sandbox")

    @bp.post("/seed")
    def seed() -> Response | tuple[Response, int]:
        try:
            body = parse_json_body(request.get_data())
        except BodyError as exc:
            return _json({"error": f"expected a JSON object: {exc.message}"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "expected a JSON object"}, 400)
        n, seed_value = body.get("customers", 0), body.get("seed", 0)
        records = body.get("records", [])
        if (isinstance(n, bool) or not isinstance(n, int) or n < 0
                or isinstance(seed_value, bool) or not isinstance(seed_value, int)
                or not isinstance(records, list)):
            return _json({"error": "customers and seed must be non-negative integers, "
                                   "records a list of customer resources"}, 400)
        loaded = []
        for index, record in enumerate(records):
            if isinstance(record, dict) and "links" not in record:
                record = {**record, "links": {"self": f"{_base_url()}/customers/x"}}
            try:
                resource = wire.CUSTOMER_RESOURCE.load(record)
            except ValidationError as exc:
                return _json({"error": "invalid record", "errors": {str(index): exc.messages}},
                             400)
            loaded.append(resource)
        state.store.replace(seeded(n, seed_value))
        for resource in loaded:
            state.store.put(resource["id"], resource["attributes"])
        return _json({"customers": len(state.store)}, 200)

    @bp.post("/page-size")
    def page_size() -> Response | tuple[Response, int]:
        try:
            body = parse_json_body(request.get_data())
        except BodyError as exc:
            return _json({"error": f"expected a JSON object: {exc.message}"}, 400)
        size = body.get("size") if isinstance(body, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
            return _json({"error": "size must be an integer from 1 to 1000"}, 400)
        state.page_size = size
        return _json({"size": size}, 200)

    return bp


def _in_api(path: str) -> bool:
    """Whether ``path`` is under the API's base (``/api/v1``)."""
    return path == BASE_PATH or path.startswith(BASE_PATH + "/")


def _json(body: Any, status: int) -> tuple[Response, int]:
    return Response(json.dumps(body), mimetype="application/json"), status


# --- the app ------------------------------------------------------------------------------------


def create_sandbox(config: SandboxConfig) -> Flask:
    """The RCI sandbox app for ``config`` (its ``api_key`` is the one accepted token)."""
    state = RciState(config)

    def record_lookup(kind: str, key: str) -> dict | None:
        attributes = state.store.get(key) if kind == "customers" else None
        return None if attributes is None else _resource(key, attributes, _base_url())

    app = build_sandbox(
        "rci",
        config,
        record_counts=lambda: {"customers": len(state.store)},
        record_lookup=record_lookup,
        rate_limited=rate_limited,
        limits=wire.LIMITS,
        on_reset=state.reset,
        credential=CREDENTIAL,
    )
    app.extensions["rci"] = state
    app.register_blueprint(_service_blueprint(state))
    app.register_blueprint(_control_blueprint(state))

    @app.errorhandler(405)
    def _405(exc: Exception) -> Any:  # e.g. a method Flask does not route at all
        return _method_not_allowed() if request.path.startswith(BASE_PATH) else exc

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if _in_api(request.path):
            return _error(status, exc.name, exc.description or exc.name)
        # Outside the API (e.g. a base URL missing /v1) the answer must not look like the API's,
        # or a client could not tell a wrong base URL from an unknown id: plain JSON.
        return _json({"error": exc.description or exc.name}, status)

    @app.errorhandler(Exception)
    def _crash(_: Exception) -> Any:
        if _in_api(request.path):
            return _error(500, "Internal Server Error",
                          "The server could not answer the request.")
        return _json({"error": "The server could not answer the request."}, 500)

    return app


SANDBOX = SandboxSpec(
    name="rci",
    base_path=BASE_PATH,
    create=create_sandbox,
    limits=wire.LIMITS,
    description="Repeat Customer Insights: JSON:API customers, cursor pages, Bearer, 60/min",
    credential=CREDENTIAL,
)
