"""The per-destination diff: what each service last acknowledged of a customer, as a hash.

When a profile write (``customers.upsert``) to Replenit, Rekindle or Rejoiner completes, the
worker calls :func:`remember` in the transaction that marks the rows done: for each row still
under its lease, the SHA-256 of the payload that destination received on the wire (Replenit's
customer object under the tenant's consent basis, Rekindle's update-customer body in the
connection's currency, Rejoiner's profile *before* its read-merge with the shop's own tags and
keys) is stored per (tenant, connector, record key) in ``acknowledged_payloads``. A completed
``customers.delete`` forgets that record's hash (the service no longer holds it), and an erasure
forgets every hash of the customer (:mod:`gateway.store.erasure`).

A pull plans a profile write for every customer it reads and keeps, through :func:`changed`,
only the writes whose payload differs from the one acknowledged, so a walk that finds nothing
changed sends nothing. A write is always kept while another write of the same record is still
``pending`` or ``in_flight``: after A (acknowledged), B (queued) and A again, the destination
would otherwise end on B.

The diff applies to the pulls' writes only; the event routes (an action, a webhook) send what
their events say, as before (their events are written only for real changes already), but
every completed profile write is remembered, whatever planned it, so the hash is always the
destination's last acknowledged state.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, delete, select

from connectors import base as registry
from gateway.model import Customer
from gateway.relay import payloads
from gateway.relay.outbox import stored_key
from gateway.relay.planned import PlannedDelivery
from gateway.store.tables import acknowledged_payloads, deliveries
from gateway.store.upsert import insert_for

UPSERT = "customers.upsert"
DELETE = "customers.delete"
_CHUNK = 500

a = acknowledged_payloads.c
d = deliveries.c


def _replenit(customer: Customer, context: Mapping[str, Any]) -> Any:
    from connectors.replenit.mapping import customer_to_wire

    return customer_to_wire(customer, {"consent_basis": context.get("consent_basis")
                                       or "consent"})


def _rekindle(customer: Customer, context: Mapping[str, Any]) -> Any:
    from connectors.rekindle.mapping import customer_to_wire

    return customer_to_wire(customer, str(context.get("currency") or "USD").upper())


def _rejoiner(customer: Customer, context: Mapping[str, Any]) -> Any:
    from connectors.rejoiner.mapping import customer_to_profile

    return customer_to_profile(customer)


#: The wire payload of a profile write, per destination: what the connector's own mapping
#: sends (the same functions its ``customers.upsert`` calls).
WIRE: dict[str, Callable[[Customer, Mapping[str, Any]], Any]] = {
    "replenit": _replenit, "rekindle": _rekindle, "rejoiner": _rejoiner}


def wire_payload(connector: str, record: Any, context: Mapping[str, Any]) -> Any | None:
    """The payload ``connector`` receives for this profile write; None when it cannot be told
    (not a customer, or one the mapping refuses: such a write is never skipped)."""
    to_wire = WIRE.get(connector)
    if to_wire is None or not isinstance(record, Customer):
        return None
    try:
        return to_wire(record, context)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def digest(payload: Any) -> str:
    """SHA-256 of the payload's canonical JSON (keys sorted; decimals as text)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_key(connector: str, operation: str, record: Any) -> str:
    """The record's key as the outbox stores it (``record_key``)."""
    return stored_key(registry.get(connector).operations[operation].key(record))


