"""Rekindle as its reference describes it: a Flask app on the shared sandbox kit.

Serves, under ``BASE_PATH`` (``/api/zapier``), the four documented endpoints:

* ``GET /triggers/customer-status``: at most 10 customers whose status is ``at_risk``,
  ``lapsed`` or ``lost``, newest ``updated_at`` first;
* ``GET /triggers/customer-returned``: at most 10 customers with ``returned_at`` set, newest
  ``returned_at`` first;
* ``POST /actions/update-customer``: upsert by email, re-scored at once, answering
  ``{"customer": {..., "returned": bool}}``;
* ``GET /actions/find-customer?email=``: a one-element array, or 404
  ``{"error": "Customer not found"}``.

Auth is ``Authorization: Bearer <key>`` (:data:`CREDENTIAL`; the scheme is matched
case-insensitively, as RFC 9110 says of every auth scheme): exactly the configured key passes; a
missing or other key is 401; with ``no_api_plan`` the right key is 403 (the plan lacks API
access). The kit enforces 120 requests per 60 s per key (sliding window) before auth, keyed on
that key alone; requests without the right key share one window per client address. A 429
carries ``Retry-After: 30`` and the reference's body (a test that sets the fault knob
``retry_after`` gets that value instead, on injected and real 429s alike). Every error body is
``{"error": "..."}``.

Sandbox control besides the kit's: ``POST /_sandbox/winback {"email": ...}`` stands for
Rekindle's own messaging: it records that a win-back message was sent now (409 unless the customer
is lapsed or lost, 404 for an unknown one). ``POST /_sandbox/seed {"customers": n, "seed": s}``
adds synthetic customers. ``GET /_sandbox/records/customers/<email>`` shows a stored customer.

Choices where the reference is silent (NOTES.md covers the rest):

* Scoring (``score``), on the sandbox clock: a customer's expected gap between purchases is
  ``max(30, 90 - 4 * purchase_count)`` days (frequent buyers are expected back sooner). With
  ``r`` = days since ``last_purchase_date`` / expected gap, the status is ``active`` below 1.5,
  ``at_risk`` below 3, ``lapsed`` below 6, else ``lost``. The engagement score is
  ``round(80 * max(0, 1 - r / 4) + 2 * min(purchase_count, 10))`` (falls with time since the
  last purchase, rises with the count), 0..100. A customer with no ``last_purchase_date`` is
  ``active`` with ``r`` taken as 2 for the score (nothing to judge yet). This reproduces the
  reference's two examples' statuses (lapsed; active).
* Re-scoring: each customer at once on upsert; everyone once a day (at the first request of a
  new UTC day on the sandbox clock). A re-score that changes status or score stamps
  ``updated_at`` with now.
* Upsert: emails match case-insensitively and are kept lower-cased. Optional fields left out
  keep their stored values; ``null`` clears them. Unknown fields are refused (400 naming them),
  as are strings for numbers and a blank name. Create and update both answer 200. Ids are UUIDs
  derived from the email (stable across resets). A refused update stores nothing, and an update
  is stored only once its answer has been built.
* Bounds (the reference names none; these are what the sandbox holds): ``total_spent`` from 0
  to below 10^15 with at most 4 decimal places (:data:`MAX_TOTAL_SPENT`,
  :data:`TOTAL_SPENT_PLACES`); ``purchase_count`` a whole number from 0 to 2^31 - 1
  (:data:`MAX_PURCHASE_COUNT`). Outside them (``1e30``, ``-1``, ``1e-9``) is a 400 naming the
  field.
* Bodies are read by the kit's bounded parser: JSON nested deeper than 64 levels, ``NaN`` /
  ``Infinity`` and anything that is not JSON are a 400 ``{"error": "Missing or invalid
  parameter. ..."}``, never a 500.
* Win-back attribution: ``returned`` is true, and ``returned_at`` set to now, when an upsert shows
  a new purchase (a later ``last_purchase_date``, or a higher ``purchase_count``) from a customer
  with an open win-back (sent while lapsed or lost). A ``last_purchase_date`` sent that is before
  the day the message was sent is not a return (that purchase preceded the message). A return
  closes the win-back; there is no attribution window.
* ``find-customer`` items have no ``phone`` (exactly as the reference's example); trigger items
  and update-customer's answer do.
* Money: ``total_spent`` is kept exactly as sent (a JSON number, never via float) and printed
  with at least two decimals as in the reference (``4200`` -> ``4200.00``, ``1.234`` stays); the
  sandbox, like the API, does not know the currency. Synthetic customers' cents become two decimals.
* Seeding (``seed_customers``): the kit's synthetic people except the redacted ones (Rekindle
  would hold no PII for them); about a third of the lapsed or lost get an open win-back, and
  about a third of the active repeat buyers an earlier return. ``/_sandbox/reset`` drops every
  customer and re-seeds the configured number.
* Unknown paths answer 404, wrong methods 405, unexpected failures 500, all ``{"error": ...}``.
"""

