"""Tenants' webhook signing secrets, encrypted at rest with the credential vault.

Each tenant has one current secret and, for :data:`PREVIOUS_SECRET_HOURS` after a rotation,
the previous one, which is still accepted (so senders can switch over). The accept path reads
them through :class:`SecretCache`: a process trusts what it read for
:data:`CACHE_SECONDS`, so a rotation by another process (``python app.py webhooks secret TENANT
--rotate``) is seen here within that many seconds; one in this process at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import Connection, select

from gateway.crypto import Vault
from gateway.store.tables import webhook_secrets
from gateway.store.types import utcnow
from gateway.store.upsert import upsert
from gateway.webhooks.signatures import new_secret

PREVIOUS_SECRET_HOURS = 24
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class TenantSecrets:
    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)
    rotated_at: datetime | None = None

    def accepted(self, now: datetime) -> list[str]:
        """The secrets a post signed at ``now`` may use: the current one, and the previous
        one within a day of the rotation."""
        if self.previous and self.rotated_at is not None and \
                now - self.rotated_at < timedelta(hours=PREVIOUS_SECRET_HOURS):
            return [self.current, self.previous]
        return [self.current]


def _decrypt(vault: Vault, token: bytes | None) -> str | None:
    return None if token is None else vault.decrypt(token)["secret"]


def load_secrets(conn: Connection, vault: Vault, tenant_id: str) -> TenantSecrets | None:
    """The tenant's secrets, or None when it has none yet."""
    row = conn.execute(select(webhook_secrets).where(
        webhook_secrets.c.tenant_id == tenant_id)).first()
    if row is None:
        return None
    return TenantSecrets(_decrypt(vault, row.current), _decrypt(vault, row.previous),
                         row.rotated_at)


def ensure_secret(conn: Connection, vault: Vault, tenant_id: str) -> TenantSecrets:
    """The tenant's secrets, a current one created first when it has none."""
    found = load_secrets(conn, vault, tenant_id)
    if found is not None:
        return found
    now = utcnow()
    upsert(conn, webhook_secrets,
           {"tenant_id": tenant_id, "current": vault.encrypt({"secret": new_secret()}),
            "previous": None, "rotated_at": None, "created_at": now, "updated_at": now},
           keys=["tenant_id"], update=[])
    return load_secrets(conn, vault, tenant_id)  # type: ignore[return-value]


def rotate_secret(conn: Connection, vault: Vault, tenant_id: str, *,
                  now: datetime | None = None) -> TenantSecrets:
    """A new current secret; the old current one stays accepted for a day."""
    now = now or utcnow()
    old = ensure_secret(conn, vault, tenant_id)
    conn.execute(webhook_secrets.update().where(webhook_secrets.c.tenant_id == tenant_id).values(
        current=vault.encrypt({"secret": new_secret()}),
        previous=vault.encrypt({"secret": old.current}), rotated_at=now, updated_at=now))
    return load_secrets(conn, vault, tenant_id)  # type: ignore[return-value]


class SecretCache:
    """Secrets (and their absence) per tenant, trusted for ``ttl`` seconds."""

    def __init__(self, ttl: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._entries: dict[str, tuple[float, TenantSecrets | None]] = {}
        self._lock = threading.Lock()

    def get(self, engine, vault: Vault, tenant_id: str) -> TenantSecrets | None:  # noqa: ANN001
        now = self.clock()
        with self._lock:
            hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with engine.connect() as conn:
            value = load_secrets(conn, vault, tenant_id)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[tenant_id] = (now, value)
        return value

    def forget(self, tenant_id: str) -> None:
        with self._lock:
            self._entries.pop(tenant_id, None)


_CACHES_LOCK = threading.Lock()


def secret_cache(runtime: object) -> SecretCache:
    """The process's cache for ``runtime`` (one per runtime, kept on it)."""
    with _CACHES_LOCK:
        return vars(runtime).setdefault("_webhook_secret_cache", SecretCache())
