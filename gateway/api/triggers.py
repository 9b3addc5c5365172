"""``GET /api/v1/triggers/...``: Zapier's polling triggers, newest first.

Every trigger answers a bare JSON array of flat items (Zapier's convention), served as stored
with their events (:func:`gateway.store.events.list_trigger_page`: one index range read, no
item is rebuilt per request). An item's ``id`` is its event's: unique per occurrence, never
reused, of one format forever, so a customer who enters ``at_risk`` and later ``lapsed`` is two
items. ``limit`` is 1 to 100 (default 100); more is a 400.

When older items remain, the answer's ``Link: <...>; rel="next"`` header holds the URL of the
next, older page, with an opaque keyset ``cursor``. Zapier itself reads only the first page; a
client that walks the cursor catches up however much happened between two polls. The cursor is
a versioned position in the tenant's event sequence (``AQ`` and ten base64url characters); a
string of any other form (garbled, cut, padded) is a 400. It is not a secret and needs none: it
is only ever compared with this tenant's own events, so a made-up cursor can only page the
caller's own events from another point.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlencode

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import INCLUDE, Schema, fields, validate
from werkzeug.urls import iri_to_uri

from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS
from gateway.api.params import ZapierBlueprint
from gateway.model import EVENT_TYPES
from gateway.runtime import runtime
from gateway.store import events as event_store
from gateway.triggers import ATTENTION_STATUSES, TRIGGERS, EventItemSchema

blp = ZapierBlueprint("triggers", __name__, description=(
    "Polling triggers: newest first, a bare JSON array, older pages by the Link header"))

MAX_LIMIT = 100

#: A cursor is ``AQ`` and ten more base64url characters: a version byte (1) and the position's
#: eight bytes, of which the first is below 16 (so a position is always below 2**60, and any
#: cursor of this form names one).
CURSOR_PATTERN = r"^AQ[A-Za-z0-9_-]{10}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_CURSOR_VERSION = 1
_MAX_POSITION = 2**60


# --- the cursor ------------------------------------------------------------------------------


def encode_cursor(before: int) -> str:
    """The opaque cursor of the page of events older than sequence number ``before``."""
    if not 0 <= before < _MAX_POSITION:
        raise ValueError(f"no cursor for position {before}")
    body = bytes([_CURSOR_VERSION]) + int(before).to_bytes(8, "big")
    return base64.urlsafe_b64encode(body).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; ``ValueError`` for a string that is not a cursor (cut,
    padded, another version, characters that base64url does not use)."""
    if not _CURSOR.match(cursor):
        raise ValueError("not a cursor this API gives: take it from a Link header")
    return int.from_bytes(base64.urlsafe_b64decode(cursor)[1:], "big")


# --- parameters ------------------------------------------------------------------------------


class PageQuery(Schema):
    limit = fields.Integer(
        load_default=MAX_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"items per page, 1 to {MAX_LIMIT} (default {MAX_LIMIT})"})
    cursor = fields.String(
        validate=validate.Regexp(CURSOR_PATTERN, error="Not a cursor this API gives."),
        metadata={"description": "where the page starts: take it from the previous answer's "
                                 "`Link: <...>; rel=\"next\"` header, never build it"})


class CustomerStatusQuery(PageQuery):
    status = fields.String(
        validate=validate.OneOf(ATTENTION_STATUSES),
        metadata={"description": "only customers who entered this status"})


class EventsQuery(PageQuery):
    type = fields.List(
        fields.String(validate=validate.OneOf(sorted(EVENT_TYPES))),
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata={"description": "only events of these types (repeat the parameter for more "
                                 "than one); every type when absent",
                  "explode": True, "style": "form"})


LINK_HEADER = {
    "Link": {
        "description": "present when older items remain: `<URL>; rel=\"next\"`, the URL of "
                       "the next (older) page with its opaque `cursor`",
        "required": False,
        "schema": {"type": "string"},
        "example": '<https://gateway.example/api/v1/triggers/new-order?limit=100&cursor='
                   'AQAAAAAAAAPo3q2-7wAAAAA>; rel="next"',
    },
}