from __future__ import annotations

import hmac
import math
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from connectors.base import Limit
from connectors.sandbox_kit import (
    BEARER,
    BodyError,
    SandboxConfig,
    SandboxSpec,
    build_sandbox,
    kit_state,
    parse_json_body,
    synthetic_customers,
)
from connectors.sandbox_kit.ratelimit import RateDecision

from . import wire

BASE_PATH = "/api/zapier"
LIMITS = (Limit(120, 60),)
#: How Rekindle reads its key: ``Authorization: Bearer <key>``.
CREDENTIAL = BEARER
#: The sandbox's bounds on numbers (Rekindle documents none; see the module docstring).
MAX_TOTAL_SPENT = Decimal(10) ** 15  # exclusive
TOTAL_SPENT_PLACES = 4
MAX_PURCHASE_COUNT = 2**31 - 1
_CENTS = Decimal("0.01")
_ID_NAMESPACE = uuid.UUID("5d1c1e9a-6f0b-4c8e-9a57-2b0e3f6d7c41")

ERROR_MISSING_KEY = "Invalid or missing API key. Send Authorization: Bearer <your key>."
ERROR_BAD_KEY = "Invalid or missing API key. Regenerate it from Settings if needed."
ERROR_PLAN = "Feature not available on your current plan. API access requires the Scale plan."


# --- scoring --------------------------------------------------------------------------------


def expected_gap_days(purchase_count: int | None) -> int:
    """How many days Rekindle expects between a customer's purchases."""
    return max(30, 90 - 4 * (purchase_count or 0))


def score(last_purchase: date | None, purchase_count: int | None, today: date) -> tuple[str, int]:
    """(status, engagement_score) for a customer on ``today`` (the rule in the docstring)."""
    count = purchase_count or 0
    if last_purchase is None:
        status, ratio = "active", 2.0
    else:
        ratio = max(0, (today - last_purchase).days) / expected_gap_days(count)
        status = ("active" if ratio < 1.5 else "at_risk" if ratio < 3
                  else "lapsed" if ratio < 6 else "lost")
    value = round(80 * max(0.0, 1 - ratio / 4) + 2 * min(count, 10))
    return status, max(0, min(100, value))


# --- state ----------------------------------------------------------------------------------


@dataclass
class StoredCustomer:
    id: str
    name: str
    email: str
    phone: str | None = None
    last_purchase_date: date | None = None
    total_spent: Decimal | None = None
    purchase_count: int | None = None
    status: str = "active"
    engagement_score: int = 0
    returned_at: datetime | None = None
    updated_at: datetime | None = None
    winback_sent_at: datetime | None = None
    seq: int = 0  # breaks ties between equal timestamps: later change first

    def item(self, *, phone: bool = True) -> dict[str, Any]:
        """The reference's customer item (trigger or find-customer)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "email": self.email}
        if phone:
            out["phone"] = self.phone
        out.update(
            status=self.status,
            engagement_score=self.engagement_score,
            last_purchase_date=_date(self.last_purchase_date),
            total_spent=_amount(self.total_spent),
            purchase_count=self.purchase_count,
            returned_at=_stamp(self.returned_at),
            updated_at=_stamp(self.updated_at),
        )
        return out

    def answer(self, returned: bool) -> dict[str, Any]:
        """update-customer's ``customer``: ``returned`` in place of ``returned_at``."""
        out = self.item()
        del out["returned_at"]
        out["returned"] = returned
        out["updated_at"] = out.pop("updated_at")
        return out


def _amount(value: Decimal | None) -> Decimal | None:
    """At least two decimal places, as the reference prints them; never rounded."""
    if value is None or value.as_tuple().exponent <= -2:
        return value
    return value.quantize(_CENTS)


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


class NotEligible(Exception):
    """A win-back for a customer who is not lapsed or lost."""


# --- what the sandbox accepts ---------------------------------------------------------------

