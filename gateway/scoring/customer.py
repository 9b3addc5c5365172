"""Scoring one customer, in the caller's transaction: after an order or customer write, when a
win-back message starts, and when Rekindle answers with its own scores."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, bindparam, select, text, update

from gateway.model import Event, utc
from gateway.scoring.items import FIRST_STATUS_EVENTS, customer_item, planned_events
from gateway.scoring.known import KnownOrder, known_facts
from gateway.scoring.rules import WINBACK_STATUSES, Rules, check_status
from gateway.scoring.sql import SqlDialect, facts_params, facts_sql
from gateway.store.events import append_event, append_events, lock_tenant_events
from gateway.store.held import HeldWrites
from gateway.store.tables import customers
from gateway.store.tenants import get_settings
from gateway.store.types import UTCDateTime, utcnow
from gateway.tenant_settings import TenantSettings

_TIMES = ("first_at", "last_at", "returned_at", "old_returned_at", "status_changed_at",
          "updated_at")


def _lock(conn: Connection, tenant_id: str, customer_id: str) -> Any:
    """The customer's row, locked for the rest of the transaction on PostgreSQL.

    The tenant's event lock comes first: every transaction that writes events takes it before
    any row lock (see :func:`gateway.store.events.lock_tenant_events`), so none deadlocks."""
    lock_tenant_events(conn, tenant_id)
    return conn.execute(
        select(customers).where(customers.c.tenant_id == tenant_id, customers.c.id == customer_id)
        .with_for_update()
    ).first()


def rescore_customer(conn: Connection, tenant_id: str, customer_id: str, *,
                     now: datetime | None = None) -> list[Event]:
    """Recompute one customer's aggregates, typical gap, status and score from its orders (or
    its reported aggregates), attribute a return, store them and write the events.

    Call it after writing the customer's orders, in the same transaction. RFM scores, grade and
    segments rank a customer against the whole tenant and are left to :func:`rescore_tenant`.
    An unknown or redacted customer is not scored (``[]``). Events come only when the gateway
    is the tenant's scoring authority; its own status and score are stored either way.
    """
    return rescore_customers(conn, tenant_id, [customer_id], now=now)


_FACTS: dict[str, Any] = {}


def _facts_query(conn: Connection) -> Any:
    """The one-customer facts query of the connection's dialect (built once)."""
    query = _FACTS.get(conn.dialect.name)
    if query is None:
        query = _FACTS[conn.dialect.name] = text(
            facts_sql(SqlDialect(conn.dialect.name), one_customer=True)).columns(
            **{name: UTCDateTime() for name in _TIMES})
    return query


def rescore_customers(conn: Connection, tenant_id: str, customer_ids: Iterable[str], *,
                      now: datetime | None = None,
                      settings: TenantSettings | None = None,
                      inserted: Mapping[str, Any] | None = None,
                      known_orders: Mapping[str, Sequence[KnownOrder]] | None = None
                      ) -> list[Event]:
    """:func:`rescore_customer` for each of ``customer_ids`` in turn, with the tenant's
    settings read (unless the caller read them in this transaction: ``settings``) and its
    event lock taken once, and the events of all of them written together (in the
    customers' order). ``inserted``: the rows of customers this transaction inserted and has
    not written since, by id (as their insert returned them; the transaction holds their
    locks already), which are then not read again. ``known_orders``: of those customers, the
    ones whose every order the caller wrote, with those orders; their facts are then
    computed rather than queried (:mod:`gateway.scoring.known`)."""
    now = utc(now) or utcnow()
    ids = list(customer_ids)
    if not ids:
        return []
    lock_tenant_events(conn, tenant_id)
    settings = settings or get_settings(conn, tenant_id)
    rules = Rules.from_settings(settings)
    query = _facts_query(conn)
    inserted, known_orders = inserted or {}, known_orders or {}
    planned: list[tuple[str, str, Any]] = []
    for customer_id in ids:
        row = inserted.get(customer_id)
        orders = known_orders.get(customer_id) if row is not None else None
        if row is None:  # a stored customer, read as the held updates leave it
            HELD_SCORES.write(conn)
            row = conn.execute(_LOCKED_ROW, {"tenant": tenant_id,
                                             "customer": customer_id}).first()
        if row is None or row.redacted_at is not None:
            continue
        facts = None
        if orders is not None:
            facts = known_facts(row, orders, base_currency=settings.base_currency, rules=rules,
                                now=now)
        if facts is None:
            facts = conn.execute(query, facts_params(tenant_id, settings.base_currency, rules,
                                                     now, customer_id)).first()
        planned.extend((type_, customer_id, item) for type_, item in _rescore_row(
            conn, tenant_id, row, facts, settings, now))
    if not planned:
        return []
    event_ids = append_events(conn, tenant_id, planned, occurred_at=now, source="gateway")
    return [Event(id=event_id, tenant_id=tenant_id, type=type_, subject_id=customer_id,
                  occurred_at=now, source="gateway",
                  item={"id": event_id, **{k: v for k, v in item.items() if k != "id"}})
            for event_id, (type_, customer_id, item) in zip(event_ids, planned)]


