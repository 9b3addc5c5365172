"""The flask-smorest ``Api`` of the gateway: its OpenAPI document describes the answers the
app really gives.

- Errors are documented with :class:`gateway.api.errors.ErrorSchema` (``{error, errors,
  errors_omitted}``), the shape :func:`gateway.api.errors.http_error` answers, not
  flask-smorest's own ``{code, status, message}``.
- No catch-all ``default`` response: each view lists the statuses it can answer (see
  :class:`gateway.api.blueprint.Blueprint`).
- A field whose metadata states ``additionalProperties`` keeps it: apispec would otherwise
  derive it from a ``Dict`` field's value type, and document keys the validator refuses.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Api
from marshmallow import fields

from gateway.api import errors


def _stated_additional_properties(self: Any, field: fields.Field, **kwargs: Any) -> dict:
    """apispec attribute function, run after its own: metadata's ``additionalProperties``
    wins over the one apispec derives from a ``Dict``'s value field."""
    if "additionalProperties" in field.metadata:
        return {"additionalProperties": field.metadata["additionalProperties"]}
    return {}


class GatewayApi(Api):
    ERROR_SCHEMA = errors.ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _init_spec(self, *args: Any, **kwargs: Any) -> None:
        super()._init_spec(*args, **kwargs)
        self.ma_plugin.converter.add_attribute_function(_stated_additional_properties)

    def handle_http_exception(self, error: Any) -> Any:
        """Errors in the gateway's one shape (flask-smorest's handler would use its own)."""
        return errors.http_error(error)
