"""API keys: random, shown once, stored as a SHA-256 hash behind a short public prefix.

A key reads ``gk_live_<prefix>_<secret>``: the prefix (8 lowercase hex characters) finds the
row, the whole key's hash is compared in constant time. The secret part carries 192 bits.
Anything that is not of that exact form is refused before the database is asked.

Processes may cache verified keys for a few seconds (see :class:`gateway.runtime.KeyCache`);
:func:`revoke_key` tells this process's caches at once, other processes see the revocation
when their cached entry expires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, or_, select, update

from gateway.store.tables import api_keys
from gateway.store.types import new_id, utcnow

SCOPES = ("admin", "zapier")
KEY_PREFIX = "gk_live_"
_KEY_FORM = re.compile(r"gk_live_([0-9a-f]{8})_([A-Za-z0-9_-]{16,128})")
LAST_USED_GRANULARITY = timedelta(minutes=1)  # last_used_at is at most this stale


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


class RevocationListener(Protocol):
    def forget_key(self, key_id: str) -> None:
        """Drop whatever is cached for ``key_id``."""


_listeners: "weakref.WeakSet[RevocationListener]" = weakref.WeakSet()


def on_revoke(listener: RevocationListener) -> None:
    """Have ``listener.forget_key(key_id)`` called when this process revokes a key (it is
    held weakly: a cache that is gone is simply not told)."""
    _listeners.add(listener)


def digest(key: str) -> str:
    """The SHA-256 (hex) of a presented key: what is stored, and what caches are keyed by."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, tenant_id: str, scope: str = "admin") -> NewKey:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    info = KeyInfo(id=new_id("key"), tenant_id=tenant_id, prefix=prefix, scope=scope,
                   created_at=utcnow(), last_used_at=None, revoked_at=None)
    conn.execute(api_keys.insert().values(id=info.id, tenant_id=tenant_id, prefix=prefix,
                                          key_hash=digest(key), scope=scope,
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
    """Revoke a key; False when there is no such (unrevoked) key (for that tenant).

    This process's key caches drop the key at once (even if the transaction is later rolled
    back: they then just read it again)."""
    stmt = update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if tenant_id is not None:
        stmt = stmt.where(api_keys.c.tenant_id == tenant_id)
    revoked = conn.execute(stmt.values(revoked_at=utcnow())).rowcount == 1
    if revoked:
        for listener in list(_listeners):
            listener.forget_key(key_id)
    return revoked


def parse_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    match = _KEY_FORM.fullmatch(key)
    return match.group(1) if match else None


def verify(conn: Connection, key: str) -> KeyInfo | None:
    """The live key matching ``key``, or None (malformed, unknown, wrong or revoked).
    Reads only; see :func:`touch` for ``last_used_at``."""
    prefix = parse_prefix(key)
    if prefix is None:
        return None
    row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest(key)):
        return None
    if row.revoked_at is not None:
        return None
    return _info(row)


def needs_touch(info: KeyInfo, now: datetime | None = None) -> bool:
    """True when ``info.last_used_at`` is older than :data:`LAST_USED_GRANULARITY`."""
    now = now or utcnow()
    return info.last_used_at is None or now - info.last_used_at > LAST_USED_GRANULARITY


def touch(conn: Connection, key_id: str, now: datetime | None = None) -> bool:
    """Record a use of the key, unless one was recorded less than a minute ago (by any
    process: the condition is in the UPDATE). True when the row was written."""
    now = now or utcnow()
    stale = or_(api_keys.c.last_used_at.is_(None),
                api_keys.c.last_used_at < now - LAST_USED_GRANULARITY)
    stmt = update(api_keys).where(api_keys.c.id == key_id, stale).values(last_used_at=now)
    return conn.execute(stmt).rowcount == 1


def authenticate(conn: Connection, key: str) -> KeyInfo | None:
    """:func:`verify`, then :func:`touch` when the recorded use is stale (one transaction)."""
    info = verify(conn, key)
    if info is not None and needs_touch(info):
        touch(conn, info.id)
    return info
