"""Erasure at the destinations, and the "manual erasure needed" items for Rekindle.

When a customer is erased (``customer.redacted``), in the erasure's transaction:

1. every pending delivery about them is cancelled, except those that remove or silence them
   (:data:`~gateway.relay.planned.SURVIVE_ERASURE`), and the settled rows about them (done,
   dead, cancelled) lose their personal data: the payload becomes ``null``, the record key and
   idempotency key (which hold an email for Rejoiner and Rekindle) are replaced, and a dead row
   becomes ``cancelled`` (it can never be replayed). Rows in flight finish as they are;
2. Replenit's ``customers.delete`` is queued (by the customer's Replenit id, else the gateway's
   id, and by email when known), and Rejoiner's ``consent.unsubscribe`` for each email the
   customer had: both ``erases`` and priority 0, so they go before anything else of that
   customer. Their record keys are ``erased:<customer id>``, so no key column holds the email;
3. Rekindle has no delete, so a **manual erasure item** is recorded for an operator. It is a
   row of the ``deliveries`` table that no worker ever claims: connector ``rekindle``,
   operation :data:`MANUAL_OPERATION`, status ``manual`` while open and ``done`` once an
   operator marks it so (``python app.py erasures done TENANT ID``,
   ``POST /api/v1/erasures/ID/done``). An open item holds what the operator needs to find the
   customer in Rekindle (their emails and Rekindle id); marking it done wipes those.
   ``python app.py erasures list TENANT`` and ``GET /api/v1/erasures`` list them.

Each step happens only for a service the tenant has connected. The identity (emails, external
ids) comes from the erasure itself (``plan_deliveries(..., erased=...)``): by the time the
event is planned the store no longer holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from sqlalchemy import Connection, String, case, cast, literal, select, update

from gateway.model import Event, normalise_email
from gateway.relay.planned import CONSENT, SURVIVE_ERASURE, PlannedDelivery
from gateway.relay.scope import AllTenants, TenantScope
from gateway.store.tables import deliveries
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for

if TYPE_CHECKING:
    from gateway.relay.routes_context import PlanContext

MANUAL_CONNECTOR = "rekindle"
MANUAL_OPERATION = "erasure.manual"
OPEN, DONE = "manual", "done"
#: What a settled row's payload becomes once its customer is erased.
ERASED_PAYLOAD = {"kind": "json", "data": None}
ERASED_NOTE = "cancelled: the customer was erased"
INSTRUCTIONS = ("Rekindle has no delete: remove this customer in Rekindle by hand, then mark "
                "this item done (python app.py erasures done TENANT ID, or POST "
                "/api/v1/erasures/ID/done), which wipes the identity it holds.")

d = deliveries.c


class UnknownErasure(ValueError):
    def __init__(self, item_id: int) -> None:
        self.item_id = item_id
        super().__init__(f"no manual erasure item {item_id}")


@dataclass(frozen=True)
class ErasedIdentity:
    """Who an erased customer was, as the destinations know them."""

    emails: tuple[str, ...] = ()
    external_ids: Mapping[str, str] | None = None

    @classmethod
    def of(cls, given: Any) -> "ErasedIdentity":
        """From an erasure's result (``emails`` or ``email``, ``external_ids``), or nothing."""
        if given is None:
            return cls()
        emails = getattr(given, "emails", None)
        if emails is None:
            one = getattr(given, "email", None)
            emails = [one] if one else []
        normal = []
        for email in emails:
            try:
                value = normalise_email(email)
            except ValueError:
                continue
            if value:
                normal.append(value)
        return cls(tuple(dict.fromkeys(normal)), dict(getattr(given, "external_ids", {}) or {}))


# --------------------------------------------------------------------------- the outbox side


def cancel_pending(conn: Connection, tenant_id: str, customer_id: str, *,
                   connector: str | None = None, keep: Iterable[str] = SURVIVE_ERASURE,
                   reason: str = ERASED_NOTE, now: datetime | None = None) -> int:
    """Cancel the pending deliveries about the customer (of one connector, when given), except
    the operations in ``keep``; how many."""
    query = update(deliveries).where(
        d.tenant_id == tenant_id, d.subject_id == customer_id, d.status == "pending",
        d.operation.not_in(sorted(keep)))
    if connector is not None:
        query = query.where(d.connector == connector)
    now = now or utcnow()
    return conn.execute(query.values(status="cancelled", last_error=reason,
                                     updated_at=now)).rowcount


def scrub_settled(conn: Connection, tenant_id: str, customer_id: str, *,
                  now: datetime | None = None) -> int:
    """Wipe the personal data of the settled deliveries about the customer (see the module
    docstring); how many rows."""
    erased_key = literal("erased:") + cast(d.id, String)
    result = conn.execute(
        update(deliveries)
        .where(d.tenant_id == tenant_id, d.subject_id == customer_id,
               d.status.in_(("done", "dead", "cancelled")))
        .values(payload=ERASED_PAYLOAD, record_key=f"erased:{customer_id}",
                idempotency_key=erased_key,
                status=case((d.status == "dead", "cancelled"), else_=d.status),
                last_error=case((d.status == "done", None), else_=ERASED_NOTE),
                updated_at=now or utcnow()))
    return result.rowcount


