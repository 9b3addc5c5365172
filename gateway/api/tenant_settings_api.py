"""``GET/PATCH /api/v1/settings``: the tenant's settings (admin keys only).

A ``PATCH`` body is checked against :class:`SettingsChangeSchema` first (an unknown key or a
bad value: 422, every bad field named). A change that passes is merged with the stored
settings, and the result must still hold together (the thresholds must rise); when it does
not, the change conflicts with the settings it would be merged into: 409, nothing changed.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import ValidationError

from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS, Blueprint
from gateway.api.settings_schemas import SettingsChangeSchema, SettingsSchema
from gateway.runtime import runtime
from gateway.store import tenants as tenant_store
from gateway.tenant_settings import DEFAULTS

blp = Blueprint("settings", __name__, description="The tenant's settings")

CHANGE_EXAMPLE = {"default_gap_days": 45, "pull_interval_minutes": {"rci-customers": 30}}
SETTINGS_EXAMPLE = DEFAULTS.as_dict()


@blp.route("/settings")
class Settings(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.response(200, SettingsSchema, headers=RATE_LIMIT_HEADERS, example=SETTINGS_EXAMPLE)
    def get(self):
        """The effective settings: every key, its default where the tenant set nothing."""
        with runtime().engine.connect() as conn:
            return tenant_store.get_settings(conn, tenant_id()).as_dict()

    @blp.key_responses("admin")
    @blp.body_responses()
    @blp.arguments(SettingsChangeSchema, required=True, example=CHANGE_EXAMPLE,
                   description="the settings to change; keys not given keep their value")
    @blp.error_response(409, "the change, merged with the current settings, breaks a rule "
                             "between settings (the thresholds must rise); nothing changed",
                        RATE_LIMIT_HEADERS)
    @blp.response(200, SettingsSchema, headers=RATE_LIMIT_HEADERS, example=SETTINGS_EXAMPLE)
    def patch(self, changes):
        """Change some settings; answers the effective settings after the change.

        An unknown key or a bad value is a 422 and a change that breaks the rising thresholds
        a 409; either way nothing changes."""
        try:
            with runtime().engine.begin() as conn:
                result = tenant_store.update_settings(conn, tenant_id(), changes)
        except ValidationError as exc:
            abort(409, message="the change conflicts with the current settings; see errors",
                  errors=exc.messages)
        runtime().forget_settings(tenant_id())
        return result.as_dict()
