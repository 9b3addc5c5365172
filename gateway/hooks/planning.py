"""Planning hook deliveries: :func:`plan_hook_deliveries` queues one ``deliveries`` row per
(matching event, active subscription) in the caller's transaction (the outbox).

A hook's body is the event's trigger item, the same shape as its polling trigger
(:mod:`gateway.triggers`): the stored item for a type a trigger of its own serves
(``customer.status_changed`` -> customer-status, ``order.placed`` -> new-order, ...), and the
``events`` trigger's item (the stored item with ``type``, ``subject_id``, ``occurred_at`` and
``source``) for the other types. A subscription's filter (``{"status": "lapsed"}``, or a list
of accepted values) must match the body's fields.

Rows: connector ``hooks``, operation the subscription's id (so the sender claims, batches and
throttles per subscription), record key and ``webhook-id`` the event's id, idempotency key
``hooks:<subscription>:<event>`` (planning an event twice queues it once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection

from gateway.hooks import HOOKS
from gateway.hooks import store as hook_store
from gateway.model import Event
from gateway.store.events import customer_of
from gateway.store.tables import deliveries
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for


def _own_trigger_types() -> frozenset[str]:
    from gateway.triggers import TRIGGERS  # imports the scoring package: import late

    return frozenset(t for trigger in TRIGGERS.values() if trigger.indexed
                     for t in trigger.event_types)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def hook_body(event: Event) -> dict[str, Any]:
    """The body a hook post of ``event`` carries (see the module docstring)."""
    item = {"id": event.id, **{k: v for k, v in event.item.items() if k != "id"}}
    if event.type in _own_trigger_types():
        return item
    return {**item, "type": event.type, "subject_id": event.subject_id,
            "occurred_at": _iso(event.occurred_at), "source": event.source}


def matches(filter: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Every filter field equals the body's (or is among the listed values)."""
    for key, wanted in filter.items():
        value = body.get(key)
        if isinstance(wanted, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def plan_hook_deliveries(conn: Connection, tenant_id: str, events: Sequence[Event], *,
                         now: datetime | None = None) -> int:
    """Queue, in ``conn``'s transaction, a hook delivery for every event that an active
    subscription of the tenant matches; how many rows were new."""
    if not events:
        return 0
    subscriptions = hook_store.active_for(conn, tenant_id, {e.type for e in events})
    if not subscriptions:
        return 0
    now = now or utcnow()
    rows = []
    for event in events:
        body = hook_body(event)
        for sub in subscriptions:
            if sub.event != event.type or not matches(sub.filter, body):
                continue
            rows.append({
                "tenant_id": tenant_id, "connector": HOOKS, "operation": sub.id,
                "subject_id": customer_of(event.type, event.subject_id, event.item),
                "record_key": event.id,
                "payload": {"event_id": event.id, "type": event.type, "body": body},
                "idempotency_key": f"{HOOKS}:{sub.id}:{event.id}", "priority": 0,
                "status": "pending", "attempt": 0, "next_attempt_at": now,
                "created_at": now, "updated_at": now,
            })
    if not rows:
        return 0
    stmt = insert_for(conn, deliveries).on_conflict_do_nothing(
        index_elements=["tenant_id", "idempotency_key"])
    result = conn.execute(stmt, rows)
    from gateway.relay import notify

    notify.after_commit(conn)
    return max(0, result.rowcount) if result.rowcount is not None else len(rows)
