"""``GET /api/v1/me``: who this key is (Zapier's connection test)."""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from gateway.api.auth import SECURITY, requires

blp = Blueprint("me", __name__, description="The key in use")


class MeSchema(Schema):
    tenant_id = fields.String()
    tenant_name = fields.String()
    key_id = fields.String()
    scope = fields.String()


@blp.route("/me")
class Me(MethodView):
    decorators = [requires("zapier")]

    @blp.doc(security=SECURITY)
    @blp.response(200, MeSchema)
    def get(self):
        """The tenant and scope of the API key used."""
        key = g.api_key
        return {"tenant_id": key.tenant_id, "tenant_name": g.tenant.name, "key_id": key.id,
                "scope": key.scope}
