"""A delivery's payload: the canonical record as JSON, and back.

``dump(record)`` gives ``{"kind": "customer" | "order" | "product" | "cart", "data": {...}}``
for the canonical records of :mod:`gateway.model`, and ``{"kind": "json", "data": value}`` for
the plain JSON values some operations take (a delete's query, an email). Datetimes are ISO 8601
with their offset, dates ISO, money ``{"minor", "currency"}``; nothing is a float, so an amount
comes back exactly. ``load(payload)`` rebuilds the record; a payload that cannot be read raises
:class:`PayloadError` (the row is dead-lettered: it will never read better).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from gateway.model import Cart, Customer, Order, Product

KINDS: dict[str, type] = {"customer": Customer, "order": Order, "product": Product,
                          "cart": Cart}
_KIND_OF = {cls: kind for kind, cls in KINDS.items()}


class PayloadError(ValueError):
    """A stored payload that does not read back as a record."""


def dump(record: Any) -> dict[str, Any]:
    """The JSON payload for ``record``; ``TypeError`` for a value JSON cannot hold."""
    kind = _KIND_OF.get(type(record))
    if kind is not None:
        return {"kind": kind, "data": _dump(record)}
    value = _dump(record)
    json.dumps(value)  # refuses what a JSON column could not store, here and not at commit
    return {"kind": "json", "data": value}


def load(payload: Any) -> Any:
    """The record a payload holds."""
    if not isinstance(payload, dict) or "kind" not in payload or "data" not in payload:
        raise PayloadError("a payload is {\"kind\", \"data\"}")
    kind, data = payload["kind"], payload["data"]
    if kind == "json":
        return data
    cls = KINDS.get(kind)
    if cls is None:
        raise PayloadError(f"unknown payload kind {kind!r}")
    try:
        return _loader(cls)(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise PayloadError(f"a {kind} payload does not read back: {exc}") from exc


_PLAIN = (str, int, bool, type(None))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELD_NAMES.get(cls)
    if names is None and dataclasses.is_dataclass(cls):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _dump(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:
        return value
    names = _field_names(cls)
    if names is not None:
        return {name: _dump(getattr(value, name)) for name in names}
    if cls is list or cls is tuple:
        return [_dump(v) for v in value]
    if cls is dict:
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, _PLAIN):  # subclasses (an IntEnum, a str subclass)
        return value
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    if isinstance(value, float):
        raise TypeError("a payload holds no floats (amounts are exact)")
    raise TypeError(f"cannot store a {type(value).__name__} in a payload")


@lru_cache(maxsize=None)
def _loader(tp: Any) -> Callable[[Any], Any]:
    """A function that rebuilds a value of type ``tp`` from its JSON (built once per type)."""
    if tp is Any:
        return _same
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _loader(arms[0]) if len(arms) == 1 else _same
        return lambda value: None if value is None else inner(value)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        item = _loader(args[0]) if args else _same
        return lambda value: [item(v) for v in _expect(value, list, "a list")]
    if origin is dict:
        args = typing.get_args(tp)
        item = _loader(args[1]) if args else _same
        return lambda value: {k: item(v) for k, v in _expect(value, dict, "an object").items()}
    if dataclasses.is_dataclass(tp):
        return _dataclass_loader(tp)
    if tp is datetime:
        return lambda value: None if value is None else datetime.fromisoformat(value)
    if tp is date:
        return lambda value: None if value is None else date.fromisoformat(value)
    if tp in (bool, int, str):
        return _scalar_loader(tp)
    return _same


def _dataclass_loader(cls: type) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Callable[[Any], Any]] = {}

    def load_instance(value: Any) -> Any:
        if not fields:  # filled on first use: nested types may refer back to this one
            fields.update({f.name: _loader(hints[f.name]) for f in dataclasses.fields(cls)})
        if value is None:
            return None
        _expect(value, dict, f"an object for {cls.__name__}")
        return cls(**{name: fields[name](v) for name, v in value.items() if name in fields})

    return load_instance


def _scalar_loader(cls: type) -> Callable[[Any], Any]:
    name = {bool: "true or false", int: "a whole number", str: "a string"}[cls]

    def load_scalar(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not cls and not (cls is str and isinstance(value, str)):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return load_scalar


def _same(value: Any) -> Any:
    return value


def _expect(value: Any, cls: type, what: str) -> Any:
    if not isinstance(value, cls):
        raise TypeError(f"expected {what}, got {type(value).__name__}")
    return value