def plan_erasure(conn: Connection, tenant_id: str, event: Event,
                 context: "PlanContext") -> list[PlannedDelivery]:
    """The erasure route's planner for ``customer.redacted`` (see the module docstring)."""
    customer_id = event.subject_id
    if not customer_id:
        return []
    who = ErasedIdentity.of(context.erased.get(customer_id))
    external = dict(who.external_ids or {})
    now = utcnow()
    cancel_pending(conn, tenant_id, customer_id, now=now)
    scrub_settled(conn, tenant_id, customer_id, now=now)
    planned = []
    if context.is_connected("replenit"):
        query: dict[str, str] = {"customerId": external.get("replenit") or customer_id}
        if who.emails:
            query["email"] = who.emails[0]
        planned.append(PlannedDelivery(
            "replenit", "customers.delete", query, version=event.id, subject_id=customer_id,
            record_key=f"erased:{customer_id}", priority=CONSENT, erases=True))
    if context.is_connected("rejoiner"):
        planned.extend(PlannedDelivery(
            "rejoiner", "consent.unsubscribe", email, version=event.id, subject_id=customer_id,
            record_key=f"erased:{customer_id}:{index}", priority=CONSENT, erases=True)
            for index, email in enumerate(who.emails))
    if context.is_connected("rekindle"):
        record_manual(conn, tenant_id, customer_id, event, who, now=now)
    return planned


# --------------------------------------------------------------------------- manual items


def record_manual(conn: Connection, tenant_id: str, customer_id: str, event: Event,
                  who: ErasedIdentity, *, now: datetime | None = None) -> None:
    """Record (once per erasure event) that Rekindle must be told by hand."""
    now = now or utcnow()
    data = {"customer_id": customer_id, "emails": list(who.emails),
            "rekindle_id": (who.external_ids or {}).get("rekindle"),
            "redacted_at": event.item.get("redacted_at"), "event_id": event.id}
    conn.execute(insert_for(conn, deliveries).values(
        tenant_id=tenant_id, connector=MANUAL_CONNECTOR, operation=MANUAL_OPERATION,
        subject_id=customer_id, record_key=f"erased:{customer_id}",
        payload={"kind": "json", "data": data},
        idempotency_key=f"{MANUAL_CONNECTOR}:{MANUAL_OPERATION}:{customer_id}:{event.id}"[:200],
        priority=CONSENT, status=OPEN, attempt=0, next_attempt_at=now, created_at=now,
        updated_at=now,
    ).on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"]))


def _item(row: Any) -> dict[str, Any]:
    data = (row.payload or {}).get("data") or {}
    open_ = row.status == OPEN
    return {
        "id": row.id, "connector": row.connector, "customer_id": row.subject_id,
        "status": "open" if open_ else "done",
        "emails": list(data.get("emails") or []) if open_ else [],
        "rekindle_id": data.get("rekindle_id") if open_ else None,
        "redacted_at": data.get("redacted_at"), "event_id": data.get("event_id"),
        "created_at": row.created_at, "done_at": None if open_ else row.updated_at,
        "instructions": INSTRUCTIONS if open_ else None,
    }


def _scoped(query: Any, tenant: TenantScope) -> Any:
    return query if isinstance(tenant, AllTenants) else query.where(d.tenant_id == tenant)


def list_manual(conn: Connection, tenant: TenantScope, *, include_done: bool = False,
                limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
    """Manual erasure items, newest first: the open ones, or every one."""
    query = _scoped(select(deliveries), tenant).where(
        d.connector == MANUAL_CONNECTOR, d.operation == MANUAL_OPERATION,
        d.status.in_((OPEN, DONE) if include_done else (OPEN,))).order_by(d.id.desc())
    if before is not None:
        query = query.where(d.id < before)
    return [_item(row) for row in conn.execute(query.limit(limit))]


def mark_done(conn: Connection, tenant: TenantScope, item_id: int, *,
              now: datetime | None = None) -> dict[str, Any]:
    """Mark a manual erasure item done (the operator erased the customer at Rekindle): the
    identity it held is wiped. Marking a done item again changes nothing. The item after."""
    where = [d.id == item_id, d.connector == MANUAL_CONNECTOR, d.operation == MANUAL_OPERATION]
    row = conn.execute(_scoped(select(deliveries), tenant).where(*where)).first()
    if row is None:
        raise UnknownErasure(item_id)
    if row.status == OPEN:
        data = dict((row.payload or {}).get("data") or {})
        data.update(emails=[], rekindle_id=None)
        conn.execute(update(deliveries).where(d.tenant_id == row.tenant_id, *where)
                     .values(status=DONE, payload={"kind": "json", "data": data},
                             updated_at=now or utcnow()))
        row = conn.execute(select(deliveries).where(d.id == item_id)).first()
    return _item(row)
