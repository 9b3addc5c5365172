"""A verified fake of Rejoiner's REST API (v1), as ``specs/rejoiner-api.txt`` and NOTES describe it.

Every documented endpoint lives under ``/api/v1/<site_id>/`` (:data:`BASE_PATH`), so a client's
base URL differs from production only in scheme, host and port::

    GET  ping/                      {"status": "success"} (the way to test a key)
    POST customer/convert/          convert the customer's latest session (cart_data, cart_items)
    POST customer/cancel/           stop the customer's active journeys
    POST customer/unsubscribe/      unsubscribe the customer from Rejoiner's email
    POST customer/opt_in/           record explicit consent (extras kept, as strings)
    GET  customers/<id or email>/   the customer profile
    PUT  customers/<id or email>/   update it
    POST customers/                 create it

Rejoiner is a Django REST Framework API; where the reference is silent this sandbox answers as
DRF does, and these are its choices:

Auth (``Authorization: Rejoiner <api_key>``, :data:`CREDENTIAL`, like DRF's
TokenAuthentication with that keyword, whose keyword match is case-insensitive), every failure a
401 with ``WWW-Authenticate: Rejoiner``:

- no header, or another scheme: ``{"detail": "Authentication credentials were not provided."}``
- ``Rejoiner`` alone: ``{"detail": "Invalid token header. No credentials provided."}``
- a key with spaces: ``{"detail": "Invalid token header. Token string should not contain
  spaces."}``
- any key but the configured one: ``{"detail": "Invalid token."}``

Site id: the sandbox serves exactly ``SandboxConfig.site_id`` (``site_sandbox`` when none is
given, e.g. ``python app.py sandbox rejoiner`` without ``--site-id``). A request with the right
key for any other site id answers 404 ``{"detail": "Not found."}`` (the key is checked first,
so a wrong key is a 401 whatever the site).

Errors: 400 bodies are DRF's field errors, ``{"field": ["message"]}`` (``non_field_errors`` for
the body as a whole; nested cart items as a list with one entry per item, ``{}`` for a valid
one); a body that is not JSON is ``{"detail": "JSON parse error - <reason>"}``, and so (read by
the kit's bounded parser) is JSON nested deeper than 64 levels and ``NaN`` / ``Infinity`` /
a number beyond a float's range (DRF's parser refuses the constants with the same words: "Out of
range float values are not JSON compliant"), so nothing stored can be answered as a bare
``NaN``: every answer is RFC 8259 JSON (written with ``allow_nan=False``). An unexpected failure
is a 500 ``{"detail": "A server error occurred."}``. 404 is
``{"detail": "Not found."}`` (also for an unknown path under the base, and for a path without its
trailing slash: Rejoiner's paths end in ``/``); a wrong method is 405
``{"detail": "Method \\"X\\" not allowed."}``. The messages: ``"This field is required."``,
``'"x" is not a valid choice.'`` (gender not ``m``/``f``), ``"Ensure this field has no more than 2
characters."`` (language), ``"Date has wrong format. Use one of these formats instead:
YYYY-MM-DD."`` (birthdate), ``"Enter a valid email address."``, ``"customer with this email
already exists."`` (POST create for an existing email, or PUT moving to another customer's email).

Rate limit (pinned by NOTES: the reference documents none): 10 requests per second per key by
default, over a sliding window (the kit's limiter, keyed on the key as read above and nothing
else; requests without the right key share one window per client address);
``SandboxConfig.limits`` overrides it. Above it:
429 ``{"detail": "Request was throttled. Expected available in N seconds."}`` with
``Retry-After: N`` (DRF's throttle answer). No rate headers on other answers.

Semantics:

- Emails are matched case-insensitively and stored lower-cased. A customer's id is assigned at
  creation (16 hex characters derived from the site and the email) and never changes.
- ``convert``, ``cancel``, ``unsubscribe``, ``opt_in`` for an email never seen answer 200 and
  create the customer record (NOTES). Each answers ``{"status": "success"}`` (the reference shows
  no answer body; ping's shape is used).
- ``convert`` has no idempotency key: every convert is recorded (a resend converts twice); it also
  ends active journeys, as a purchase does. Extras on cart and items are kept, as strings, under
  their ``metadata``.
- ``opt_in`` sets ``is_opted_in``, ``opt_in_date`` (now) and ``opt_in_info`` (the extras, as
  strings), and clears an unsubscribe: explicit consent re-subscribes. ``unsubscribe`` sets
  ``is_unsubscribed`` and ``unsubscribe_date`` (the first time only) and leaves the opt-in
  record as history.
- ``POST customers/`` answers 200 with the stored profile (the reference lists no 201).
- ``PUT`` needs ``email`` (as documented); a field left out keeps its value; ``tags`` and
  ``metadata`` when sent replace the whole array / object. Read-only profile fields (``id``
  and the consent fields) are ignored when sent, as DRF ignores read-only fields, so a profile
  read back can be written back whole. ``gender`` also takes ``""`` (unset, as answered).
  ``null`` for a string stores ``""``.
- Datetimes are UTC without an offset (``2018-05-25T05:35:31.803626``), as in the reference.
- The reference documents no list endpoint, so there is no pagination here (NOTES' envelope
  ``{count, next, previous, results}`` has nothing to apply to).

Faults: ``reject_keys`` (by email) makes any write for that email a 400
``{"email": [message]}``.

``/_sandbox/records/customers/<id or email>`` gives the stored profile; ``/_sandbox/records/
activity/<email>`` gives ``{"email", "conversions": [loaded convert bodies], "cancels": n}``.
``/_sandbox/reset`` drops every record and seeds again. Seeding (``seed_customers``) turns the
kit's synthetic people into profiles (names, phone, timezone, language, city, country, shop tags,
metadata with their RFM figures), consent (opted in, unsubscribed or neither), their orders as
conversions, and the few redacted ones as unsubscribed profiles with their PII blanked.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, Request, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import ValidationError as SchemaError
from werkzeug.exceptions import HTTPException

from connectors.rejoiner import LIMITS as PINNED_LIMITS
from connectors.rejoiner import wire
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

NAME = "rejoiner"
#: Where the API lives; ``<site_id>`` is the connection's site id.
BASE_PATH = "/api/v1/<site_id>/"
#: Pinned by NOTES.md (the reference documents no limit): 10 requests a second per key.
LIMITS = PINNED_LIMITS
DEFAULT_SITE_ID = "site_sandbox"
#: How Rejoiner reads its key: ``Authorization: Rejoiner <key>``.
KEYWORD = "Rejoiner"
CREDENTIAL = HeaderCredential("Authorization", KEYWORD)

_NOT_FOUND = {"detail": "Not found."}
_EXISTS = "customer with this email already exists."


def base_path(site_id: str) -> str:
    """The API's base path for one site."""
    return f"/api/v1/{site_id}/"


