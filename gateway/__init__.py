"""The retention gateway. :func:`create_app` builds the Flask app."""

from __future__ import annotations

from flask import Flask

from gateway.runtime import Runtime
from gateway.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """The app factory: settings from the environment unless given; the embedded SQLite
    default is created and migrated on first start.

    Every request body is bounded before the app sees it (:mod:`gateway.api.body_limit`),
    JSON bodies are parsed in one place (:mod:`gateway.api.json_body`), and every error is
    answered in one shape (:mod:`gateway.api.errors`), which the OpenAPI document describes
    (:mod:`gateway.api.openapi`)."""
    from gateway.api import (
        actions,
        connections_api,
        deliveries,
        docs_assets,
        errors,
        health,
        hooks,
        json_body,
        me,
        routes_api,
        searches,
        tenant_settings_api,
        triggers,
        webhooks,
    )
    from gateway.api.body_limit import BodyLimit
    from gateway.api.openapi import GatewayApi

    rt = runtime or Runtime.open(settings)
    app = Flask(__name__, instance_path=str(rt.settings.instance_path))
    app.config.update(
        MAX_CONTENT_LENGTH=rt.settings.max_body_bytes,
        API_TITLE="Retention gateway",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",  # its assets: gateway.api.docs_assets, no CDN
        API_SPEC_OPTIONS={
            "info": {"description": (
                "Every error answers `{\"error\": message, \"errors\": field errors}` (at most "
                "100 field errors listed; `errors_omitted` counts the rest). Request bodies "
                "are JSON, at most GATEWAY_MAX_BODY_BYTES (413 above), nested at most 64 "
                "levels deep.")},
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "basicAuth": {"type": "http", "scheme": "basic",
                              "description": "the API key as the username, no password"},
            }},
        },
    )
    app.extensions["gateway"] = rt
    json_body.install(app)
    docs_assets.install(app)
    api = GatewayApi(app)
    errors.register(app)
    api.register_blueprint(health.blp)
    for blueprint in (me.blp, tenant_settings_api.blp, triggers.blp, actions.blp, searches.blp,
                      deliveries.blp, connections_api.blp, webhooks.blp, hooks.blp):
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
    api.register_blueprint(routes_api.blp, url_prefix=API_PREFIX)
    app.wsgi_app = BodyLimit(app.wsgi_app, rt.settings.max_body_bytes)
    return app
