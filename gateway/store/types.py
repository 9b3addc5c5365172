"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: JSON on SQLite, JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB(), "postgresql")

#: An auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)  # every 10-bit value as 2 chars
_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs: 130 bits, the top two always zero


def new_id(prefix: str) -> str:
    """A unique id that sorts by creation time: ``prefix_`` + 26 base32 characters of
    (milliseconds since 1970 << 80 | 80 random bits). Bulk writers make millions of these, so
    the encoding is two characters per table lookup."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    return f"{prefix}_{''.join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
