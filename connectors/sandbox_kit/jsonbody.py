"""Reading a request body as JSON, bounded: the one way a sandbox parses what it is sent.

:func:`parse_json_body` refuses, with a :class:`BodyError` that says why, three things the
standard parser would let through or choke on:

* nesting deeper than ``max_depth`` (checked before parsing, by
  :func:`connectors.jsontext.check_depth`), which would otherwise end in a RecursionError and a
  500 (in the parser, or later when the value is written back);
* ``NaN``, ``Infinity`` and ``-Infinity``, which RFC 8259 does not allow, and a number too large
  for a float (``1e400``, which Python would read as infinity): a sandbox that stored one could
  echo a bare ``NaN``/``Infinity``, which is not JSON either;
* anything else that is not JSON text (including an empty body and bytes that are not UTF-8).

Each sandbox maps the error to its own service's 400 shape; ``reason`` tells the cases apart.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, NoReturn

from connectors.jsontext import MAX_DEPTH, JsonDepthError, check_depth

__all__ = ["MAX_DEPTH", "BodyError", "parse_json_body"]


class BodyError(ValueError):
    """A request body that is not acceptable JSON; ``str()`` is a clear one-line reason.

    ``reason`` is :attr:`INVALID` (not JSON text), :attr:`TOO_DEEP` (nested deeper than the
    bound) or :attr:`NOT_FINITE` (NaN, an infinity, or a number beyond a float's range).
    """

    INVALID = "invalid"
    TOO_DEEP = "too_deep"
    NOT_FINITE = "not_finite"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _NotFinite(Exception):
    """Raised inside the parser's hooks; becomes a BodyError outside it."""


def _refuse_constant(name: str) -> NoReturn:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def parse_json_body(data: bytes | str, *, exact: bool = False,
                    max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``data``; :class:`BodyError` when it is not acceptable JSON.

    ``exact`` reads numbers with a fraction or exponent as :class:`~decimal.Decimal` (money),
    else as float. Every value returned can be written back as RFC 8259 JSON.
    """
    try:
        check_depth(data, max_depth)
    except JsonDepthError:
        raise BodyError(BodyError.TOO_DEEP,
                        f"JSON nested deeper than {max_depth} levels") from None
    try:
        return json.loads(data, parse_float=Decimal if exact else _finite_float,
                          parse_constant=_refuse_constant)
    except _NotFinite as exc:
        raise BodyError(BodyError.NOT_FINITE, "Out of range float values are not JSON "
                                              f"compliant: {exc.args[0]!r}") from None
    except RecursionError:  # unreachable below the bound; kept so no input can cause a 500
        raise BodyError(BodyError.TOO_DEEP,
                        f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BodyError(BodyError.INVALID, str(exc)) from None
    except ValueError as exc:  # not UTF-8, an integer with too many digits, ...
        raise BodyError(BodyError.INVALID, f"not JSON text ({exc.__class__.__name__})") from None
