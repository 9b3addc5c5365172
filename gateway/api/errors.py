"""One error shape for every failure: ``{"error": "...", "errors": {...}}``, never HTML.

An error body is bounded whatever the request was: at most :data:`MAX_FIELD_ERRORS` field
errors are listed, counted as *leaves* (one leaf is the list of messages for one field path, so
``{"a": {"0": ["bad"], "1": ["bad"]}}`` is two), in the order the validator reported them;
``errors_omitted`` says how many more there were. Field names echo the client's keys, so each
is cut to :data:`MAX_KEY_CHARS`; each message to :data:`MAX_MESSAGE_CHARS` and each leaf to
:data:`MAX_MESSAGES_PER_FIELD` messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MAX_FIELD_ERRORS = 100
MAX_KEY_CHARS = 64
MAX_MESSAGE_CHARS = 300
MAX_MESSAGES_PER_FIELD = 5


class ErrorSchema(Schema):
    """The body of every error response (also flask-smorest's ``ERROR_SCHEMA``)."""

    error = fields.String(required=True, metadata={"description": "what went wrong"})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "field errors keyed by field (by index for array items), "
                                 "nested as the body is; each leaf is a list of messages. "
                                 f"At most {MAX_FIELD_ERRORS} leaves are listed"},
    )
    errors_omitted = fields.Integer(
        metadata={"minimum": 1,
                  "description": "how many more field errors there were than are listed"},
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _leaf(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_cut(str(item), MAX_MESSAGE_CHARS) for item in value[:MAX_MESSAGES_PER_FIELD]]
    return _cut(str(value), MAX_MESSAGE_CHARS)


def bound_errors(errors: Any, limit: int = MAX_FIELD_ERRORS) -> tuple[Any, int]:
    """The first ``limit`` leaves of a (nested) field-error mapping, with string keys, and how
    many leaves were left out."""
    omitted = 0
    kept = 0

    def walk(node: Mapping) -> dict[str, Any]:
        nonlocal kept, omitted
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(value, Mapping):
                if kept >= limit:
                    omitted += _count_leaves(value)
                    continue
                child = walk(value)
                if child:
                    out[_cut(str(key), MAX_KEY_CHARS)] = child
            elif kept >= limit:
                omitted += 1
            else:
                name = _cut(str(key), MAX_KEY_CHARS)
                previous = out.get(name)  # two long keys may cut to the same name
                out[name] = _leaf(value) if previous is None else previous
                kept += 1
        return out

    if not isinstance(errors, Mapping):
        return {"_schema": _leaf(errors if isinstance(errors, (list, tuple)) else [errors])}, 0
    return walk(errors), omitted


def _count_leaves(node: Mapping) -> int:
    return sum(_count_leaves(v) if isinstance(v, Mapping) else 1 for v in node.values())


def error_response(status: int, message: str, errors: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    """A JSON error response in the one shape, with its field errors bounded."""
    body: dict[str, Any] = {"error": _cut(message, MAX_MESSAGE_CHARS * 2)}
    if errors:
        listed, omitted = bound_errors(errors)
        body["errors"] = listed
        if omitted:
            body["errors_omitted"] = omitted
            body["error"] += f" ({omitted} more field errors not listed)"
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
    explicit = (getattr(exc, "data", None) or {}).get("message")
    message = explicit or exc.description or exc.name
    if status == 422 and not explicit and _field_errors(exc):
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
