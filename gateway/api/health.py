"""Liveness and readiness, without auth (for load balancers and process managers)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from gateway.runtime import runtime
from gateway.store.db import ping

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@blp.get("/readyz")
def readyz():
    """The database answers."""
    if ping(runtime().engine):
        return jsonify(status="ready", database="ok")
    return jsonify(error="the database does not answer", status="not ready"), 503
