"""JSON text with exact decimals, for every client and sandbox.

The standard ``json`` module cannot write a ``Decimal`` as a number, and a float would turn
``19.99`` into ``19.989999...`` for some amounts. :func:`dumps` writes each Decimal as its own
decimal text; :func:`loads` reads numbers with a fraction back as Decimal.
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


def loads(text: str | bytes) -> Any:
    """Parse JSON with every number that has a fraction or exponent read as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)
