"""JSON text with exact decimals, for every client and sandbox.

The standard ``json`` module cannot write a ``Decimal`` as a number, and a float would turn
``19.99`` into ``19.989999...`` for some amounts. :func:`dumps` writes each Decimal as its own
decimal text; :func:`loads` reads numbers with a fraction back as Decimal.

:func:`check_depth` and :func:`loads_bounded` refuse nesting deeper than a bound *before* the
parser recurses, so hostile input is a clear error (``JsonDepthError``), never a RecursionError.
Both the gateway and the sandboxes parse untrusted bodies through them.
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

# A per-process mark no payload can predict: a Decimal goes out as a marked string first and the
# quoted mark is then replaced by the number's text.
_MARK = "\x00decimal-" + secrets.token_hex(8) + "-"
_MARKED = re.compile(re.escape(json.dumps(_MARK)[:-1]) + r'(\d+)"')


def dumps(payload: Any) -> str:
    """Compact JSON text in which every finite ``Decimal`` is written exactly, as a number."""
    decimals: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Decimal) and value.is_finite():
            decimals.append(format(value, "f"))
            return f"{_MARK}{len(decimals) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    text = json.dumps(payload, default=default, separators=(",", ":"))
    if not decimals:
        return text
    return _MARKED.sub(lambda m: decimals[int(m.group(1))], text)


#: The deepest nesting accepted from outside: far beyond any real payload, far below recursion.
MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class JsonDepthError(ValueError):
    """JSON text nested deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def check_depth(text: str | bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonDepthError` when ``text`` opens more than ``max_depth`` arrays or
    objects inside one another. Brackets inside strings do not count. Cheap when the text has
    fewer opening brackets than the bound (then it cannot be too deep)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return
    depth = 0
    for match in _BRACKETS.finditer(_STRING.sub(b"", data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise JsonDepthError(max_depth)
        else:
            depth -= 1


class JsonTextError(ValueError):
    """JSON whose strings hold a character no database keeps as text: NUL (``\\u0000``, which
    PostgreSQL refuses in text and JSON) or half of a surrogate pair (not Unicode text at all,
    so it cannot be written as UTF-8)."""

    def __init__(self) -> None:
        super().__init__("the request body is not valid JSON text: a string holds a NUL "
                         "character (\\u0000) or an unpaired surrogate (\\ud800-\\udfff)")


# The escapes that can spell such a character: checked for on the raw text first, so bodies
# without one (nearly all) cost one scan and no walk.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _strings_are_text(value: Any) -> bool:
    """No string (key or value) in ``value`` holds NUL or an unpaired surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def loads_bounded(text: str | bytes, max_depth: int = MAX_DEPTH, *,
                  exact: bool = False) -> Any:
    """``json.loads`` after :func:`check_depth`; ``exact`` reads fractions as Decimal.
    Raises :class:`JsonDepthError`, :class:`JsonTextError` (a NUL or an unpaired surrogate in
    a string) or ``json.JSONDecodeError`` (all ValueErrors)."""
    check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_float=Decimal) if exact else json.loads(text)
    except RecursionError:  # belt and braces: the bound above should make this unreachable
        raise JsonDepthError(max_depth) from None
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _SUSPECT.search(data) and not _strings_are_text(value):
        raise JsonTextError()
    return value


def loads(text: str | bytes) -> Any:
    """Parse JSON with every number that has a fraction or exponent read as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)
