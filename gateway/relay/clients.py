"""Connector clients for the worker: one per tenant connection, built on first use from the
stored (encrypted) connection and reused until the connection changes.

Every client of a process draws on the one rate budget per credential the HTTP core keeps (in
memory, or in Redis with ``GATEWAY_REDIS_URL``, shared with every other process), so two
tenants' connections with one key, or two workers, stay within the service's limits together.
The HTTP core's own retries are kept short (``http_attempts``); the worker's backoff does the
patient retrying, and the worker's deadline bounds every send.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import select

from connectors import base as registry
from connectors.base import ConnectionConfig
from connectors.http import RetryPolicy
from gateway.runtime import Runtime
from gateway.store.connections import get_connection
from gateway.store.tables import connections

#: The connection a tenant's deliveries go through (``save_connection``'s default name).
CONNECTION_NAME = "default"


class ConnectionUnavailable(Exception):
    """The tenant's connection for a connector is missing or unusable; the message says why,
    never a secret."""


@dataclass
class Destination:
    """A built client with the connection's options (``currency``, ``site_id``, ...)."""

    connection_id: str
    updated_at: datetime
    client: Any
    options: Mapping[str, Any]

    @property
    def budget(self) -> Any | None:
        """The client's rate budget, when it has one (``client.http.budget``)."""
        http = getattr(self.client, "http", None)
        return getattr(http, "budget", None)


class ClientCache:
    def __init__(self, runtime: Runtime, **client_kwargs: Any) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.client_kwargs = {
            "retry": RetryPolicy(max_attempts=settings.http_attempts, backoff_base=0.1,
                                 backoff_cap=1.0, max_elapsed=settings.lease_seconds),
            "time_scale": settings.rate_time_scale,
            "storage_uri": settings.redis_url,
            **client_kwargs,
        }
        self._built: dict[tuple[str, str], Destination] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str, connector: str) -> Destination:
        """The tenant's client for ``connector``; :class:`ConnectionUnavailable` when there is
        no connection or it cannot be used."""
        with self.runtime.engine.connect() as conn:
            row = conn.execute(select(connections.c.id, connections.c.updated_at).where(
                connections.c.tenant_id == tenant_id, connections.c.connector == connector,
                connections.c.name == CONNECTION_NAME)).first()
            key = (tenant_id, connector)
            with self._lock:
                cached = self._built.get(key)
            if row is None:
                self._drop(key)
                raise ConnectionUnavailable(
                    f"the tenant has no {connector} connection; deliveries wait for one")
            if cached is not None and (cached.connection_id, cached.updated_at) == tuple(row):
                return cached
            try:
                stored = get_connection(conn, self.runtime.vault, tenant_id, connector,
                                        CONNECTION_NAME)
            except Exception as exc:  # a key that cannot decrypt, a damaged row
                raise ConnectionUnavailable(
                    f"the {connector} connection cannot be read ({type(exc).__name__})") from None
        if stored is None:
            raise ConnectionUnavailable(f"the tenant has no {connector} connection")
        try:
            spec = registry.get(connector)
            client = spec.make_client(
                ConnectionConfig(base_url=stored.base_url, credentials=stored.credentials,
                                 options=stored.options), **self.client_kwargs)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConnectionUnavailable(f"the {connector} connection is not usable: "
                                        f"{_safe(exc, stored.credentials)}") from None
        built = Destination(row.id, row.updated_at, client, dict(stored.options))
        self._drop(key)
        with self._lock:
            self._built[key] = built
        return built

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            old = self._built.pop(key, None)
        if old is not None:
            _close(old.client)

    def close(self) -> None:
        with self._lock:
            built, self._built = list(self._built.values()), {}
        for destination in built:
            _close(destination.client)


def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()


def _safe(exc: BaseException, secrets: Mapping[str, Any]) -> str:
    """``str(exc)`` with any credential value blanked out."""
    text = str(exc)
    for value in secrets.values():
        if isinstance(value, str) and value:
            text = text.replace(value, "***")
    return text
