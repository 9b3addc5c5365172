"""The blueprint every gateway API module uses: bodies parsed through the one JSON path, and
decorators that document the answers a view can give besides its success.

A view documents exactly the statuses it can answer (the API has no catch-all ``default``
response), so the document tells a client, and a fuzzer, what to expect::

    @blp.route("/settings")
    class Settings(MethodView):
        decorators = [requires("admin")]

        @blp.key_responses("admin")
        @blp.body_responses()
        @blp.arguments(SettingsChangeSchema)
        @blp.response(200, SettingsSchema, headers=RATE_LIMIT_HEADERS)
        def patch(self, changes): ...
"""

from __future__ import annotations

from typing import Any, Callable

import flask_smorest

from gateway.api.auth import SECURITY
from gateway.api.errors import ErrorSchema
from gateway.api.json_body import JsonBodyParser

Decorator = Callable[[Callable], Callable]


def _integer_header(description: str, minimum: int, required: bool) -> dict[str, Any]:
    return {"description": description, "required": required,
            "schema": {"type": "integer", "minimum": minimum}}


def rate_limit_headers(required: bool) -> dict[str, dict[str, Any]]:
    """The per-key budget headers of an authenticated answer."""
    return {
        "X-RateLimit-Limit": _integer_header("the key's requests per minute", 1, required),
        "X-RateLimit-Remaining": _integer_header("requests left in the current window", 0,
                                                 required),
        "X-RateLimit-Reset": _integer_header("whole seconds until the budget next grows back",
                                             1, required),
    }


#: On every answer a valid key got (its success, and errors after authentication).
RATE_LIMIT_HEADERS = rate_limit_headers(required=True)


def _compose(*decorators: Decorator) -> Decorator:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint with the gateway's JSON body parser and answer docs."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def error_response(self, status: int, description: str,
                       headers: dict[str, Any] | None = None) -> Decorator:
        """Document an error answer in the one error shape."""
        return self.alt_response(status, schema=ErrorSchema, description=description,
                                 headers=headers)

    def key_responses(self, scope: str) -> Decorator:
        """The view needs an API key of ``scope`` (see :func:`gateway.api.auth.requires`):
        its security, and its 401, 403 (admin views) and 429."""
        decorators = [
            self.doc(security=SECURITY),
            self.error_response(401, "no API key, a malformed one, or one that is not live", {
                "WWW-Authenticate": {"description": "the scheme to use", "required": True,
                                     "schema": {"type": "string"}}}),
            self.error_response(429, "over the key's per-minute limit, or too many failed "
                                     "authentications from this address", {
                "Retry-After": _integer_header("seconds to wait before trying again", 1, True),
                **rate_limit_headers(required=False)}),
        ]
        if scope == "admin":
            decorators.append(self.error_response(
                403, "the key's scope does not allow this (it needs an admin key)",
                RATE_LIMIT_HEADERS))
        return _compose(*decorators)

    def body_responses(self) -> Decorator:
        """The view reads a JSON body: its 400, 413 and 415."""
        return _compose(
            self.error_response(400, "the body is not valid JSON (malformed, not UTF-8, or "
                                     "nested deeper than 64 levels) or not of the expected "
                                     "JSON type"),
            self.error_response(413, "the body is larger than GATEWAY_MAX_BODY_BYTES"),
            self.error_response(415, "the body is not sent as JSON (Content-Type: "
                                     "application/json)"),
        )
