"""``/api/v1/connections``: the tenant's connections to the four services (admin keys only).

``GET /connections`` lists them; ``GET``, ``PUT`` and ``DELETE /connections/{name}`` read,
create-or-replace and delete one (``name``: ``rekindle``, ``rejoiner``, ``rci``,
``replenit``); ``POST /connections/{name}/check`` runs the connector's credential check.

A secret is never answered: a connection shows ``credentials_set``, and per credential field
at most the last four characters of a value of 16 or more (``credential_hints``). ``PUT``
takes ``credentials`` (an object of the connector's credential fields) or ``api_key`` (the
one-field shorthand); with neither, the stored credentials are kept, as long as the base URL
stays the same. A ``base_url`` given here changes only scheme, host and port (the documented
path is kept) and must pass the private-address check (:func:`gateway.netguard.check_target`:
https, a host that resolves, public addresses only, unless private targets are allowed by
``GATEWAY_ALLOW_PRIVATE_TARGETS`` or the tenant's ``allow_private_targets``); the clients
built for such a connection check every address again when they connect. A refusal is a 422
naming the reason under ``errors.base_url``. See :mod:`gateway.connections`.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import RAISE, Schema, fields, validate, validates_schema
from marshmallow import ValidationError as SchemaError

from gateway import connections as service
from gateway import netguard
from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS, Blueprint, rate_limit_headers
from gateway.runtime import runtime

blp = Blueprint("connections", __name__,
                description="The tenant's connections to Rekindle, Rejoiner, RCI and Replenit")

NAMES = ", ".join(f"`{n}`" for n in service.CONNECTORS)
#: The path segment: one of the four names (documented as an enum; any other is a 404).
NAME_RULE = f"<any({', '.join(service.CONNECTORS)}):name>"
PRINTABLE = r"^[\x21-\x7e]+$"
SITE_ID = r"^[A-Za-z0-9._~-]{1,100}$"
GUID = r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"
CURRENCY = r"^[A-Za-z]{3}$"
#: A 404 for a name that is not a connector comes from routing, before the key is read.
NOT_FOUND_HEADERS = rate_limit_headers(required=False)


def _credential_string(**metadata: object) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=service.MAX_CREDENTIAL_CHARS),
                                   validate.Regexp(PRINTABLE, error="must be printable ASCII "
                                                   "without spaces or line breaks")],
                         metadata={"pattern": PRINTABLE, **metadata})


def _option(pattern: str, description: str, error: str) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Regexp(pattern, error=error),
                         metadata={"pattern": pattern, "description": description})


class OptionsSchema(Schema):
    """The options a connection can have; which apply depends on the connector."""

    class Meta:
        unknown = RAISE

    site_id = _option(SITE_ID, "Rejoiner (required): the site id",
                      "must be 1 to 100 letters, digits or . _ ~ -")
    tenant_id = _option(GUID, "Replenit (required): the tenant id, a GUID", "must be a GUID")
    currency = _option(CURRENCY, "Rekindle, Rejoiner: an ISO 4217 code, any case (default "
                                 "the tenant's base currency)", "must be an ISO 4217 code")


class CredentialsSchema(Schema):
    """The connector's credential fields (only its own apply)."""

    class Meta:
        unknown = RAISE

    api_key = _credential_string(description="Rekindle, Rejoiner, Replenit")
    api_token = _credential_string(description="RCI")


class ConnectionSchema(Schema):
    connector = fields.String(required=True, validate=validate.OneOf(service.CONNECTORS))
    title = fields.String(required=True)
    base_url = fields.String(required=True, metadata={
        "description": "the API root the gateway calls (the documented one unless changed)"})
    options = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                          metadata={"description": "`site_id` (Rejoiner), `tenant_id` "
                                                   "(Replenit), `currency` (Rekindle, Rejoiner)"})
    credentials_set = fields.Boolean(required=True)
    credentials_readable = fields.Boolean(required=True, metadata={
        "description": "false when no key of GATEWAY_SECRET_KEY decrypts the credentials"})
    credential_hints = fields.Dict(
        keys=fields.String(), values=fields.String(allow_none=True), required=True,
        metadata={"description": "per credential field, `…` and its last four characters "
                                 "when it has at least 16, else null; never the secret"})
    set_via = fields.String(required=True, metadata={
        "description": "where it was set: `api`, `cli`, or empty (by the gateway's own code)"})
    created_at = fields.AwareDateTime(required=True, allow_none=True)
    updated_at = fields.AwareDateTime(required=True, allow_none=True)


class ConnectionPutSchema(Schema):
    """The body of ``PUT /connections/{name}``."""

    class Meta:
        unknown = RAISE

    credentials = fields.Nested(CredentialsSchema, metadata={
        "description": "the connector's credential fields (`api_key`; RCI: `api_token`); "
                       "never answered back"})
    api_key = _credential_string(description="shorthand for a connector's one credential "
                                             "field (not with `credentials`)")
    base_url = fields.String(allow_none=True, validate=validate.Length(max=2000), metadata={
        "description": "another scheme://host:port for the service (the documented path is "
                       "kept); checked against private addresses"})
    options = fields.Nested(OptionsSchema, metadata={
        "description": "`site_id` (Rejoiner, required), `tenant_id` (Replenit, required), "
                       "`currency` (Rekindle, Rejoiner); another connector's option is a 422"})

    @validates_schema
    def _one_credential_form(self, data: dict, **kwargs: object) -> None:
        if "credentials" in data and "api_key" in data:
            raise SchemaError("give credentials or api_key, not both", "api_key")


