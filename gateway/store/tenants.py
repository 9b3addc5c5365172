"""Tenants and their settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, select, update

from gateway import tenant_settings
from gateway.store.tables import tenants
from gateway.store.types import new_id, utcnow


class UnknownTenant(LookupError):
    pass


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str


def create_tenant(conn: Connection, name: str) -> Tenant:
    name = (name or "").strip()
    if not name:
        raise ValueError("a tenant needs a name")
    now = utcnow()
    tenant = Tenant(id=new_id("ten"), name=name[:200])
    conn.execute(tenants.insert().values(id=tenant.id, name=tenant.name, settings={},
                                         created_at=now, updated_at=now))
    return tenant


def get_tenant(conn: Connection, tenant_id: str) -> Tenant:
    row = conn.execute(select(tenants.c.id, tenants.c.name)
                       .where(tenants.c.id == tenant_id)).first()
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return Tenant(id=row.id, name=row.name)


def _stored_settings(conn: Connection, tenant_id: str) -> dict[str, Any]:
    row = conn.execute(select(tenants.c.settings).where(tenants.c.id == tenant_id)).first()
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return dict(row.settings or {})


def get_settings(conn: Connection, tenant_id: str) -> tenant_settings.TenantSettings:
    return tenant_settings.resolve(_stored_settings(conn, tenant_id))


def update_settings(conn: Connection, tenant_id: str,
                    changes: Mapping[str, Any]) -> tenant_settings.TenantSettings:
    """Validate and store ``changes``; raises marshmallow's ValidationError on a bad one."""
    merged = tenant_settings.apply_changes(_stored_settings(conn, tenant_id), changes)
    conn.execute(update(tenants).where(tenants.c.id == tenant_id)
                 .values(settings=merged, updated_at=utcnow()))
    return tenant_settings.resolve(merged)
