"""Claiming due delivery rows under a lease, and settling them only while the lease is ours.

A row is **due** when it is ``pending`` and its ``next_attempt_at`` has come, or ``in_flight``
under a lease that expired (its worker died or stalled). :func:`due_groups` summarises the due
rows per (tenant, connector, operation); the worker picks one group
(:mod:`gateway.relay.choose`) and :func:`claim` takes up to a batch of its rows in one short
transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (two workers never take the
same row and never wait for each other), ``BEGIN IMMEDIATE`` on SQLite (the single writer
holds the lock from the first read). The rows become ``in_flight`` with this claim's lease
owner, a fresh token and an expiry, and the transaction commits before anything is sent.

Settling (:func:`complete`, :func:`retry`, :func:`dead`, :func:`release`) updates only
``WHERE id IN (...) AND lease_token = <ours> AND status = 'in_flight'`` (fencing): a worker
that stalled past its lease while another claimed the rows changes nothing, and each call
says how many rows it still owned.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, and_, func, or_, select, type_coerce, update
from sqlalchemy.sql.elements import ColumnElement

from gateway.model import utc
from gateway.store import db
from gateway.store.tables import deliveries
from gateway.store.types import UTCDateTime

d = deliveries.c


@dataclass(frozen=True)
class Group:
    """The due rows of one (tenant, connector, operation): their lowest priority, since when
    the oldest has been due, and how many there are."""

    tenant_id: str
    connector: str
    operation: str
    priority: int
    due_since: datetime
    count: int

    @property
    def destination(self) -> tuple[str, str]:
        return (self.tenant_id, self.connector)


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    subject_id: str | None
    record_key: str | None
    payload: Any
    priority: int
    attempt: int
    created_at: datetime
    sent_at: datetime | None


@dataclass
class Batch:
    """Rows of one group claimed under one lease."""

    tenant_id: str
    connector: str
    operation: str
    owner: str
    token: str
    expires_at: datetime
    rows: list[ClaimedRow] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [row.id for row in self.rows]

    @property
    def destination(self) -> tuple[str, str]:
        return (self.tenant_id, self.connector)


def _pending_due(now: datetime) -> ColumnElement[bool]:
    return and_(d.status == "pending", d.next_attempt_at <= now)


def _lease_expired(now: datetime) -> ColumnElement[bool]:
    return and_(d.status == "in_flight", d.lease_expires_at <= now)


def due_groups(conn: Connection, now: datetime) -> list[Group]:
    """Every (tenant, connector, operation) with due rows, across tenants (the worker's view):
    the lowest priority among its due rows, and how many rows of that priority are due since
    when. Two index reads (``ix_deliveries_claim`` for the pending rows, the lease index for
    expired ones), so it costs an index scan, not a table scan, however long the backlog.
    """
    parts: dict[tuple[str, str, str, int], tuple[datetime, int]] = {}
    for due, since in ((_pending_due(now), d.next_attempt_at),
                       (_lease_expired(now), d.lease_expires_at)):
        rows = conn.execute(
            select(d.tenant_id, d.connector, d.operation, d.priority,
                   type_coerce(func.min(since), UTCDateTime()), func.count())
            .where(due)
            .group_by(d.tenant_id, d.connector, d.operation, d.priority)
        ).all()
        for tenant, connector, operation, priority, first, count in rows:
            key = (tenant, connector, operation, priority)
            first = _aware(first)
            if key in parts:
                first = min(first, parts[key][0])
                count += parts[key][1]
            parts[key] = (first, count)
    lowest: dict[tuple[str, str, str], Group] = {}
    for (tenant, connector, operation, priority), (first, count) in parts.items():
        known = lowest.get((tenant, connector, operation))
        if known is None or priority < known.priority:
            lowest[(tenant, connector, operation)] = Group(tenant, connector, operation,
                                                           priority, first, count)
    return list(lowest.values())


def live_priorities(conn: Connection, now: datetime) -> dict[tuple[str, str], int]:
    """The lowest priority in flight under a live lease, per (tenant, connector)."""
    rows = conn.execute(
        select(d.tenant_id, d.connector, func.min(d.priority))
        .where(d.status == "in_flight", d.lease_expires_at > now)
        .group_by(d.tenant_id, d.connector)
    ).all()
    return {(t, c): p for t, c, p in rows}


def new_token() -> str:
    return secrets.token_hex(16)


def claim(engine: Engine, group: Group, *, owner: str, lease_seconds: float, now: datetime,
          limit: int) -> Batch | None:
    """Take up to ``limit`` due rows of ``group`` of its (lowest) priority, oldest first, under
    a new lease; None when another worker took them first. Rows of a higher priority in the same
    group wait for a later batch: under a tight budget they go after the other groups' lower
    priorities."""
    token = new_token()
    expires = now + timedelta(seconds=lease_seconds)
    columns = (d.id, d.subject_id, d.record_key, d.payload, d.priority, d.attempt,
               d.created_at, d.sent_at)
    mine = and_(d.tenant_id == group.tenant_id, d.connector == group.connector,
                d.operation == group.operation, d.priority == group.priority)
    with db.write_transaction(engine) as conn:
        found: list[Any] = []
        for due in (_lease_expired(now), _pending_due(now)):  # abandoned rows first
            if len(found) >= limit:
                break
            query = select(*columns).where(mine, due).order_by(d.id).limit(limit - len(found))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            found.extend(conn.execute(query).all())
        if not found:
            return None
        ids = [row.id for row in found]
        conn.execute(
            update(deliveries)
            .where(d.tenant_id == group.tenant_id, d.id.in_(ids))
            .values(status="in_flight", lease_owner=owner, lease_token=token,
                    lease_expires_at=expires, updated_at=now)
        )
    rows = [ClaimedRow(row.id, row.subject_id, row.record_key, row.payload, row.priority,
                       row.attempt, _aware(row.created_at), _aware(row.sent_at))
            for row in found]
    return Batch(group.tenant_id, group.connector, group.operation, owner, token, expires,
                 rows)


def _fenced(batch: Batch, ids: Iterable[int]) -> ColumnElement[bool]:
    return and_(d.tenant_id == batch.tenant_id, d.id.in_(list(ids)),
                d.lease_token == batch.token, d.status == "in_flight")


def complete(conn: Connection, batch: Batch, ids: Sequence[int], now: datetime) -> int:
    """Mark ``ids`` done; how many were still ours. Owner and token stay, as a record of who
    delivered the row."""
    if not ids:
        return 0
    return conn.execute(update(deliveries).where(_fenced(batch, ids)).values(
        status="done", lease_expires_at=None, updated_at=now)).rowcount


def mark_sent(conn: Connection, batch: Batch, ids: Sequence[int], now: datetime) -> int:
    """Record that the service accepted ``ids`` (before they are completed); not fenced: the
    send happened whoever owns the rows now."""
    if not ids:
        return 0
    return conn.execute(update(deliveries).where(
        d.tenant_id == batch.tenant_id, d.id.in_(list(ids)), d.sent_at.is_(None)
    ).values(sent_at=now)).rowcount


def retry(conn: Connection, batch: Batch, ids: Sequence[int], *, error: str, now: datetime,
          next_attempt_at: datetime, max_attempts: int, oldest: datetime) -> tuple[int, int]:
    """One more failed attempt for ``ids``: ``pending`` again at ``next_attempt_at``, or
    ``dead`` when that was the last attempt allowed or the row is older than ``oldest``.
    Returns (retried, dead) among the rows still ours."""
    if not ids:
        return 0, 0
    exhausted = or_(d.attempt + 1 >= max_attempts, d.created_at <= oldest)
    dead_count = conn.execute(update(deliveries).where(_fenced(batch, ids), exhausted).values(
        status="dead", attempt=d.attempt + 1, last_error=error, lease_expires_at=None,
        updated_at=now)).rowcount
    retried = conn.execute(update(deliveries).where(_fenced(batch, ids)).values(
        status="pending", attempt=d.attempt + 1, next_attempt_at=next_attempt_at,
        last_error=error, lease_expires_at=None, updated_at=now)).rowcount
    return retried, dead_count


def release(conn: Connection, batch: Batch, ids: Sequence[int], *, now: datetime,
            next_attempt_at: datetime, error: str | None = None) -> int:
    """Put ``ids`` back as ``pending`` at ``next_attempt_at`` without counting an attempt (the
    send did not happen, or failed for a reason that is not the record's: an open breaker, a
    broken connection, the worker stopping)."""
    if not ids:
        return 0
    values: dict[str, Any] = {"status": "pending", "next_attempt_at": next_attempt_at,
                              "lease_expires_at": None, "updated_at": now}
    if error is not None:
        values["last_error"] = error
    return conn.execute(update(deliveries).where(_fenced(batch, ids)).values(**values)).rowcount


def dead(conn: Connection, batch: Batch, errors: Mapping[int, str], now: datetime) -> int:
    """Dead-letter rows, each with its own error text; how many were still ours."""
    owned = 0
    by_text: dict[str, list[int]] = {}
    for row_id, text in errors.items():
        by_text.setdefault(text, []).append(row_id)
    for text, ids in by_text.items():
        owned += conn.execute(update(deliveries).where(_fenced(batch, ids)).values(
            status="dead", attempt=d.attempt + 1, last_error=text, lease_expires_at=None,
            updated_at=now)).rowcount
    return owned


def cancel_superseded(conn: Connection, batch: Batch, ids: Sequence[int], now: datetime,
                      by: int) -> int:
    """Cancel claimed rows a newer row of the same record replaces (sent in its place)."""
    if not ids:
        return 0
    return conn.execute(update(deliveries).where(_fenced(batch, ids)).values(
        status="cancelled", last_error=json.dumps({"error": f"superseded by delivery {by}"}),
        lease_expires_at=None, updated_at=now)).rowcount


def _aware(value: datetime | None) -> datetime | None:
    return utc(value)
