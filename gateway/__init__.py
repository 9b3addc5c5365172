"""The retention gateway. :func:`create_app` builds the Flask app."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from gateway.runtime import Runtime
from gateway.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """The app factory: settings from the environment unless given; the embedded SQLite
    default is created and migrated on first start."""
    from gateway.api import errors, health, me, tenant_settings_api

    rt = runtime or Runtime.open(settings)
    app = Flask(__name__, instance_path=str(rt.settings.instance_path))
    app.config.update(
        MAX_CONTENT_LENGTH=rt.settings.max_body_bytes,
        API_TITLE="Retention gateway",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {"type": "http", "scheme": "basic",
                              "description": "the API key as the username, no password"},
            }},
        },
        JSON_SORT_KEYS=False,
    )
    app.extensions["gateway"] = rt
    api = Api(app)
    # flask-smorest answers errors in its own shape; ours is {"error", "errors"} everywhere.
    api.handle_http_exception = errors.http_error
    errors.register(app)
    app.register_blueprint(health.blp)
    for blueprint in (me.blp, tenant_settings_api.blp):
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
    return app
