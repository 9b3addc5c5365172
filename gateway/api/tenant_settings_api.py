"""``GET/PATCH /api/v1/settings``: the tenant's settings (admin keys only)."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError

from gateway.api.auth import SECURITY, requires, tenant_id
from gateway.runtime import runtime
from gateway.store import tenants as tenant_store
from gateway.tenant_settings import TenantSettingsSchema

blp = Blueprint("settings", __name__, description="The tenant's settings")


@blp.route("/settings")
class Settings(MethodView):
    decorators = [requires("admin")]

    @blp.doc(security=SECURITY)
    @blp.response(200, TenantSettingsSchema)
    def get(self):
        """The effective settings (defaults where the tenant set nothing)."""
        with runtime().engine.connect() as conn:
            return tenant_store.get_settings(conn, tenant_id()).as_dict()

    @blp.doc(security=SECURITY, requestBody={"content": {"application/json": {
        "schema": TenantSettingsSchema}}})
    @blp.response(200, TenantSettingsSchema)
    def patch(self):
        """Change some settings; an unknown key or a bad value changes nothing (422)."""
        changes = request.get_json(silent=True)
        if not isinstance(changes, dict):
            abort(400, message="the body must be a JSON object of settings to change")
        try:
            with runtime().engine.begin() as conn:
                result = tenant_store.update_settings(conn, tenant_id(), changes)
        except ValidationError as exc:
            abort(422, message="invalid settings; see errors", errors=exc.messages)
        runtime().forget_settings(tenant_id())
        return result.as_dict()
