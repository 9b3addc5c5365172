"""Liveness and readiness, without auth (for load balancers and process managers)."""

from __future__ import annotations

from flask import Response, jsonify
from marshmallow import Schema, fields, validate

from gateway.api.blueprint import Blueprint
from gateway.runtime import runtime
from gateway.store.db import ping

blp = Blueprint("health", __name__, description="Liveness and readiness (no key needed)")

NOT_READY = "the database does not answer"


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready"]))
    database = fields.String(required=True, validate=validate.OneOf(["ok"]))


class NotReadySchema(Schema):
    error = fields.String(required=True, metadata={"example": NOT_READY})
    status = fields.String(required=True, validate=validate.OneOf(["not ready"]))


@blp.route("/healthz")
@blp.response(200, HealthSchema, description="the process is up",
              example={"status": "ok"})
def healthz():
    """The process is up."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadySchema, description="the database answers",
              example={"status": "ready", "database": "ok"})
@blp.alt_response(503, schema=NotReadySchema, description=NOT_READY,
                  example={"error": NOT_READY, "status": "not ready"})
def readyz():
    """The database answers (503 when it does not)."""
    if ping(runtime().engine):
        return {"status": "ready", "database": "ok"}
    response: Response = jsonify(error=NOT_READY, status="not ready")
    response.status_code = 503
    return response