_PLACES = Decimal(1).scaleb(-TOTAL_SPENT_PLACES)
_AMOUNT_RANGE = (f"Must be from 0 to less than 10^15, with at most {TOTAL_SPENT_PLACES} "
                 "decimal places.")
_COUNT_RANGE = f"Must be a whole number from 0 to {MAX_PURCHASE_COUNT}."


class _HeldAmount(wire.JsonNumber):
    """``total_spent`` within the bounds the sandbox holds."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        number = super()._deserialize(value, attr, data, **kwargs)
        # The magnitude first: quantize() below is exact only for numbers within the bound.
        if not 0 <= number < MAX_TOTAL_SPENT or number.quantize(_PLACES) != number:
            raise wire.ValidationError(_AMOUNT_RANGE)
        return number


class _HeldCount(wire.StrictInteger):
    """``purchase_count`` within the bounds the sandbox holds; ``1e30`` (a Decimal when read)
    is refused before any arithmetic on it."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, (float, Decimal)) and not (
                math.isfinite(value) and 0 <= value <= MAX_PURCHASE_COUNT):
            raise wire.ValidationError(_COUNT_RANGE)
        number = super()._validated(value)
        if not 0 <= number <= MAX_PURCHASE_COUNT:
            raise wire.ValidationError(_COUNT_RANGE)
        return number


class HeldUpdateRequest(wire.UpdateCustomerRequest):
    """The reference's update-customer body, with numbers the sandbox can hold."""

    total_spent = _HeldAmount(allow_none=True)
    purchase_count = _HeldCount(allow_none=True)


