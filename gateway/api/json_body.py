"""Every JSON request body the API reads is parsed in one place, with a bounded depth.

- :class:`BoundedJSONProvider` is the app's JSON provider: its ``loads`` (which
  ``request.get_json()`` uses) is :func:`connectors.jsontext.loads_bounded`, so nesting deeper
  than :data:`connectors.jsontext.MAX_DEPTH` is refused before the parser recurses.
- :class:`GatewayRequest` turns a body that cannot be read as JSON into a clear JSON error:
  400 for bad JSON (too deep, malformed, not UTF-8), 415 for a body that is not JSON at all.
- :func:`parse_json_body` runs before every view: a body sent as JSON is parsed (and cached on
  the request) before anything else reads it, so no parser, not even webargs' own (which
  calls ``json.loads`` itself), ever sees JSON that is malformed or too deep.
- :class:`JsonBodyParser` is the webargs parser of :class:`gateway.api.blueprint.Blueprint`:
  ``@blp.arguments`` bodies come from ``request.get_json()`` (a body that is not JSON is a 415),
  and a body of the wrong JSON type (an array where an object is expected) is a 400.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Request, current_app, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import abort
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from connectors.jsontext import JsonDepthError, JsonTextError, loads_bounded

NOT_JSON = "the request body must be JSON: send it with 'Content-Type: application/json'"


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with request bodies parsed by :func:`loads_bounded`."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_bounded(s)


def _describe(error: ValueError) -> str:
    if isinstance(error, (JsonDepthError, JsonTextError)):
        return str(error)  # "JSON nested deeper than 64 levels", "... a NUL character ..."
    if isinstance(error, UnicodeDecodeError):
        return "the request body is not valid JSON: it is not UTF-8 text"
    if isinstance(error, json.JSONDecodeError):
        return (f"the request body is not valid JSON: {error.msg} "
                f"(line {error.lineno}, column {error.colno})")
    return "the request body is not valid JSON"  # e.g. an integer of thousands of digits


class GatewayRequest(Request):
    """The app's request class: JSON that cannot be loaded is a clear 400 or 415."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType(NOT_JSON)
        raise BadRequest(_describe(e))


def parse_json_body() -> None:
    """``before_request``: parse a body sent as JSON now (an error is a 400 before any view).
    A request for no route (404, 405) is left to answer that, and a view that reads its raw
    body itself (a class with ``raw_body = True``: the webhooks, whose signature is checked
    on the bytes before the JSON) is left to parse it once, in its own order."""
    if request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(getattr(view, "view_class", None), "raw_body", False):
        return
    if request.is_json and (request.content_length or 0) > 0:
        request.get_json()


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading JSON bodies through the app's one JSON path."""

    def load_json(self, req: Request, schema: Any) -> Any:
        data = req.get_json()  # 415 when not JSON, 400 when not valid JSON
        if getattr(schema, "many", False):
            if not isinstance(data, list):
                abort(400, message="the request body must be a JSON array")
        elif not isinstance(data, dict):
            abort(400, message="the request body must be a JSON object")
        return data


def install(app: Flask) -> None:
    """Make ``app`` parse JSON bodies as this module says."""
    app.request_class = GatewayRequest
    app.json_provider_class = BoundedJSONProvider
    app.json = BoundedJSONProvider(app)
    app.before_request(parse_json_body)