def plan_context(settings: Any, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The send context a planner would see for one destination (as the worker builds it)."""
    context: dict[str, Any] = {"consent_basis": settings.consent_basis}
    currency = (options or {}).get("currency")
    if currency:
        context["currency"] = currency
    return context


# ------------------------------------------------------------------------ on completion


def remember(conn: Connection, batch: Any, done: Sequence[int], context: Mapping[str, Any],
             now: datetime) -> int:
    """Store the hashes of the profile writes of ``batch`` the service acknowledged
    (``done``), for rows still under the batch's lease (fenced, like completing them); forget
    them for completed deletes. Called before the rows are marked done, in that transaction.
    How many rows were remembered or forgotten."""
    if not done or batch.connector not in WIRE or batch.operation not in (UPSERT, DELETE):
        return 0
    owned = set(conn.execute(select(d.id).where(
        d.tenant_id == batch.tenant_id, d.id.in_(list(done)), d.lease_token == batch.token,
        d.status == "in_flight")).scalars())
    rows = [row for row in batch.rows if row.id in owned and row.record_key]
    if not rows:
        return 0
    if batch.operation == DELETE:
        keys = sorted({row.record_key for row in rows})
        conn.execute(delete(acknowledged_payloads).where(
            a.tenant_id == batch.tenant_id, a.connector == batch.connector,
            a.record_key.in_(keys)))
        return len(rows)
    values: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.id):  # the newest row of a record wins
        try:
            record = payloads.load(row.payload)
        except payloads.PayloadError:
            continue
        payload = wire_payload(batch.connector, record, context)
        if payload is None:
            continue
        values[row.record_key] = {
            "tenant_id": batch.tenant_id, "connector": batch.connector,
            "record_key": row.record_key, "customer_id": row.subject_id,
            "digest": digest(payload), "acknowledged_at": now}
    if values:
        stmt = insert_for(conn, acknowledged_payloads)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "connector", "record_key"],
            set_={"customer_id": stmt.excluded.customer_id, "digest": stmt.excluded.digest,
                  "acknowledged_at": stmt.excluded.acknowledged_at})
        conn.execute(stmt, list(values.values()))
    return len(values)


# ------------------------------------------------------------------------ when planning


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def changed(conn: Connection, tenant_id: str, planned: Sequence[PlannedDelivery],
            contexts: Mapping[str, Mapping[str, Any]]
            ) -> tuple[list[PlannedDelivery], dict[str, int]]:
    """The planned deliveries to keep: every one that is not a profile write this module can
    hash, and the profile writes whose payload differs from the destination's acknowledged one
    or whose record has another write still pending or in flight. Also how many were dropped
    as unchanged, per connector. ``contexts`` gives each connector's send context
    (:func:`plan_context`)."""
    candidates: dict[tuple[str, str], tuple[int, str]] = {}
    keep = [True] * len(planned)
    for index, delivery in enumerate(planned):
        if delivery.operation != UPSERT or delivery.connector not in WIRE:
            continue
        payload = wire_payload(delivery.connector, delivery.record,
                               contexts.get(delivery.connector) or {})
        if payload is None:
            continue
        key = (delivery.connector,
               stored_key(delivery.record_key) if delivery.record_key is not None
               else record_key(delivery.connector, UPSERT, delivery.record))
        if key in candidates:  # the same record twice: the later one is the one compared
            keep[candidates[key][0]] = False
        candidates[key] = (index, digest(payload))
    dropped: dict[str, int] = {}
    if not candidates:
        return list(planned), dropped
    by_connector: dict[str, list[str]] = {}
    for connector, key in candidates:
        by_connector.setdefault(connector, []).append(key)
    for connector, keys in by_connector.items():
        for chunk in _chunks(keys):
            held = dict(conn.execute(select(a.record_key, a.digest).where(
                a.tenant_id == tenant_id, a.connector == connector,
                a.record_key.in_(chunk))).all())
            if not held:
                continue
            busy = set(conn.execute(select(d.record_key).where(
                d.tenant_id == tenant_id, d.connector == connector, d.operation == UPSERT,
                d.record_key.in_([k for k in chunk if k in held]),
                d.status.in_(("pending", "in_flight")))).scalars())
            for key in chunk:
                index, hashed = candidates[(connector, key)]
                if held.get(key) == hashed and key not in busy:
                    keep[index] = False
                    dropped[connector] = dropped.get(connector, 0) + 1
    return [p for p, kept in zip(planned, keep) if kept], dropped
