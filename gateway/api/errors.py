"""One error shape for every failure: ``{"error": "...", "errors": {...}}``, never HTML."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "what went wrong"})
    errors = fields.Dict(metadata={"description": "field errors, keyed by field"})


def error_response(status: int, message: str, errors: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_errors(exc: HTTPException) -> Any:
    """flask-smorest puts marshmallow's messages in ``exc.data["messages"]`` keyed by location
    (json, query, ...); a body's field errors are the useful part."""
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if isinstance(messages, dict) and len(messages) == 1:
        return next(iter(messages.values()))
    return messages or data.get("errors")


def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = (getattr(exc, "data", None) or {}).get("message") or exc.description or exc.name
    if status == 422 and _field_errors(exc):
        message = "the request is not valid; see errors"
    headers = {}
    if exc.response is not None:
        headers = {k: v for k, v in exc.response.headers.items() if k.lower() != "content-type"}
    elif status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    for name, value in ((getattr(exc, "data", None) or {}).get("headers") or {}).items():
        headers[name] = value
    return error_response(status, str(message), _field_errors(exc), headers)


def unexpected_error(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return http_error(exc)
    log.exception("unhandled error")  # the traceback goes to the log, never to the client
    return error_response(500, InternalServerError.description)


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
