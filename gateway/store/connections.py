"""Connections to the four services, with their credentials encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import Connection, select

from gateway.crypto import Vault
from gateway.store.tables import connections
from gateway.store.types import new_id, utcnow
from gateway.store.upsert import upsert


@dataclass(frozen=True)
class StoredConnection:
    id: str
    tenant_id: str
    connector: str
    name: str
    base_url: str
    credentials: Mapping[str, str] = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


def save_connection(conn: Connection, vault: Vault, tenant_id: str, connector: str,
                    base_url: str, credentials: Mapping[str, str],
                    options: Mapping[str, Any] | None = None, name: str = "default") -> str:
    """Create or replace the tenant's connection ``name`` to ``connector``; returns its id."""
    now = utcnow()
    result = upsert(conn, connections,
                    {"id": new_id("con"), "tenant_id": tenant_id, "connector": connector,
                     "name": name, "base_url": base_url,
                     "credentials": vault.encrypt(credentials), "options": dict(options or {}),
                     "created_at": now, "updated_at": now},
                    keys=["tenant_id", "connector", "name"],
                    update=["base_url", "credentials", "options", "updated_at"],
                    returning=[connections.c.id])
    return result.scalar_one()


def get_connection(conn: Connection, vault: Vault, tenant_id: str, connector: str,
                   name: str = "default") -> StoredConnection | None:
    row = conn.execute(select(connections).where(
        connections.c.tenant_id == tenant_id, connections.c.connector == connector,
        connections.c.name == name)).first()
    if row is None:
        return None
    return StoredConnection(id=row.id, tenant_id=row.tenant_id, connector=row.connector,
                            name=row.name, base_url=row.base_url,
                            credentials=vault.decrypt(row.credentials),
                            options=dict(row.options or {}))