class Rekindle:
    """The service's state: customers by (lower-cased) email, on the sandbox clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.customers: dict[str, StoredCustomer] = {}
        self.lock = threading.RLock()
        self._seq = 0
        self._scored_day: date | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock.now()), tz=timezone.utc)

    def _touch(self, customer: StoredCustomer, now: datetime) -> None:
        self._seq += 1
        customer.seq = self._seq
        customer.updated_at = now

    def _rescore(self, customer: StoredCustomer, now: datetime) -> bool:
        status, value = score(customer.last_purchase_date, customer.purchase_count, now.date())
        if (status, value) == (customer.status, customer.engagement_score):
            return False
        customer.status, customer.engagement_score = status, value
        return True

    def daily_rescore(self) -> None:
        """Re-score everyone at the first request of a new UTC day."""
        with self.lock:
            now = self.now()
            if self._scored_day == now.date():
                return
            self._scored_day = now.date()
            for customer in self.customers.values():
                if self._rescore(customer, now):
                    self._touch(customer, now)

    def upsert(self, body: dict[str, Any]) -> tuple[StoredCustomer, bool, dict[str, Any]]:
        """Create or update by email (``body`` already validated); (customer, returned, the
        answer's ``customer``). The change is made on a copy and stored only once the answer
        is built, so a failure on the way stores nothing."""
        with self.lock:
            now = self.now()
            key = body["email"].strip().lower()
            stored = self.customers.get(key)
            if stored is None:
                customer = StoredCustomer(id=str(uuid.uuid5(_ID_NAMESPACE, key)), name="",
                                          email=key)
                previous_date, previous_count = None, None
                returned = False
            else:
                customer = replace(stored)
                previous_date, previous_count = (customer.last_purchase_date,
                                                 customer.purchase_count)
                returned = None
            customer.name = body["name"].strip()
            for field_name in ("phone", "last_purchase_date", "total_spent", "purchase_count"):
                if field_name in body:
                    setattr(customer, field_name, body[field_name])
            if returned is None:
                returned = self._is_return(customer, body, previous_date, previous_count)
            if returned:
                customer.returned_at = now
                customer.winback_sent_at = None
            self._rescore(customer, now)
            seq = self._seq
            self._touch(customer, now)
            try:
                answer = customer.answer(returned)
            except Exception:
                self._seq = seq
                raise
            self.customers[key] = customer
            return customer, returned, answer

    @staticmethod
    def _is_return(customer: StoredCustomer, body: dict[str, Any],
                   previous_date: date | None, previous_count: int | None) -> bool:
        sent = customer.winback_sent_at
        if sent is None:
            return False
        new_date = body.get("last_purchase_date")
        new_count = body.get("purchase_count")
        if new_date is not None and new_date < sent.date():
            return False  # that purchase came before the message
        later = new_date is not None and (previous_date is None or new_date > previous_date)
        more = new_count is not None and new_count > (previous_count or 0)
        return later or more

    def winback(self, email: str) -> StoredCustomer:
        """Record that a win-back message went to ``email`` now."""
        self.daily_rescore()
        with self.lock:
            customer = self.customers.get(email.strip().lower())
            if customer is None:
                raise KeyError(email)
            if customer.status not in ("lapsed", "lost"):
                raise NotEligible(customer.status)
            customer.winback_sent_at = self.now()
            return customer

    def attention(self) -> list[StoredCustomer]:
        with self.lock:
            hits = [c for c in self.customers.values() if c.status in wire.ATTENTION_STATUSES]
            hits.sort(key=lambda c: (c.updated_at, c.seq), reverse=True)
            return hits[: wire.TRIGGER_LIMIT]

    def returned(self) -> list[StoredCustomer]:
        with self.lock:
            hits = [c for c in self.customers.values() if c.returned_at is not None]
            hits.sort(key=lambda c: (c.returned_at, c.seq), reverse=True)
            return hits[: wire.TRIGGER_LIMIT]

    def find(self, email: str) -> StoredCustomer | None:
        with self.lock:
            return self.customers.get(email.strip().lower())

    def seed(self, n: int, seed: int = 0) -> int:
        """Add ``n`` synthetic customers (skipping the redacted); how many were added."""
        with self.lock:
            now = self.now()
            added = 0
            for person in synthetic_customers(n, seed=seed, now=now):
                if person.redacted_at is not None:
                    continue
                key = person.email.lower()
                last = person.last_order_at
                customer = StoredCustomer(
                    id=str(uuid.uuid5(_ID_NAMESPACE, key)),
                    name=person.name,
                    email=key,
                    phone=person.phone,
                    last_purchase_date=last.date() if last else None,
                    total_spent=Decimal(person.ltv_cents).scaleb(-2) if last else None,
                    purchase_count=person.order_count,
                )
                self._rescore(customer, now)
                self._touch(customer, now - timedelta(minutes=person.index % 1440))
                if customer.status in ("lapsed", "lost") and person.index % 3 == 0:
                    customer.winback_sent_at = now - timedelta(days=1 + person.index % 20)
                elif (customer.status == "active" and last is not None
                      and person.order_count >= 2 and person.index % 3 == 0):
                    customer.returned_at = last + timedelta(hours=2)
                self.customers[key] = customer
                added += 1
            self._scored_day = now.date()
            return added

    def clear(self) -> None:
        with self.lock:
            self.customers.clear()
            self._scored_day = None


# --- HTTP -----------------------------------------------------------------------------------


class _ExactJSON(DefaultJSONProvider):
    """Writes ``Decimal`` as exact JSON numbers (Flask's default writes them as strings)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return wire.dumps(obj)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = current_app.json.response({"error": message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _json(payload: Any, status: int = 200) -> Response:
    response = current_app.json.response(payload)
    response.status_code = status
    return response


def _rate_limited(decision: RateDecision) -> Response:
    """The reference's 429: ``Retry-After: 30`` (or the fault knob's ``retry_after`` when a test
    set one), and its body."""
    chosen = kit_state(current_app).faults.settings.retry_after
    seconds = wire.RETRY_AFTER_SECONDS if chosen is None else chosen
    return _error(429, wire.ERROR_TOO_MANY, {"Retry-After": str(seconds)})


def _json_body() -> Any:
    """The request body's JSON value (an empty body reads as null); BodyError otherwise."""
    return parse_json_body(request.get_data() or b"null", exact=True)


def _body_error(exc: BodyError) -> Response:
    if exc.reason == BodyError.TOO_DEEP:
        return _error(400, f"Missing or invalid parameter. The body is {exc.message}.")
    return _error(400, "Missing or invalid parameter. The body must be JSON.")


def _blueprint(service: Rekindle, config: SandboxConfig) -> Blueprint:
    api = Blueprint("rekindle", __name__, url_prefix=BASE_PATH)
    expected = config.api_key.encode()
    schema = HeldUpdateRequest()

    @api.before_request
    def _authenticate() -> Response | None:
        presented = CREDENTIAL.read(request)
        if presented is None:
            return _error(401, ERROR_MISSING_KEY)
        if not hmac.compare_digest(presented.encode(), expected):
            return _error(401, ERROR_BAD_KEY)
        if config.no_api_plan:
            return _error(403, ERROR_PLAN)
        service.daily_rescore()
        return None

    @api.get("/triggers/customer-status")
    def customer_status() -> Response:
        return _json([c.item() for c in service.attention()])

    @api.get("/triggers/customer-returned")
    def customer_returned() -> Response:
        return _json([c.item() for c in service.returned()])

    @api.post("/actions/update-customer")
    def update_customer() -> Response:
        try:
            raw = _json_body()
        except BodyError as exc:
            return _body_error(exc)
        if not isinstance(raw, dict):
            return _error(400, "Missing or invalid parameter. The body must be a JSON object.")
        try:
            body = schema.load(raw)
        except wire.ValidationError as exc:
            return _error(400, wire.error_message(exc.messages))
        rejected = kit_state(current_app).faults.rejects(body["email"].strip().lower())
        if rejected:
            return _error(400, rejected)
        _, _, answer = service.upsert(body)
        return _json({"customer": answer})

    @api.get("/actions/find-customer")
    def find_customer() -> Response:
        try:
            query = wire.FindCustomerQuery().load(request.args.to_dict())
        except wire.ValidationError as exc:
            return _error(400, wire.error_message(exc.messages))
        customer = service.find(query["email"])
        if customer is None:
            return _error(404, wire.ERROR_NOT_FOUND)
        return _json([customer.item(phone=False)])

    return api


def _control(service: Rekindle) -> Blueprint:
    control = Blueprint("rekindle_control", __name__, url_prefix="/_sandbox")

    @control.post("/winback")
    def winback() -> Response:
        try:
            body = _json_body()
        except BodyError as exc:
            return _body_error(exc)
        email = body.get("email") if isinstance(body, dict) else None
        if not isinstance(email, str) or not email.strip():
            return _error(400, "winback takes a JSON object with an email")
        try:
            customer = service.winback(email)
        except KeyError:
            return _error(404, wire.ERROR_NOT_FOUND)
        except NotEligible as exc:
            return _error(409, f"Win-back messages go only to lapsed or lost customers; this "
                               f"customer is {exc.args[0]}.")
        return _json({"email": customer.email, "status": customer.status,
                      "winback_sent_at": _stamp(customer.winback_sent_at)})

    @control.post("/seed")
    def seed() -> Response:
        try:
            body = _json_body() or {}
        except BodyError as exc:
            return _body_error(exc)
        if not isinstance(body, dict):
            return _error(400, "seed takes {\"customers\": n, \"seed\": s} (integers)")
        n, seed_value = body.get("customers", 0), body.get("seed", 0)
        if (isinstance(n, bool) or not isinstance(n, int) or n < 0
                or isinstance(seed_value, bool) or not isinstance(seed_value, int)):
            return _error(400, "seed takes {\"customers\": n, \"seed\": s} (integers)")
        return _json({"added": service.seed(n, seed_value)})

    return control


def create_sandbox(config: SandboxConfig) -> Flask:
    """The Rekindle sandbox app for ``config`` (serve it with ``sandbox_kit.start_sandbox``)."""
    holder: dict[str, Rekindle] = {}

    def record_counts() -> dict[str, int]:
        return {"customers": len(holder["service"].customers)}

    def record_lookup(kind: str, key: str) -> dict | None:
        if kind != "customers":
            return None
        customer = holder["service"].find(key)
        if customer is None:
            return None
        out = customer.item()
        out["winback_sent_at"] = _stamp(customer.winback_sent_at)
        return out

    def on_reset() -> None:
        service = holder["service"]
        service.clear()
        if config.seed_customers:
            service.seed(config.seed_customers)

    app = build_sandbox(
        "rekindle", config, record_counts=record_counts, record_lookup=record_lookup,
        rate_limited=_rate_limited, limits=LIMITS, on_reset=on_reset, credential=CREDENTIAL,
    )
    app.json = _ExactJSON(app)
    app.json.sort_keys = False
    service = Rekindle(kit_state(app).clock)
    holder["service"] = service
    app.extensions["rekindle"] = service
    if config.seed_customers:
        service.seed(config.seed_customers)
    app.register_blueprint(_blueprint(service, config))
    app.register_blueprint(_control(service))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 500, exc.description if exc.code != 404 else "Not found")

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        return _error(500, "Server error. Contact support@rekindle.business if this persists.")

    return app


SANDBOX = SandboxSpec(
    name="rekindle",
    base_path=BASE_PATH,
    create=create_sandbox,
    limits=LIMITS,
    description="Rekindle's Zapier API: two polling triggers, update-customer, find-customer",
    credential=CREDENTIAL,
)