#: The columns a re-score reads of the customer and may write (a customer row is wide, and
#: reading all of it costs more on PostgreSQL than the rest of the re-score's reads).
_SCORED = ("id", "redacted_at", "order_count", "ltv_minor", "ltv_currency", "first_order_at",
           "last_order_at", "typical_gap_days", "gateway_status", "gateway_score", "status",
           "engagement_score", "status_changed_at", "returned_at")

#: Those columns of the customer's row, locked for the rest of the transaction on PostgreSQL
#: (see :func:`_lock`; the tenant's event lock is taken first).
_LOCKED_ROW = select(*(customers.c[name] for name in _SCORED)).where(
    customers.c.tenant_id == bindparam("tenant"),
    customers.c.id == bindparam("customer")).with_for_update()


def _rescore_row(conn: Connection, tenant_id: str, row: Any, facts: Any, settings: Any,
                 now: datetime) -> list[tuple[str, Any]]:
    """Store one (locked, unredacted) customer row's scores from its ``facts`` (a row of
    :func:`gateway.scoring.sql.facts_sql`); the events to write."""
    customer_id = row.id
    gateway = settings.scoring_authority == "gateway"
    has_orders = facts.order_count is not None
    values: dict[str, Any] = {
        "order_count": facts.order_count,
        "ltv_minor": int(facts.ltv_minor) if has_orders else None,
        "ltv_currency": settings.base_currency if has_orders else None,
        "first_order_at": facts.first_at,
        "last_order_at": facts.last_at,
        "typical_gap_days": facts.gap,
        "gateway_status": facts.status,
        "gateway_score": facts.score,
    }
    planned: list = []
    if gateway:
        values.update(status=facts.status, engagement_score=facts.score)
        if facts.status != facts.old_status:
            values["status_changed_at"] = now
        if facts.returned_at is not None:
            values["returned_at"] = facts.returned_at
        planned = planned_events(facts, now=now, currency=settings.base_currency)
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        scores = (tuple(changed), {"tenant": tenant_id, "customer": customer_id,
                                   "updated_at": now,
                                   **{f"new_{k}": v for k, v in changed.items()}})
        held = HELD_SCORES.rows(conn)
        if held is not None:
            held.append(scores)
        else:
            _write_scores(conn, [scores])
    return planned


def _write_scores(conn: Connection, updates: list[tuple[tuple[str, ...], dict]]) -> None:
    """The score updates, in order: one ``executemany`` for each run of updates of the same
    columns."""
    for columns, run in groupby(updates, key=lambda scores: scores[0]):
        conn.execute(_score_update(columns), [params for _, params in run])


#: The re-scores' updates, held back inside ``HELD_SCORES.holding(conn)`` and written together.
#: A re-score that reads a stored customer writes the held ones first; a caller holding them
#: writes them before anything else reads or writes a customer it may have re-scored.
HELD_SCORES = HeldWrites("scores", _write_scores)


_UPDATES: dict[tuple[str, ...], Any] = {}


def _score_update(columns: tuple[str, ...]) -> Any:
    """The UPDATE of these score columns (and ``updated_at``), built once per set."""
    stmt = _UPDATES.get(columns)
    if stmt is None:
        stmt = _UPDATES[columns] = update(customers).where(
            customers.c.tenant_id == bindparam("tenant"),
            customers.c.id == bindparam("customer")).values(
            updated_at=bindparam("updated_at"), **{k: bindparam(f"new_{k}") for k in columns})
    return stmt


