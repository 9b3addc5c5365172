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


def _stored_settings(conn: Connection, tenant_id: str, *,
                     for_update: bool = False) -> dict[str, Any]:
    query = select(tenants.c.settings).where(tenants.c.id == tenant_id)
    if for_update:
        query = query.with_for_update()  # PostgreSQL row lock; SQLite ignores it (see below)
    row = conn.execute(query).first()
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}")
    return dict(row.settings or {})


def get_settings(conn: Connection, tenant_id: str) -> tenant_settings.TenantSettings:
    return tenant_settings.resolve(_stored_settings(conn, tenant_id))


def _take_sqlite_write_lock(conn: Connection) -> None:
    """Make sure this SQLite transaction holds the database's write lock before it reads.

    pysqlite (Python's ``sqlite3`` in its default, legacy transaction mode) begins a
    transaction only at the first INSERT/UPDATE/DELETE, as a deferred ``BEGIN``: a SELECT before
    it reads outside any transaction, and another connection may commit between that read and
    our write. ``BEGIN IMMEDIATE`` takes the write lock at once (waiting, with the engine's busy
    timeout, for another writer to finish), so the read that follows sees the latest commit and
    nobody can commit until we do. It also avoids the deferred read-then-write upgrade, which in
    WAL mode fails at once with SQLITE_BUSY when another writer committed in between.

    When the driver already has a transaction open, that transaction has written (pysqlite opens
    one only for a write), so it already holds the write lock and nothing else is needed.
    """
    if not conn.connection.driver_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def update_settings(conn: Connection, tenant_id: str,
                    changes: Mapping[str, Any]) -> tenant_settings.TenantSettings:
    """Validate and store ``changes``; raises marshmallow's ValidationError on a bad one, and
    :class:`UnknownTenant`.

    The merge is atomic: the tenant's settings are read under a write lock held until ``conn``'s
    transaction ends, so two concurrent changes of different keys both survive (a plain
    read-then-write would let the second writer store a merge of settings it read before the
    first one committed). On PostgreSQL that lock is the tenant row's (``SELECT ... FOR
    UPDATE``; a waiting writer then reads the committed row); on SQLite, which has no row locks,
    it is the database's write lock, taken before the read (:func:`_take_sqlite_write_lock`).
    Call it inside a transaction (``engine.begin()``) and commit promptly: other writers of the
    same tenant (on SQLite, of the database) wait for it.
    """
    if conn.dialect.name == "sqlite":
        _take_sqlite_write_lock(conn)
    stored = _stored_settings(conn, tenant_id, for_update=True)
    merged = tenant_settings.apply_changes(stored, changes)
    conn.execute(update(tenants).where(tenants.c.id == tenant_id)
                 .values(settings=merged, updated_at=utcnow()))
    return tenant_settings.resolve(merged)
