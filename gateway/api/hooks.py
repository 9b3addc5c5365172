"""``/api/v1/hooks``: Zapier's REST-hook subscribe and unsubscribe (``zapier`` keys).

``POST /hooks`` ``{"event": <a canonical event type>, "target_url": "https://...",
"filter": {...}}`` subscribes and answers 201 with the subscription and its signing secret
(``whsec_...``, shown only here); ``GET /hooks`` lists the tenant's subscriptions (never a
secret); ``DELETE /hooks/{id}`` unsubscribes. The target URL must pass the private-address
check (:func:`gateway.netguard.check_target`: https, a host that resolves, public addresses
only, unless private targets are allowed); a refusal is a 422 under ``errors.target_url``.
A filter maps fields of the event's item to a value, or a list of accepted values.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from gateway import netguard
from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS, Blueprint
from gateway.connections import private_targets_allowed
from gateway.hooks import store as hook_store
from gateway.model import EVENT_TYPES
from gateway.runtime import runtime

blp = Blueprint("hooks", __name__, description="REST hooks: subscribe a URL to an event type")

MAX_URL = 2000
MAX_FILTER_FIELDS = 20
_SCALARS = (str, int, float, bool)


class HookSchema(Schema):
    id = fields.String(required=True)
    event = fields.String(required=True, validate=validate.OneOf(sorted(EVENT_TYPES)))
    target_url = fields.String(required=True)
    filter = fields.Dict(keys=fields.String(), required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "disabled"]),
                           metadata={"description": "disabled after failing for days"})
    failing_since = fields.AwareDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class NewHookSchema(HookSchema):
    secret = fields.String(required=True, metadata={
        "description": "the Standard Webhooks signing secret; shown only in this answer"})


class SubscribeSchema(Schema):
    class Meta:
        unknown = RAISE

    event = fields.String(required=True, validate=validate.OneOf(sorted(EVENT_TYPES)))
    target_url = fields.String(required=True, validate=validate.Length(1, MAX_URL))
    filter = fields.Dict(keys=fields.String(validate=validate.Length(1, 64)), allow_none=True,
                         metadata={"description": "item field -> value, or a list of values"})

    @validates("filter")
    def _flat(self, value: dict | None, **kwargs: object) -> None:
        if not value:
            return
        if len(value) > MAX_FILTER_FIELDS:
            raise ValidationError(f"at most {MAX_FILTER_FIELDS} fields")
        for key, wanted in value.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values or not all(v is None or isinstance(v, _SCALARS) for v in values):
                raise ValidationError(f"{key}: a value or a non-empty list of values (strings, "
                                      "numbers, booleans or null)")


def item_fields(event_type: str) -> set[str]:
    """The fields a hook body of ``event_type`` has, where its trigger's schema says (empty
    for a type without a trigger of its own, whose items are not described field by field)."""
    from gateway.triggers import TRIGGERS

    for trigger in TRIGGERS.values():
        if trigger.indexed and event_type in trigger.event_types:
            return set(trigger.item_schema().fields)
    return set()


EXAMPLE = {"id": "hook_01jq3b6a1m6q7c2v1x9y8z7w6t", "event": "customer.status_changed",
           "target_url": "https://hooks.zapier.com/hooks/standard/1/abc/",
           "filter": {"status": "lapsed"}, "status": "active", "failing_since": None,
           "last_error": None, "created_at": "2026-12-02T00:00:00+00:00",
           "updated_at": "2026-12-02T00:00:00+00:00"}


@blp.route("/hooks")
class Hooks(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @blp.response(200, HookSchema(many=True), headers=RATE_LIMIT_HEADERS, example=[EXAMPLE])
    def get(self):
        """The tenant's subscriptions (never a secret)."""
        with runtime().engine.connect() as conn:
            return [s.as_dict() for s in hook_store.list_subscriptions(conn, tenant_id())]

    @blp.key_responses("zapier")
    @blp.body_responses()
    @blp.arguments(SubscribeSchema, required=True,
                   example={"event": "customer.status_changed",
                            "target_url": "https://hooks.zapier.com/hooks/standard/1/abc/",
                            "filter": {"status": "lapsed"}})
    @blp.response(201, NewHookSchema, headers=RATE_LIMIT_HEADERS,
                  example={**EXAMPLE, "secret": "whsec_..."})
    def post(self, body: dict):
        """Subscribe ``target_url`` to ``event``; the answer holds the signing secret, once.

        A target refused by the private-address check is a 422 naming the reason."""
        rt, tenant = runtime(), tenant_id()
        unknown = sorted(set(body.get("filter") or {}) - item_fields(body["event"]))
        if unknown and item_fields(body["event"]):
            abort(422, message="the filter names fields the event's item does not have",
                  errors={"filter": [f"unknown field {name!r}; the item's fields: "
                                     f"{', '.join(sorted(item_fields(body['event'])))}"
                                     for name in unknown]})
        url = body["target_url"].strip()
        try:
            netguard.check_target(url, allow_private=private_targets_allowed(rt, tenant))
        except netguard.TargetRefused as exc:
            abort(422, message="the target URL is refused; see errors",
                  errors={"target_url": [exc.reason]})
        with rt.engine.begin() as conn:
            sub, secret = hook_store.create_subscription(
                conn, rt.vault, tenant, event=body["event"], target_url=url,
                filter=body.get("filter") or {})
        return {**sub.as_dict(), "secret": secret}


@blp.route("/hooks/<hook_id>")
class Hook(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @blp.error_response(404, "the tenant has no such subscription", RATE_LIMIT_HEADERS)
    @blp.response(204, headers=RATE_LIMIT_HEADERS, description="unsubscribed")
    def delete(self, hook_id: str):
        """Unsubscribe: the subscription and its queued posts are removed."""
        with runtime().engine.begin() as conn:
            gone = hook_store.delete_subscription(conn, tenant_id(), hook_id,
                                                  reason="unsubscribed")
        if not gone:
            abort(404, message=f"no subscription {hook_id!r}")
        return None
