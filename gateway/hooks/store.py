"""The ``hook_subscriptions`` table: REST-hook subscriptions, their encrypted signing secrets
and failure runs, and the cancelling of a subscription's queued deliveries. Every query takes
the tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import Connection, delete, select, update

from gateway.crypto import Vault
from gateway.hooks import HOOKS
from gateway.hooks.signing import new_secret
from gateway.model import utc
from gateway.store.tables import deliveries, hook_subscriptions
from gateway.store.types import new_id, utcnow

h = hook_subscriptions.c


@dataclass(frozen=True)
class Subscription:
    """One subscription (never its secret)."""

    id: str
    tenant_id: str
    event: str
    target_url: str
    filter: dict[str, Any] = field(default_factory=dict)
    status: str = "active"
    failing_since: datetime | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "target_url": self.target_url,
                "filter": dict(self.filter), "status": self.status,
                "failing_since": self.failing_since, "last_error": self.last_error,
                "created_at": self.created_at, "updated_at": self.updated_at}


_COLUMNS = (h.id, h.tenant_id, h.event, h.target_url, h.filter, h.status, h.failing_since,
            h.last_error, h.created_at, h.updated_at)


def _subscription(row: Any) -> Subscription:
    return Subscription(row.id, row.tenant_id, row.event, row.target_url, dict(row.filter or {}),
                        row.status, utc(row.failing_since), row.last_error, utc(row.created_at),
                        utc(row.updated_at))


def create_subscription(conn: Connection, vault: Vault, tenant_id: str, *, event: str,
                        target_url: str, filter: Mapping[str, Any] | None = None,
                        now: datetime | None = None) -> tuple[Subscription, str]:
    """Store a new subscription; returns it and its signing secret (shown this once: only
    its encryption is stored)."""
    now = now or utcnow()
    secret = new_secret()
    row = {"id": new_id("hook"), "tenant_id": tenant_id, "event": event,
           "target_url": target_url, "filter": dict(filter or {}),
           "secret": vault.encrypt({"secret": secret}), "status": "active",
           "created_at": now, "updated_at": now}
    conn.execute(hook_subscriptions.insert().values(**row))
    return Subscription(row["id"], tenant_id, event, target_url, row["filter"], "active",
                        None, None, now, now), secret


def list_subscriptions(conn: Connection, tenant_id: str) -> list[Subscription]:
    rows = conn.execute(select(*_COLUMNS).where(h.tenant_id == tenant_id)
                        .order_by(h.created_at, h.id)).all()
    return [_subscription(row) for row in rows]


def get_subscription(conn: Connection, tenant_id: str, hook_id: str) -> Subscription | None:
    row = conn.execute(select(*_COLUMNS).where(h.tenant_id == tenant_id, h.id == hook_id)
                       ).first()
    return _subscription(row) if row is not None else None


def secret_of(conn: Connection, vault: Vault, tenant_id: str, hook_id: str) -> str | None:
    """The subscription's signing secret, decrypted; None when there is no such subscription."""
    token = conn.execute(select(h.secret).where(h.tenant_id == tenant_id, h.id == hook_id)
                         ).scalar()
    return None if token is None else str(vault.decrypt(token)["secret"])


def active_for(conn: Connection, tenant_id: str, event_types: Iterable[str]
               ) -> list[Subscription]:
    """The tenant's active subscriptions to any of ``event_types``."""
    types = sorted(set(event_types))
    if not types:
        return []
    rows = conn.execute(select(*_COLUMNS).where(
        h.tenant_id == tenant_id, h.event.in_(types), h.status == "active")
        .order_by(h.id)).all()
    return [_subscription(row) for row in rows]


def cancel_pending(conn: Connection, tenant_id: str, hook_id: str, reason: str,
                   now: datetime | None = None) -> int:
    """Cancel the subscription's queued (pending) deliveries; how many."""
    return conn.execute(update(deliveries).where(
        deliveries.c.tenant_id == tenant_id, deliveries.c.connector == HOOKS,
        deliveries.c.operation == hook_id, deliveries.c.status == "pending",
    ).values(status="cancelled", last_error=json.dumps({"error": reason}),
             updated_at=now or utcnow())).rowcount


def delete_subscription(conn: Connection, tenant_id: str, hook_id: str, *, reason: str,
                        now: datetime | None = None) -> bool:
    """Delete the subscription and cancel its queued deliveries; False when there was none."""
    gone = conn.execute(delete(hook_subscriptions).where(
        h.tenant_id == tenant_id, h.id == hook_id)).rowcount
    if gone:
        cancel_pending(conn, tenant_id, hook_id, reason, now)
    return bool(gone)


def record_success(conn: Connection, tenant_id: str, hook_id: str, now: datetime) -> None:
    """The target took a post: its failure run, if any, is over."""
    conn.execute(update(hook_subscriptions).where(
        h.tenant_id == tenant_id, h.id == hook_id, h.failing_since.is_not(None),
    ).values(failing_since=None, last_error=None, updated_at=now))


def record_failure(conn: Connection, tenant_id: str, hook_id: str, error: str,
                   now: datetime) -> datetime | None:
    """A failed post: the failure run starts now unless it started before; returns when it
    started (None when the subscription is gone)."""
    conn.execute(update(hook_subscriptions).where(
        h.tenant_id == tenant_id, h.id == hook_id, h.failing_since.is_(None),
    ).values(failing_since=now, updated_at=now))
    conn.execute(update(hook_subscriptions).where(
        h.tenant_id == tenant_id, h.id == hook_id).values(last_error=error[:2000]))
    since = conn.execute(select(h.failing_since).where(
        h.tenant_id == tenant_id, h.id == hook_id)).scalar()
    return utc(since)


def disable(conn: Connection, tenant_id: str, hook_id: str, reason: str, now: datetime
            ) -> bool:
    """Disable an active subscription and cancel its queued deliveries; False when it was not
    active (disabled already, or gone)."""
    changed = conn.execute(update(hook_subscriptions).where(
        h.tenant_id == tenant_id, h.id == hook_id, h.status == "active",
    ).values(status="disabled", last_error=reason[:2000], updated_at=now)).rowcount
    if changed:
        cancel_pending(conn, tenant_id, hook_id, reason, now)
    return bool(changed)
