"""``GET /api/v1/me``: who this key is (Zapier's connection test)."""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from gateway.api.auth import requires
from gateway.api.blueprint import RATE_LIMIT_HEADERS, Blueprint

blp = Blueprint("me", __name__, description="The key in use")


class MeSchema(Schema):
    tenant_id = fields.String(required=True, metadata={"description": "the key's tenant"})
    tenant_name = fields.String(required=True)
    key_id = fields.String(required=True, metadata={"description": "the key's public id"})
    scope = fields.String(required=True, validate=validate.OneOf(["admin", "zapier"]),
                          metadata={"description": "what the key may do"})


ME_EXAMPLE = {"tenant_id": "ten_01m8sz4n58r5sd7n26jbhthzf8", "tenant_name": "My shop",
              "key_id": "key_01m8sz4n59s6d24h877mptmm52", "scope": "admin"}


@blp.route("/me")
class Me(MethodView):
    decorators = [requires("zapier")]

    @blp.key_responses("zapier")
    @blp.response(200, MeSchema, headers=RATE_LIMIT_HEADERS, example=ME_EXAMPLE)
    def get(self):
        """The tenant and scope of the API key used."""
        key = g.api_key
        return {"tenant_id": key.tenant_id, "tenant_name": g.tenant.name, "key_id": key.id,
                "scope": key.scope}