class CheckSchema(Schema):
    ok = fields.Boolean(required=True, metadata={"description": "the credential works"})
    detail = fields.String(required=True, metadata={"description": "the service's answer, or "
                                                                   "why it failed"})


CONNECTION_EXAMPLE = {
    "connector": "rejoiner", "title": "Rejoiner",
    "base_url": "https://rj2.rejoiner.com/api/v1/site1",
    "options": {"site_id": "site1", "currency": "USD"}, "credentials_set": True,
    "credentials_readable": True, "credential_hints": {"api_key": "…9f3c"}, "set_via": "api",
    "created_at": "2026-05-04T03:02:01+00:00", "updated_at": "2026-05-04T03:02:01+00:00",
}
PUT_EXAMPLE = {"api_key": "rj_…", "options": {"site_id": "site1", "currency": "USD"}}
NOT_FOUND = f"no such connector (the names are {NAMES}), or the tenant has no connection to it"


def _spec_or_404(name: str) -> None:
    try:
        service.spec_for(name)
    except service.UnknownConnection as exc:
        abort(404, message=str(exc))


@blp.route("/connections")
class Connections(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.response(200, ConnectionSchema(many=True), headers=RATE_LIMIT_HEADERS,
                  example=[CONNECTION_EXAMPLE])
    def get(self):
        """The tenant's connections (never a secret)."""
        rt = runtime()
        return [s.as_dict() for s in service.list_summaries(rt.engine, rt.vault, tenant_id())]


@blp.route(f"/connections/{NAME_RULE}")
class Connection(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.error_response(404, NOT_FOUND, NOT_FOUND_HEADERS)
    @blp.response(200, ConnectionSchema, headers=RATE_LIMIT_HEADERS, example=CONNECTION_EXAMPLE)
    def get(self, name: str):
        """One connection (never its secret)."""
        _spec_or_404(name)
        rt = runtime()
        try:
            return service.get_summary(rt.engine, rt.vault, tenant_id(), name).as_dict()
        except service.UnknownConnection as exc:
            abort(404, message=str(exc))

    @blp.key_responses("admin")
    @blp.body_responses()
    @blp.arguments(ConnectionPutSchema, required=True, example=PUT_EXAMPLE,
                   description="the connection; it replaces any the tenant has")
    @blp.error_response(404, f"no such connector (the names are {NAMES})", NOT_FOUND_HEADERS)
    @blp.response(200, ConnectionSchema, headers=RATE_LIMIT_HEADERS, example=CONNECTION_EXAMPLE)
    def put(self, body: dict, name: str):
        """Create or replace the connection; answers it, without the secret.

        An invalid option or credential, a base URL with another path, or one refused by the
        private-address check is a 422 naming the field and the reason; nothing changes."""
        _spec_or_404(name)
        rt, tenant = runtime(), tenant_id()
        credentials = body.get("credentials")
        if "api_key" in body:
            fields_ = service.spec_for(name).credential_fields
            if len(fields_) != 1:
                abort(422, message="the request is not valid; see errors",
                      errors={"api_key": [f"{name} takes {', '.join(fields_)}: use "
                                          "credentials"]})
            credentials = {fields_[0]: body["api_key"]}
        allowed = service.private_targets_allowed(rt, tenant)
        try:
            summary = service.set_connection(
                rt.engine, rt.vault, tenant, name, credentials=credentials,
                base_url=body.get("base_url"), options=body.get("options"), set_via="api",
                check_url=lambda url: netguard.check_target(url, allow_private=allowed))
        except service.InvalidConnection as exc:
            abort(422, message="the connection is not valid; see errors", errors=exc.nested())
        return summary.as_dict()

    @blp.key_responses("admin")
    @blp.error_response(404, NOT_FOUND, NOT_FOUND_HEADERS)
    @blp.response(204, headers=RATE_LIMIT_HEADERS, description="deleted")
    def delete(self, name: str):
        """Delete the connection (its deliveries wait until there is one again)."""
        _spec_or_404(name)
        try:
            service.delete_connection(runtime().engine, tenant_id(), name)
        except service.UnknownConnection as exc:
            abort(404, message=str(exc))
        return None


@blp.route(f"/connections/{NAME_RULE}/check")
class Check(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.error_response(404, NOT_FOUND, NOT_FOUND_HEADERS)
    @blp.response(200, CheckSchema, headers=RATE_LIMIT_HEADERS,
                  example={"ok": True, "detail": "the API key works"})
    def post(self, name: str):
        """Does the stored credential work? ``ok`` false with the reason when not (a refused
        key, an unknown site or tenant, an unreachable or refused address)."""
        _spec_or_404(name)
        try:
            result = service.check_connection(runtime(), tenant_id(), name)
        except service.UnknownConnection as exc:
            abort(404, message=str(exc))
        return {"ok": result.ok, "detail": result.detail}
