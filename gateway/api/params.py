"""What the Zapier-facing blueprints (triggers, actions, searches) share about parameters.

flask-smorest answers 422 when ``@blp.arguments`` fails; these endpoints answer 400 for any
invalid input, with the field errors named, and refuse query parameters they do not know
(webargs would silently drop them). :class:`ZapierBlueprint` does both for every
``@blp.arguments`` it declares.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask_smorest import abort
from marshmallow import RAISE, ValidationError

from gateway.api.blueprint import Blueprint
from gateway.api.json_body import JsonBodyParser

INVALID_PARAMETERS = "the request is not valid; see errors"


class StrictParser(JsonBodyParser):
    """The gateway's body parser, where unknown query parameters are errors too, and every
    validation error is a 400."""

    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {**JsonBodyParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": RAISE, "querystring": RAISE}

    def handle_error(self, error: ValidationError, req: Any, schema: Any, *,
                     error_status_code: int | None,
                     error_headers: Any) -> NoReturn:
        abort(error_status_code or self.DEFAULT_VALIDATION_STATUS,
              message=INVALID_PARAMETERS, messages=error.messages, headers=error_headers)


class ZapierBlueprint(Blueprint):
    """The gateway's blueprint (:class:`gateway.api.blueprint.Blueprint`) whose argument
    errors, unknown query parameters included, are 400s."""

    ARGUMENTS_PARSER = StrictParser()

    def arguments(self, schema: Any, **kwargs: Any):  # noqa: ANN201 - a decorator factory
        """flask-smorest's, with a 400 for invalid input and the schema instantiated once
        here (webargs builds a new instance of a schema class on every request: ~80 µs)."""
        kwargs.setdefault("error_status_code", 400)
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)
