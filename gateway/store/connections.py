"""Connections to the four services, with their credentials encrypted at rest.

The ``options`` column holds a connection's non-secret settings (``site_id``, ``tenant_id``,
``currency``) and, under the reserved key :data:`SET_VIA_KEY`, where its base URL was set
(``"api"`` or ``"cli"``): a base URL set over the API is checked again at every connect
(:mod:`gateway.connections`). Reserved keys start with an underscore, which no connector
option does; :func:`get_connection` and :func:`list_connections` return them apart, never in
``options``.

Every query takes the tenant, except the key rotation's (:func:`credential_tokens`,
:func:`replace_credentials`), which re-encrypts every tenant's rows and returns no secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Connection, delete, select, update

from gateway.crypto import CredentialsError, Vault
from gateway.store.tables import connections
from gateway.store.types import new_id, utcnow
from gateway.store.upsert import upsert

#: Where the base URL was set: ``"api"`` (checked again at connect time) or ``"cli"``.
SET_VIA_KEY = "_set_via"


@dataclass(frozen=True)
class StoredConnection:
    id: str
    tenant_id: str
    connector: str
    name: str
    base_url: str
    credentials: Mapping[str, str] = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    set_via: str = ""  # "api", "cli", or "" (saved by code: tests, the demo)


@dataclass(frozen=True)
class ListedConnection:
    """A connection as listed: ``credentials`` is None when no configured key decrypts it."""

    id: str
    connector: str
    name: str
    base_url: str
    credentials: Mapping[str, str] | None = field(repr=False)
    options: Mapping[str, Any]
    set_via: str
    created_at: datetime
    updated_at: datetime


def _split_options(stored: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    values = dict(stored or {})
    set_via = str(values.pop(SET_VIA_KEY, "") or "")
    return {k: v for k, v in values.items() if not k.startswith("_")}, set_via


def save_connection(conn: Connection, vault: Vault, tenant_id: str, connector: str,
                    base_url: str, credentials: Mapping[str, str],
                    options: Mapping[str, Any] | None = None, name: str = "default", *,
                    set_via: str = "") -> str:
    """Create or replace the tenant's connection ``name`` to ``connector``; returns its id.
    ``set_via`` (``"api"``/``"cli"``) records where the base URL came from."""
    now = utcnow()
    stored_options = {k: v for k, v in dict(options or {}).items() if not k.startswith("_")}
    if set_via:
        stored_options[SET_VIA_KEY] = set_via
    result = upsert(conn, connections,
                    {"id": new_id("con"), "tenant_id": tenant_id, "connector": connector,
                     "name": name, "base_url": base_url,
                     "credentials": vault.encrypt(credentials), "options": stored_options,
                     "created_at": now, "updated_at": now},
                    keys=["tenant_id", "connector", "name"],
                    update=["base_url", "credentials", "options", "updated_at"],
                    returning=[connections.c.id])
    return result.scalar_one()


def get_connection(conn: Connection, vault: Vault, tenant_id: str, connector: str,
                   name: str = "default") -> StoredConnection | None:
    """The connection, its credentials decrypted (``CredentialsError`` when no configured key
    decrypts them), or None."""
    row = conn.execute(select(connections).where(
        connections.c.tenant_id == tenant_id, connections.c.connector == connector,
        connections.c.name == name)).first()
    if row is None:
        return None
    options, set_via = _split_options(row.options)
    return StoredConnection(id=row.id, tenant_id=row.tenant_id, connector=row.connector,
                            name=row.name, base_url=row.base_url,
                            credentials=vault.decrypt(row.credentials),
                            options=options, set_via=set_via)


def list_connections(conn: Connection, vault: Vault, tenant_id: str) -> list[ListedConnection]:
    """The tenant's connections, by connector and name."""
    rows = conn.execute(select(connections).where(connections.c.tenant_id == tenant_id)
                        .order_by(connections.c.connector, connections.c.name)).all()
    listed = []
    for row in rows:
        try:
            credentials: Mapping[str, str] | None = vault.decrypt(row.credentials)
        except CredentialsError:
            credentials = None
        options, set_via = _split_options(row.options)
        listed.append(ListedConnection(
            id=row.id, connector=row.connector, name=row.name, base_url=row.base_url,
            credentials=credentials, options=options, set_via=set_via,
            created_at=row.created_at, updated_at=row.updated_at))
    return listed


def delete_connection(conn: Connection, tenant_id: str, connector: str,
                      name: str = "default") -> bool:
    """Delete the connection; False when there was none."""
    result = conn.execute(delete(connections).where(
        connections.c.tenant_id == tenant_id, connections.c.connector == connector,
        connections.c.name == name))
    return result.rowcount > 0


def credential_tokens(conn: Connection, *, after: str = "",
                      limit: int = 200) -> list[tuple[str, bytes]]:
    """``(id, encrypted credentials)`` of every tenant's connections with an id above
    ``after``, in id order, at most ``limit``: the key rotation's pages."""
    rows = conn.execute(select(connections.c.id, connections.c.credentials)
                        .where(connections.c.id > after)
                        .order_by(connections.c.id).limit(limit)).all()
    return [(row.id, bytes(row.credentials)) for row in rows]


def replace_credentials(conn: Connection, connection_id: str, old: bytes, new: bytes) -> bool:
    """Store ``new`` in place of ``old`` unless the row changed meanwhile (a concurrent save
    wins: it was encrypted with the newest key already). The row's ``updated_at`` is left
    alone: the connection's settings did not change. True when it was replaced."""
    result = conn.execute(update(connections)
                          .where(connections.c.id == connection_id,
                                 connections.c.credentials == old)
                          .values(credentials=new))
    return result.rowcount == 1