def _now_text(clock_seconds: float) -> str:
    """A service-clock time as Rejoiner writes it: UTC, no offset, microseconds."""
    moment = datetime.fromtimestamp(clock_seconds, timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


class _StrictJSON(DefaultJSONProvider):
    """Flask's JSON, but refusing to write NaN or an infinity (RFC 8259 has neither)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs["allow_nan"] = False
        return super().dumps(obj, **kwargs)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _blank_profile(customer_id: str, email: str) -> dict[str, Any]:
    profile: dict[str, Any] = {"id": customer_id, "email": email}
    for name in ("first_name", "last_name", "phone", "timezone"):
        profile[name] = ""
    profile["age"] = None
    for name in ("gender", "language", "address1", "address2", "address3", "city", "state",
                 "postal_code", "country"):
        profile[name] = ""
    profile.update(birthdate=None, tags=[], is_unsubscribed=False, unsubscribe_date=None,
                   is_opted_in=False, opt_in_date=None, opt_in_info={}, metadata={})
    return profile


class Store:
    """The sandbox's customers, by id and by lower-cased email, with their activity."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.lock = threading.RLock()
        self.by_id: dict[str, dict[str, Any]] = {}
        self.ids_by_email: dict[str, str] = {}
        self.conversions: dict[str, list[dict[str, Any]]] = {}
        self.cancels: dict[str, int] = {}

    def clear(self) -> None:
        with self.lock:
            self.by_id.clear()
            self.ids_by_email.clear()
            self.conversions.clear()
            self.cancels.clear()

    def find(self, ident: str) -> dict[str, Any] | None:
        """A customer by Rejoiner id or by email."""
        with self.lock:
            if ident in self.by_id:
                return self.by_id[ident]
            customer_id = self.ids_by_email.get(ident.strip().lower())
            return self.by_id.get(customer_id) if customer_id else None

    def create(self, email: str) -> dict[str, Any]:
        email = email.strip().lower()
        with self.lock:
            digest = hashlib.sha256(f"{self.site_id}:{email}".encode()).hexdigest()
            customer_id = digest[:16]
            profile = _blank_profile(customer_id, email)
            self.by_id[customer_id] = profile
            self.ids_by_email[email] = customer_id
            return profile

    def ensure(self, email: str) -> dict[str, Any]:
        with self.lock:
            return self.find(email) or self.create(email)

    def change_email(self, profile: dict[str, Any], email: str) -> None:
        email = email.strip().lower()
        with self.lock:
            self.ids_by_email.pop(profile["email"], None)
            profile["email"] = email
            self.ids_by_email[email] = profile["id"]

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                "customers": len(self.by_id),
                "conversions": sum(len(v) for v in self.conversions.values()),
                "cancels": sum(self.cancels.values()),
            }