def record_winback(conn: Connection, tenant_id: str, customer_id: str, *,
                   at: datetime | None = None) -> bool:
    """Record that a win-back message to this customer starts ``at`` (default now), with the
    customer's status at that moment; the attribution window runs from here.

    Returns True when the message can be attributed: the customer is ``lapsed`` or ``lost``.
    For any other status (``active``, ``at_risk``, not yet scored) the message is still
    recorded, so that it replaces an older open message, but no order after it counts as a
    return and False is returned. A later message replaces an earlier one. An unknown or
    redacted customer records nothing (False).
    """
    at = utc(at) or utcnow()
    row = _lock(conn, tenant_id, customer_id)
    if row is None or row.redacted_at is not None:
        return False
    conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                         customers.c.id == customer_id)
                 .values(winback_started_at=at, winback_status=row.status))
    return row.status in WINBACK_STATUSES


def apply_rekindle_answer(conn: Connection, tenant_id: str, customer_id: str, *,
                          status: str | None, engagement_score: int | None, returned: bool,
                          at: datetime | None = None,
                          returned_at: datetime | None = None) -> list[Event]:
    """Keep Rekindle's re-scored answer (``status``, ``engagement_score``, ``returned``).

    It is always stored as ``rekindle_status`` / ``rekindle_score``. When the tenant's
    ``scoring_authority`` is ``rekindle`` it also becomes the customer's status and score: a
    change of status writes ``customer.status_changed`` (a first status only when not
    ``active``), and ``returned: true`` sets ``returned_at`` and writes ``customer.returned`` -
    once: a second ``returned: true`` within the attribution window of the first (a resent
    update) is not another return. Under the gateway's authority nothing is emitted.
    ``returned_at`` is when Rekindle says the return happened (its customer-returned trigger
    tells; default ``at``).
    """
    check_status(status)
    at = utc(at) or utcnow()
    returned_moment = utc(returned_at) or at
    row = _lock(conn, tenant_id, customer_id)
    if row is None or row.redacted_at is not None:
        return []
    settings = get_settings(conn, tenant_id)
    values: dict[str, Any] = {"rekindle_status": status, "rekindle_score": engagement_score}
    planned: list[tuple[str, datetime | None]] = []
    if settings.scoring_authority == "rekindle":
        new_status = status if status is not None else row.status
        values.update(status=new_status, engagement_score=engagement_score)
        changed = new_status != row.status
        if changed:
            values["status_changed_at"] = at
            if row.status is not None or new_status in FIRST_STATUS_EVENTS:
                planned.append(("customer.status_changed", None))
        window = timedelta(days=settings.attribution_window_days)
        fresh = row.returned_at is None or row.returned_at <= returned_moment - window or (
            row.winback_started_at is not None and row.returned_at < row.winback_started_at)
        if returned and fresh:
            values["returned_at"] = returned_moment
            planned.append(("customer.returned", None))
    conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                         customers.c.id == customer_id)
                 .values(**values, updated_at=at))
    if not planned:
        return []
    after = _lock(conn, tenant_id, customer_id)
    has_orders = after.order_count is not None
    item = customer_item(
        customer_id=customer_id, first_name=after.first_name, last_name=after.last_name,
        email=after.email, phone=after.phone, status=after.status, previous_status=row.status,
        engagement_score=after.engagement_score,
        last_order_at=after.last_order_at if has_orders else after.reported_last_order_at,
        ltv_minor=_effective_ltv(after, settings.base_currency), currency=settings.base_currency,
        purchase_count=after.order_count if has_orders else after.reported_order_count,
        returned_at=after.returned_at, updated_at=at, changed_at=after.status_changed_at)
    return [append_event(conn, tenant_id, type_, customer_id, item, occurred_at=at,
                         source="rekindle") for type_, _ in planned]


def _effective_ltv(row: Any, base_currency: str) -> int | None:
    if row.order_count is not None:
        return row.ltv_minor
    if row.reported_ltv_currency == base_currency:
        return row.reported_ltv_minor
    return None

