"""The tenant's relay routes and manual erasure items over the API (admin keys only).

- ``GET /api/v1/routes``: every route, whether it is on, the events it takes, the services it
  writes to and which of them the tenant has connected.
- ``PUT /api/v1/routes/{name}`` ``{"enabled": true|false}``: switch one route; answers it.
  Other routes keep their switches. An unknown route is a 404.
- ``GET /api/v1/erasures``: the manual erasure items (Rekindle has no delete), newest first;
  open ones only unless ``?all=true``. ``limit`` and ``before`` page as the deliveries do.
- ``POST /api/v1/erasures/{id}/done``: the customer was erased at Rekindle by hand; the item's
  identity (emails, Rekindle id) is wiped. Marking a done item again changes nothing.

See :mod:`gateway.relay.routes_switches` and :mod:`gateway.relay.erasures`.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import RAISE, Schema, fields, validate

from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS, rate_limit_headers
from gateway.api.params import ZapierBlueprint
from gateway.api.settings_schemas import JsonBoolean
from gateway.relay import erasures, routes_switches
from gateway.runtime import runtime
from gateway.tenant_settings import SWITCHABLE_ROUTES

blp = ZapierBlueprint("routes", __name__,
                      description="The relay's routes (on or off per tenant) and the manual "
                                  "erasure items")

MAX_LIMIT = 500
MAX_ID = 2**63 - 1
ROUTE_NAMES = ", ".join(f"`{name}`" for name in SWITCHABLE_ROUTES)


class RouteSchema(Schema):
    name = fields.String(required=True, validate=validate.OneOf(SWITCHABLE_ROUTES))
    enabled = fields.Boolean(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["events", "scheduled"]),
                         metadata={"description": "`events`: reacts to canonical events; "
                                                  "`scheduled`: a pull on the schedules"})
    events = fields.List(fields.String(), required=True,
                         metadata={"description": "the event types it takes"})
    to = fields.List(fields.String(), required=True,
                     metadata={"description": "the services it writes to"})
    connected = fields.List(fields.String(), required=True, metadata={
        "description": "the services it uses that the tenant has connected (it plans only "
                       "to those)"})
    description = fields.String(required=True)


class RouteSwitchSchema(Schema):
    class Meta:
        unknown = RAISE

    enabled = JsonBoolean(required=True, metadata={"description": "true: on; false: off"})


class ErasuresQuery(Schema):
    all = fields.Boolean(load_default=False, truthy={"true"}, falsy={"false"},
                      metadata={"description": "done items too (default: open ones only)"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": f"1 to {MAX_LIMIT} (default 100)"})
    before = fields.Integer(validate=validate.Range(min=1, max=MAX_ID),
                            metadata={"description": "only ids below this one"})


class ErasureItemSchema(Schema):
    id = fields.Integer(required=True)
    connector = fields.String(required=True, metadata={"description": "the service (rekindle)"})
    customer_id = fields.String(required=True, metadata={"description": "the gateway's id"})
    status = fields.String(required=True, validate=validate.OneOf(["open", "done"]))
    emails = fields.List(fields.String(), required=True, metadata={
        "description": "who to erase at the service (wiped once done)"})
    rekindle_id = fields.String(allow_none=True, required=True)
    redacted_at = fields.String(allow_none=True, required=True)
    event_id = fields.String(allow_none=True, required=True,
                             metadata={"description": "the customer.redacted event"})
    created_at = fields.AwareDateTime(required=True)
    done_at = fields.AwareDateTime(allow_none=True, required=True)
    instructions = fields.String(allow_none=True, required=True)


@blp.route("/routes")
class Routes(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.response(200, RouteSchema(many=True), headers=RATE_LIMIT_HEADERS)
    def get(self):
        """The tenant's routes: on or off, what each takes and where it writes."""
        with runtime().engine.connect() as conn:
            return routes_switches.list_routes(conn, tenant_id())


@blp.route("/routes/<name>")
class RouteSwitch(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.body_responses()
    @blp.arguments(RouteSwitchSchema, required=True, example={"enabled": False})
    @blp.error_response(404, f"no such route (the routes are {ROUTE_NAMES})",
                        RATE_LIMIT_HEADERS)
    @blp.response(200, RouteSchema, headers=RATE_LIMIT_HEADERS)
    def put(self, body: dict, name: str):
        """Switch one route on or off for the tenant; answers the route."""
        if name not in SWITCHABLE_ROUTES:
            abort(404, message=str(routes_switches.UnknownRoute(name)))
        with runtime().engine.begin() as conn:
            route = routes_switches.set_route(conn, tenant_id(), name, body["enabled"])
        runtime().forget_settings(tenant_id())
        return route


@blp.route("/erasures")
class Erasures(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.arguments(ErasuresQuery, location="query", as_kwargs=True)
    @blp.error_response(400, "an unknown or invalid query parameter")
    @blp.response(200, ErasureItemSchema(many=True), headers=RATE_LIMIT_HEADERS)
    def get(self, limit: int, all: bool = False, before: int | None = None):
        """The manual erasure items: customers erased here whom a service without a delete
        (Rekindle) still holds, newest first."""
        with runtime().engine.connect() as conn:
            return erasures.list_manual(conn, tenant_id(), include_done=all, limit=limit,
                                        before=before)


@blp.route("/erasures/<int:item_id>/done")
class ErasureDone(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.error_response(404, "no such manual erasure item of this tenant",
                        rate_limit_headers(required=False))
    @blp.response(200, ErasureItemSchema, headers=RATE_LIMIT_HEADERS)
    def post(self, item_id: int):
        """The customer was erased at the service by hand: the item is done and the identity
        it held is wiped."""
        if not 1 <= item_id <= MAX_ID:
            abort(404, message=f"no manual erasure item {item_id}")
        try:
            with runtime().engine.begin() as conn:
                return erasures.mark_done(conn, tenant_id(), item_id)
        except erasures.UnknownErasure as exc:
            abort(404, message=str(exc))
