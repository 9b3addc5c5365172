"""What one gateway process holds: its settings, database engine, credential vault and rate
limiter. Kept on the Flask app (``app.extensions["gateway"]``) and reachable with
:func:`runtime` inside a request, or built directly by commands that run without the app."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app
from limits import storage as limits_storage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Engine

from gateway import tenant_settings
from gateway.crypto import Vault, secret_key
from gateway.settings import Settings
from gateway.store import db
from gateway.store import tenants as tenant_store

SETTINGS_CACHE_SECONDS = 10.0


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    _settings_cache: dict[str, tuple[float, tenant_settings.TenantSettings]] = field(
        default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings | None = None, *, migrate: bool | None = None) -> "Runtime":
        settings = settings or Settings.from_env()
        runtime = cls(settings=settings, engine=db.open_engine(settings, migrate=migrate))
        if settings.embedded:
            _ = runtime.vault  # create the key file now, and say so once, not on first use
        return runtime

    @cached_property
    def vault(self) -> Vault:
        return Vault(secret_key(self.settings))

    @cached_property
    def api_limiter(self) -> MovingWindowRateLimiter:
        uri = self.settings.redis_url or "memory://"
        return MovingWindowRateLimiter(limits_storage.storage_from_string(uri))

    def cached_settings(self, tenant_id: str) -> tenant_settings.TenantSettings:
        """A tenant's settings, re-read at most every few seconds (for hot paths)."""
        now = time.monotonic()
        with self._lock:
            hit = self._settings_cache.get(tenant_id)
            if hit and now - hit[0] < SETTINGS_CACHE_SECONDS:
                return hit[1]
        with self.engine.connect() as conn:
            value = tenant_store.get_settings(conn, tenant_id)
        with self._lock:
            self._settings_cache[tenant_id] = (now, value)
        return value

    def forget_settings(self, tenant_id: str) -> None:
        with self._lock:
            self._settings_cache.pop(tenant_id, None)

    def close(self) -> None:
        self.engine.dispose()


def runtime() -> Runtime:
    return current_app.extensions["gateway"]
