"""API keys: random, shown once, stored as a SHA-256 hash behind a short public prefix.

A key reads ``gk_live_<prefix>_<secret>``: the prefix (8 random characters) finds the row, the
whole key's hash is compared in constant time. The secret part carries 192 bits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from gateway.store.tables import api_keys
from gateway.store.types import new_id, utcnow

SCOPES = ("admin", "zapier")
KEY_PREFIX = "gk_live_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)  # avoid a write on every request


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant_id: str
    prefix: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    api_key: str  # the only time the full key exists outside its owner's hands


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, tenant_id: str, scope: str = "admin") -> NewKey:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    info = KeyInfo(id=new_id("key"), tenant_id=tenant_id, prefix=prefix, scope=scope,
                   created_at=utcnow(), last_used_at=None, revoked_at=None)
    conn.execute(api_keys.insert().values(id=info.id, tenant_id=tenant_id, prefix=prefix,
                                          key_hash=_hash(key), scope=scope,
                                          created_at=info.created_at))
    return NewKey(info=info, api_key=key)


def _info(row) -> KeyInfo:  # noqa: ANN001
    return KeyInfo(id=row.id, tenant_id=row.tenant_id, prefix=row.prefix, scope=row.scope,
                   created_at=row.created_at, last_used_at=row.last_used_at,
                   revoked_at=row.revoked_at)


def list_keys(conn: Connection, tenant_id: str) -> list[KeyInfo]:
    rows = conn.execute(select(api_keys).where(api_keys.c.tenant_id == tenant_id)
                        .order_by(api_keys.c.created_at))
    return [_info(row) for row in rows]


def revoke_key(conn: Connection, key_id: str, tenant_id: str | None = None) -> bool:
    """Revoke a key; False when there is no such (unrevoked) key (for that tenant)."""
    stmt = update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if tenant_id is not None:
        stmt = stmt.where(api_keys.c.tenant_id == tenant_id)
    return conn.execute(stmt.values(revoked_at=utcnow())).rowcount == 1


def parse_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = key[len(KEY_PREFIX):].partition("_")
    if not sep or len(prefix) != 8 or not rest:
        return None
    return prefix


def authenticate(conn: Connection, key: str) -> KeyInfo | None:
    """The live key matching ``key``, or None (malformed, unknown, wrong or revoked)."""
    prefix = parse_prefix(key)
    if prefix is None:
        return None
    row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    if row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
        conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=now))
    return _info(row)
