"""The transactional outbox: :func:`enqueue` writes delivery rows in the caller's transaction.

A route calls it with the deliveries it plans from the events ingest wrote, in the same
transaction as those events, so a record is sent only if it was stored and a stored record is
never lost. What it does with each :class:`~gateway.relay.planned.PlannedDelivery`:

- **Coalescing**: a still-pending row (not yet claimed, never sent) for the same tenant,
  connector, operation and record key takes the new payload instead of a second row being
  queued; several versions of one record in one call keep only the last. The record goes out
  once, newest version. Writes that are events rather than states (a convert: two purchases
  of one customer are two things that happened) are never coalesced
  (:data:`~gateway.relay.planned.NEVER_COALESCED`).
- **Idempotency key** ``connector:operation:record key:version``: planning the same version
  (event) twice queues one row, and any later version always queues, so a change A -> B -> A
  sends three times once each was sent before the next came.
- **Erasure** (``erases``): every other pending row about that customer (``subject_id``) is
  cancelled (``cancelled``, with the reason in ``last_error``), except the rows that remove or
  silence the customer (:data:`~gateway.relay.planned.SURVIVE_ERASURE`); the erasure itself
  has priority 0 and goes first.

Once the transaction commits, this process's workers are woken (:mod:`gateway.relay.notify`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, select, update

from connectors import base as registry
from gateway.relay import notify, payloads
from gateway.relay.planned import NEVER_COALESCED, SURVIVE_ERASURE, PlannedDelivery
from gateway.store.tables import deliveries
from gateway.store.types import new_id, utcnow
from gateway.store.upsert import insert_for

#: Longest record key kept as it is; longer ones are stored as their SHA-256.
MAX_KEY = 120
_CHUNK = 500


@dataclass
class EnqueueResult:
    """What :func:`enqueue` did: rows ``queued`` new, ``coalesced`` into a pending row (or
    into a later version in the same call), ``duplicates`` already queued (same version) and
    rows ``cancelled`` by erasures."""

    queued: int = 0
    coalesced: int = 0
    duplicates: int = 0
    cancelled: int = 0


def stored_key(key: str) -> str:
    """A record key as the ``record_key`` column holds it (long keys as their hash)."""
    text = str(key)
    if len(text) <= MAX_KEY:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def idempotency_key(connector: str, operation: str, record_key: str, version: str) -> str:
    return f"{connector}:{operation}:{stored_key(record_key)}:{version}"[:200]


def enqueue(conn: Connection, tenant_id: str, planned: Sequence[PlannedDelivery], *,
            now: datetime | None = None) -> EnqueueResult:
    """Queue ``planned`` for ``tenant_id`` in ``conn``'s transaction (see the module
    docstring). An unknown connector or operation is a ``ValueError`` naming it."""
    now = now or utcnow()
    result = EnqueueResult()
    rows = _rows(tenant_id, planned, now)
    for delivery in planned:
        if delivery.erases:
            result.cancelled += _cancel_for_erasure(conn, tenant_id, delivery, now)
    newest: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        group = (row["connector"], row["operation"], row["record_key"])
        if group[:2] in NEVER_COALESCED:
            group = (*group, row["idempotency_key"])
        if group in newest:
            result.coalesced += 1
        newest[group] = row
    fresh = _without_known_versions(conn, tenant_id, list(newest.values()))
    result.duplicates = len(newest) - len(fresh)
    replaced = _coalesce_into_pending(conn, tenant_id, fresh, now)
    result.coalesced += len(replaced)
    inserts = [row for row in fresh if id(row) not in replaced]
    if inserts:
        stmt = insert_for(conn, deliveries).on_conflict_do_nothing(
            index_elements=["tenant_id", "idempotency_key"])
        conn.execute(stmt, inserts)
        result.queued = len(inserts)
    if result.queued or replaced:
        notify.after_commit(conn)
    return result


def _rows(tenant_id: str, planned: Iterable[PlannedDelivery], now: datetime
          ) -> list[dict[str, Any]]:
    rows = []
    for delivery in planned:
        operation = _operation(delivery.connector, delivery.operation)
        key = delivery.record_key if delivery.record_key is not None \
            else operation.key(delivery.record)
        version = delivery.version or new_id("ver")
        rows.append({
            "tenant_id": tenant_id,
            "connector": delivery.connector,
            "operation": delivery.operation,
            "subject_id": delivery.subject_id,
            "record_key": stored_key(key),
            "payload": payloads.dump(delivery.record),
            "idempotency_key": idempotency_key(delivery.connector, delivery.operation, key,
                                               version),
            "priority": delivery.effective_priority,
            "status": "pending",
            "attempt": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        })
    return rows


def _operation(connector: str, name: str) -> registry.Operation:
    try:
        spec = registry.get(connector)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    operation = spec.operations.get(name)
    if operation is None:
        raise ValueError(f"{connector} has no operation {name!r}; it has: "
                         f"{', '.join(sorted(spec.operations)) or 'none'}")
    return operation


def _cancel_for_erasure(conn: Connection, tenant_id: str, delivery: PlannedDelivery,
                        now: datetime) -> int:
    if not delivery.subject_id:
        raise ValueError("an erasure needs the subject_id of the customer it erases")
    result = conn.execute(
        update(deliveries)
        .where(deliveries.c.tenant_id == tenant_id,
               deliveries.c.subject_id == delivery.subject_id,
               deliveries.c.status == "pending",
               deliveries.c.operation.not_in(sorted(SURVIVE_ERASURE)))
        .values(status="cancelled", updated_at=now,
                last_error="cancelled: the customer was erased")
    )
    return result.rowcount


def _without_known_versions(conn: Connection, tenant_id: str, rows: list[dict[str, Any]]
                            ) -> list[dict[str, Any]]:
    """``rows`` less those whose idempotency key is queued already (the same version)."""
    known: set[str] = set()
    keys = [row["idempotency_key"] for row in rows]
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        known.update(conn.execute(
            select(deliveries.c.idempotency_key).where(
                deliveries.c.tenant_id == tenant_id,
                deliveries.c.idempotency_key.in_(chunk))).scalars())
    return [row for row in rows if row["idempotency_key"] not in known]


#: The rows of some records of one destination, oldest first, by the record keys' index.
#: Whether each is still pending is checked on the rows found, not in the query: the planners
#: (SQLite's, which keeps no statistics; PostgreSQL's until the table is analysed) would
#: rather read every pending row of the connector through the status index, which with a
#: backlog of 12,000 rows cost 10-50 ms a lookup against under 1 ms.
_ROWS_OF_RECORDS = select(deliveries.c.id, deliveries.c.record_key, deliveries.c.priority,
                          deliveries.c.status, deliveries.c.sent_at).where(
    deliveries.c.tenant_id == bindparam("tenant"),
    deliveries.c.connector == bindparam("connector"),
    deliveries.c.operation == bindparam("operation"),
    deliveries.c.record_key.in_(bindparam("keys", expanding=True)),
).order_by(deliveries.c.id)


def _coalesce_into_pending(conn: Connection, tenant_id: str, rows: list[dict[str, Any]],
                           now: datetime) -> set[int]:
    """Give pending rows of the same records the new payloads; ``id()`` of the rows used."""
    by_operation: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if (row["connector"], row["operation"]) in NEVER_COALESCED:
            continue
        by_operation.setdefault((row["connector"], row["operation"]), {})[row["record_key"]] = row
    changes: list[dict[str, Any]] = []
    used: set[int] = set()
    for (connector, operation), keyed in by_operation.items():
        keys = list(keyed)
        for start in range(0, len(keys), _CHUNK):
            found = conn.execute(_ROWS_OF_RECORDS, {
                "tenant": tenant_id, "connector": connector, "operation": operation,
                "keys": keys[start:start + _CHUNK]}).all()
            for row_id, key, priority, status, sent_at in found:
                if status != "pending" or sent_at is not None:
                    continue
                row = keyed[key]
                if id(row) in used:  # two pending rows of one record (a race): fill the first
                    continue
                used.add(id(row))
                changes.append({"row_id": row_id, "new_payload": row["payload"],
                                "new_key": row["idempotency_key"],
                                "new_subject": row["subject_id"],
                                "new_priority": min(priority, row["priority"])})
    if changes:
        conn.execute(
            update(deliveries)
            .where(and_(deliveries.c.tenant_id == tenant_id,
                        deliveries.c.id == bindparam("row_id"),
                        deliveries.c.status == "pending"))
            .values(payload=bindparam("new_payload"), idempotency_key=bindparam("new_key"),
                    subject_id=bindparam("new_subject"), priority=bindparam("new_priority"),
                    updated_at=now),
            changes,
        )
    return used