def apply_profile(profile: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Write a loaded profile body onto a stored profile: sent fields only, tags/metadata whole."""
    for name in wire.PROFILE_FIELDS:
        if name not in loaded:
            continue
        value = loaded[name]
        if name in wire.STRING_PROFILE_FIELDS:
            profile[name] = value or ""
        elif name == "birthdate":
            profile[name] = value.isoformat() if value else None
        elif name == "tags":
            profile[name] = list(value or [])
        elif name == "metadata":
            profile[name] = dict(value or {})
        else:
            profile[name] = value


# --------------------------------------------------------------------------- seeding


def seed(store: Store, n: int, now_text: str) -> None:
    """``n`` synthetic customers as Rejoiner would hold them (see the module docstring)."""
    for person in synthetic_customers(n):
        profile = store.create(person.email)
        profile["metadata"] = {
            "shop_customer_id": person.id,
            "acquisition_source": person.acquisition_source,
            "order_count": person.order_count,
            "ltv_cents": person.ltv_cents,
            "rfm": person.rfm,
            "grade": person.grade,
        }
        created = _now_text(person.created_at.timestamp())
        if person.redacted_at is not None:
            profile.update(is_unsubscribed=True,
                           unsubscribe_date=_now_text(person.redacted_at.timestamp()),
                           tags=["redacted"])
            profile["metadata"] = {"shop_customer_id": person.id}
            continue
        profile.update(
            first_name=person.first_name, last_name=person.last_name, phone=person.phone,
            timezone=person.timezone, language=person.language.split("-")[0],
            city=person.city, country=person.country,
            tags=list(person.tags) + [s.lower().replace(" ", "-") for s in person.segments],
        )
        if person.email_opt_in:
            profile.update(is_opted_in=True, opt_in_date=created,
                           opt_in_info={"type": "signup form"})
        elif person.index % 3 == 0:
            profile.update(is_unsubscribed=True, unsubscribe_date=now_text)
        store.conversions[profile["email"]] = [
            {
                "email": profile["email"],
                "cart_data": {"cart_value": order.total_cents,
                              "cart_item_count": sum(line.quantity for line in order.lines),
                              "order_number": order.id, "metadata": {}},
                "cart_items": [
                    {"product_id": line.product_id, "name": line.name,
                     "price": line.unit_price_cents, "item_qty": line.quantity,
                     "qty_price": line.unit_price_cents * line.quantity,
                     "metadata": {"sku": line.sku}}
                    for line in order.lines
                ],
            }
            for order in person.orders
        ]


# --------------------------------------------------------------------------- the app


def create_sandbox(config: SandboxConfig) -> Flask:
    """The Rejoiner sandbox for ``config.api_key`` and ``config.site_id``."""
    site_id = config.site_id or DEFAULT_SITE_ID
    store = Store(site_id)

    def rate_limited(decision: RateDecision) -> Response:
        seconds = max(1, int(decision.retry_after))
        unit = "second" if seconds == 1 else "seconds"
        return _json({"detail": f"Request was throttled. Expected available in {seconds} {unit}."},
                     429, {"Retry-After": str(seconds)})

    def record_lookup(kind: str, key: str) -> dict | None:
        with store.lock:
            if kind == "customers":
                found = store.find(key)
                return dict(found) if found else None
            if kind == "activity":
                found = store.find(key)
                if found is None:
                    return None
                email = found["email"]
                return {"email": email, "conversions": list(store.conversions.get(email, [])),
                        "cancels": store.cancels.get(email, 0)}
        return None

    app = build_sandbox(NAME, config, record_counts=store.counts, record_lookup=record_lookup,
                        rate_limited=rate_limited, limits=LIMITS,
                        on_reset=lambda: reseed(), credential=CREDENTIAL)
    app.json = _StrictJSON(app)
    app.json.sort_keys = False
    state = kit_state(app)

    def now_text() -> str:
        return _now_text(state.clock.now())

    def reseed() -> None:
        with store.lock:
            store.clear()
            seed(store, config.seed_customers, now_text())

    reseed()

    api = Blueprint("rejoiner", __name__, url_prefix="/api/v1/<site>")

    @api.url_value_preprocessor
    def _take_site(endpoint: str | None, values: dict | None) -> None:
        g.rejoiner_site = (values or {}).pop("site", None)

    @api.before_request
    def _authenticate() -> Response | None:
        failure = _auth_failure(request, config.api_key)
        if failure:
            return _json({"detail": failure}, 401, {"WWW-Authenticate": "Rejoiner"})
        if g.get("rejoiner_site") != site_id:
            return _json(_NOT_FOUND, 404)
        return None

    def body() -> tuple[dict | None, Response | None]:
        raw = request.get_data(cache=True)
        if not raw.strip():
            return {}, None
        try:
            data = parse_json_body(raw)
        except BodyError as exc:
            return None, _json({"detail": f"JSON parse error - {exc.message}"}, 400)
        if not isinstance(data, dict):
            kind = {list: "list", str: "str", int: "int", float: "float", bool: "bool",
                    type(None): "NoneType"}.get(type(data), type(data).__name__)
            return None, _json({"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {kind}."]}, 400)
        return data, None

    def load(schema: Any) -> tuple[dict | None, Response | None]:
        data, failure = body()
        if failure:
            return None, failure
        try:
            loaded = schema.load(data)
        except SchemaError as exc:
            return None, _json(wire.drf_errors(exc.messages), 400)
        rejected = state.faults.settings.reject_keys.get(str(loaded.get("email", "")).lower())
        if rejected:
            return None, _json({"email": [rejected]}, 400)
        return loaded, None

    success = {"status": "success"}

    @api.get("/ping/")
    def ping() -> Response:
        return _json(success)

    @api.post("/customer/convert/")
    def convert() -> Response:
        loaded, failure = load(wire.ConvertSchema())
        if failure:
            return failure
        with store.lock:
            profile = store.ensure(loaded["email"])
            email = profile["email"]
            store.conversions.setdefault(email, []).append({**loaded, "email": email,
                                                            "at": now_text()})
            store.cancels[email] = store.cancels.get(email, 0) + 1  # a purchase ends journeys
        return _json(success)

    @api.post("/customer/cancel/")
    def cancel() -> Response:
        loaded, failure = load(wire.EmailSchema())
        if failure:
            return failure
        with store.lock:
            email = store.ensure(loaded["email"])["email"]
            store.cancels[email] = store.cancels.get(email, 0) + 1
        return _json(success)

    @api.post("/customer/unsubscribe/")
    def unsubscribe() -> Response:
        loaded, failure = load(wire.EmailSchema())
        if failure:
            return failure
        with store.lock:
            profile = store.ensure(loaded["email"])
            if not profile["is_unsubscribed"]:
                profile.update(is_unsubscribed=True, unsubscribe_date=now_text())
        return _json(success)

    @api.post("/customer/opt_in/")
    def opt_in() -> Response:
        loaded, failure = load(wire.OptInSchema())
        if failure:
            return failure
        with store.lock:
            profile = store.ensure(loaded["email"])
            profile.update(is_opted_in=True, opt_in_date=now_text(),
                           opt_in_info=dict(loaded["metadata"]), is_unsubscribed=False,
                           unsubscribe_date=None)
        return _json(success)

    @api.get("/customers/<path:ident>/")
    def get_customer(ident: str) -> Response:
        profile = store.find(ident)
        return _json(dict(profile)) if profile else _json(_NOT_FOUND, 404)

    @api.put("/customers/<path:ident>/")
    def update_customer(ident: str) -> Response:
        with store.lock:
            profile = store.find(ident)
            if profile is None:
                return _json(_NOT_FOUND, 404)
            loaded, failure = load(wire.ProfileSchema())
            if failure:
                return failure
            email = loaded["email"].strip().lower()
            if email != profile["email"]:
                other = store.find(email)
                if other is not None and other is not profile:
                    return _json({"email": [_EXISTS]}, 400)
                store.change_email(profile, email)
            apply_profile(profile, loaded)
            return _json(dict(profile))

    @api.post("/customers/")
    def create_customer() -> Response:
        with store.lock:
            loaded, failure = load(wire.ProfileSchema())
            if failure:
                return failure
            if store.find(loaded["email"]) is not None:
                return _json({"email": [_EXISTS]}, 400)
            profile = store.create(loaded["email"])
            apply_profile(profile, loaded)
            return _json(dict(profile))

    app.register_blueprint(api)

    @app.before_request
    def _trailing_slash() -> Response | None:
        if request.path.startswith("/api/") and not request.path.endswith("/"):
            return _json(_NOT_FOUND, 404)
        return None

    @app.errorhandler(404)
    def _not_found(_: Exception) -> Response:
        return _json(_NOT_FOUND, 404)

    @app.errorhandler(405)
    def _not_allowed(_: Exception) -> Response:
        return _json({"detail": f'Method "{request.method}" not allowed.'}, 405)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _json({"detail": exc.description}, exc.code or 500)

    @app.errorhandler(Exception)
    def _crash(_: Exception) -> Response:
        return _json({"detail": "A server error occurred."}, 500)

    return app


def _auth_failure(req: Request, api_key: str) -> str | None:
    """DRF TokenAuthentication's message for a bad ``Authorization`` header; None when good.

    The messages tell the malformed headers apart; whether the key is right is decided on
    :data:`CREDENTIAL`'s reading of the header, the same one the rate limiter keys on.
    """
    parts = (req.headers.get(CREDENTIAL.header) or "").split()
    if not parts or parts[0].lower() != KEYWORD.lower():
        return "Authentication credentials were not provided."
    if len(parts) == 1:
        return "Invalid token header. No credentials provided."
    if len(parts) > 2:
        return "Invalid token header. Token string should not contain spaces."
    presented = CREDENTIAL.read(req)
    if presented is None or not hmac.compare_digest(presented.encode(), api_key.encode()):
        return "Invalid token."
    return None


SANDBOX = SandboxSpec(
    name=NAME,
    base_path=BASE_PATH,
    create=create_sandbox,
    limits=LIMITS,
    description="Rejoiner REST v1: convert, cancel, unsubscribe, opt_in, customer get/create/"
    "update; Authorization: Rejoiner KEY",
    credential=CREDENTIAL,
)
