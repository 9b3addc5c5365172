"""Looking at deliveries and replaying dead letters (the CLI's and the API's one way in).

A dead letter keeps what the service answered in ``last_error`` (JSON: ``error``, and where
there was one ``status``, ``answer``, ``errors``). Replaying puts it back as ``pending``, due
now, with its attempts reset; ``last_error`` stays until the row is sent, as a record of why it
died. Only dead rows can be replayed: a pending row is queued already, and a done or cancelled
one is over.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from gateway.relay import notify
from gateway.relay.scope import AllTenants, TenantScope
from gateway.store.tables import deliveries
from gateway.store.types import utcnow

STATUSES = ("pending", "in_flight", "done", "dead", "cancelled")
d = deliveries.c


class NotReplayable(ValueError):
    """The delivery exists but is not dead."""

    def __init__(self, delivery_id: int, status: str) -> None:
        self.delivery_id, self.status = delivery_id, status
        super().__init__(f"delivery {delivery_id} is {status}; only dead deliveries can be "
                         "replayed")


class UnknownDelivery(ValueError):
    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"no delivery {delivery_id}")


def _scoped(query: Any, tenant: TenantScope) -> Any:
    return query if isinstance(tenant, AllTenants) else query.where(d.tenant_id == tenant)


def as_dict(row: Any) -> dict[str, Any]:
    """A delivery row for the API and the CLI; ``last_error`` as the JSON it holds."""
    values = dict(row._mapping)
    values["last_error"] = parse_error(values.get("last_error"))
    for name in ("lease_token",):
        values.pop(name, None)
    return values


def parse_error(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"error": text}


def list_deliveries(conn: Connection, tenant: TenantScope, *, status: str | None = None,
                    limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """Deliveries, newest first, optionally of one status; ``before`` (an id) pages back."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    query = _scoped(select(deliveries), tenant).order_by(d.id.desc()).limit(limit)
    if status is not None:
        query = query.where(d.status == status)
    if before is not None:
        query = query.where(d.id < before)
    return [as_dict(row) for row in conn.execute(query)]


def get_delivery(conn: Connection, tenant: TenantScope, delivery_id: int) -> dict[str, Any]:
    row = conn.execute(_scoped(select(deliveries), tenant).where(d.id == delivery_id)).first()
    if row is None:
        raise UnknownDelivery(delivery_id)
    return as_dict(row)


def replay(conn: Connection, tenant: TenantScope, delivery_id: int, *,
           now: datetime | None = None) -> dict[str, Any]:
    """Put one dead delivery back in the queue; the row as it is now."""
    now = now or utcnow()
    current = get_delivery(conn, tenant, delivery_id)
    changed = conn.execute(_requeue(tenant, now).where(d.id == delivery_id)).rowcount
    if not changed:
        raise NotReplayable(delivery_id, current["status"])
    notify.after_commit(conn)
    return get_delivery(conn, tenant, delivery_id)


def replay_dead(conn: Connection, tenant: TenantScope, *, now: datetime | None = None) -> int:
    """Put every dead delivery (of the scope) back in the queue; how many."""
    count = conn.execute(_requeue(tenant, now or utcnow())).rowcount
    if count:
        notify.after_commit(conn)
    return count


def _requeue(tenant: TenantScope, now: datetime) -> Any:
    return _scoped(update(deliveries), tenant).where(d.status == "dead").values(
        status="pending", attempt=0, next_attempt_at=now, lease_expires_at=None,
        sent_at=None, created_at=now, updated_at=now)