# --- the page --------------------------------------------------------------------------------


def _next_link(cursor: str) -> str:
    """This request's URL with ``cursor`` in place of its own (other parameters kept)."""
    args = request.args.copy()
    args.setlist("cursor", [cursor])
    return f'<{iri_to_uri(request.base_url)}?{urlencode(list(args.items(multi=True)))}>; ' \
           'rel="next"'


def trigger_page(trigger: str, query: dict[str, Any], *, status: str | None = None,
                 types: list[str] | None = None) -> Any:
    """The answer for one page of ``trigger``: the stored items and, when older ones remain,
    the Link to them."""
    tenant = tenant_id()
    before = None
    if query.get("cursor") is not None:
        try:
            before = decode_cursor(query["cursor"])
        except ValueError as exc:
            abort(400, message="the cursor is not valid; take it from a Link header",
                  errors={"cursor": [str(exc)]})
    with runtime().engine.connect() as conn:
        items, next_before = event_store.list_trigger_page(
            conn, tenant, trigger, status=status, types=types, before=before,
            limit=query["limit"])
    response = current_app.response_class(json.dumps(items, separators=(",", ":")),
                                          status=200, mimetype="application/json")
    if next_before is not None:
        response.headers["Link"] = _next_link(encode_cursor(next_before))
    return response


class AnyEventItemSchema(EventItemSchema):
    """An item of the events trigger: the envelope, and whatever fields its type's item has."""

    class Meta(EventItemSchema.Meta):
        unknown = INCLUDE


def _doc(trigger: str) -> dict[str, Any]:
    schema = AnyEventItemSchema if trigger == "events" else TRIGGERS[trigger].item_schema
    return {"schema": schema(many=True), "example": [schema.Meta.example],
            "headers": {**LINK_HEADER, **RATE_LIMIT_HEADERS}}


def _bad_request(func: Any) -> Any:
    return blp.error_response(400, "a query parameter is unknown or not valid (e.g. a limit "
                                   "over 100, or a cursor this API did not give)",
                              RATE_LIMIT_HEADERS)(func)


# --- the triggers ----------------------------------------------------------------------------


@blp.route("/triggers/customer-status")
class CustomerStatus(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(CustomerStatusQuery, location="query")
    @blp.response(200, **_doc("customer-status"))
    def get(self, query):
        """Customers who entered at_risk, lapsed or lost (one item per transition)."""
        return trigger_page("customer-status", query, status=query.get("status"))


@blp.route("/triggers/customer-returned")
class CustomerReturned(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, **_doc("customer-returned"))
    def get(self, query):
        """Lapsed or lost customers won back (``returned_at`` set)."""
        return trigger_page("customer-returned", query)


@blp.route("/triggers/new-customer")
class NewCustomer(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, **_doc("new-customer"))
    def get(self, query):
        """Customers the gateway stored for the first time (``created_at``)."""
        return trigger_page("new-customer", query)


@blp.route("/triggers/new-order")
class NewOrder(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, **_doc("new-order"))
    def get(self, query):
        """Orders placed (``placed_at``)."""
        return trigger_page("new-order", query)


@blp.route("/triggers/consent-changed")
class ConsentChanged(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(PageQuery, location="query")
    @blp.response(200, **_doc("consent-changed"))
    def get(self, query):
        """Unsubscribes and opt-ins (``changed_at``)."""
        return trigger_page("consent-changed", query)


@blp.route("/triggers/events")
class Events(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @_bad_request
    @blp.arguments(EventsQuery, location="query")
    @blp.response(200, **_doc("events"))
    def get(self, query):
        """Every canonical event, or those of the ``type`` asked for (``occurred_at``)."""
        return trigger_page("events", query, types=query.get("type"))
