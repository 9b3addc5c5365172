"""The settings API's two schemas, derived from :class:`gateway.tenant_settings.
TenantSettingsSchema` (its fields, validators and descriptions), so they cannot drift from it:

- :class:`SettingsChangeSchema`, the ``PATCH`` body: every key optional, an unknown key an
  error, and JSON's own types enforced (``true``, not ``"yes"``; ``1.5``, not ``"1.5"``), since
  a JSON client is held to the documented types. The command line keeps its own, looser
  reading of ``KEY=VALUE`` words.
- :class:`SettingsSchema`, the answer of ``GET`` and ``PATCH``: every key present.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Mapping

from marshmallow import RAISE, Schema, pre_load
from marshmallow import fields as mf

from gateway.tenant_settings import PULL_ROUTES, TenantSettingsSchema


class JsonNumber(mf.Float):
    """A JSON number: a string or a boolean is refused, not converted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class JsonBoolean(mf.Boolean):
    """A JSON ``true`` or ``false``; ``"yes"``, ``1`` and the like are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


_JSON_TYPED = {mf.Float: JsonNumber, mf.Boolean: JsonBoolean}


def _json_typed(field: mf.Field) -> mf.Field:
    strict = _JSON_TYPED.get(type(field))
    if strict is None:
        return copy.deepcopy(field)
    return strict(validate=list(field.validators), metadata=dict(field.metadata))


def _declared() -> dict[str, mf.Field]:
    return dict(TenantSettingsSchema._declared_fields)


class _SettingsChangeBase(Schema):
    error_messages = {
        "unknown": "unknown setting (GET /api/v1/settings lists them all)",
        "type": "the request body must be a JSON object of settings to change",
    }

    class Meta:
        unknown = RAISE

    @pre_load
    def _currency_in_any_case(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("base_currency"), str):
            return {**data, "base_currency": data["base_currency"].strip().upper()}
        return data


SettingsChangeSchema = _SettingsChangeBase.from_dict(
    {name: _json_typed(field) for name, field in _declared().items()},
    name="SettingsChangeSchema",
)


def _present(name: str, field: mf.Field) -> mf.Field:
    field = copy.deepcopy(field)
    field.required = True
    if name == "pull_interval_minutes":  # every route has an interval, its default or not
        field.metadata = {**field.metadata, "required": list(PULL_ROUTES)}
    return field


SettingsSchema = Schema.from_dict(
    {name: _present(name, field) for name, field in _declared().items()},
    name="SettingsSchema",
)
