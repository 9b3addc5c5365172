"""Re-scoring a whole tenant as one set-based pass.

Statuses change with the passage of time alone, so the relay runs this daily (and
``python app.py rescore --tenant T`` runs it now). The pass, in one transaction:

1. stages every customer's facts (:func:`gateway.scoring.sql.facts_sql`: aggregates, gap,
   status, score, return) into a temporary table with one ``INSERT ... SELECT``;
2. finds the RFM quintiles' cut points: ``NTILE(5)`` ordered by value, then customer id, puts
   the first ``n % 5`` tiles one row larger; so the rows that start tiles 2..5 are known from
   the count alone, and one narrow ``ROW_NUMBER()`` sort per score fetches those four rows.
   A customer's tile is then 1 plus the number of cut points at or before it - exactly
   ``NTILE(5)``'s answer, without writing a window's result for every row;
3. streams only the customers that give events (a transition or a return) out of the stage, in
   customer id order and in chunks (a server-side cursor on PostgreSQL), builds their items in
   Python and bulk-inserts the events;
4. updates the customers from the staged rows, their tiles, and grade and segments (joined from
   a 126-row table of cells) in one ``UPDATE ... FROM``, touching only the rows where something
   changed.

No step holds more than one chunk in Python, so memory does not grow with the customer count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
)

from gateway.model import utc
from gateway.scoring.items import FIRST_STATUS_EVENTS, planned_events
from gateway.scoring.rules import Rules, rfm_cells
from gateway.scoring.sql import SqlDialect, facts_params, facts_sql
from gateway.store import db
from gateway.store.events import append_events
from gateway.store.tables import customers
from gateway.store.tenants import get_settings
from gateway.store.types import Json, UTCDateTime, utcnow

log = logging.getLogger(__name__)

#: Customers whose events are built per round trip.
CHUNK = 5_000

_temp = MetaData()

stage = Table(
    "scoring_stage", _temp,
    Column("customer_id", String(40), primary_key=True),
    Column("old_status", String(16)),
    Column("order_count", BigInteger),
    Column("ltv_minor", BigInteger),
    Column("first_at", UTCDateTime()),
    Column("last_at", UTCDateTime()),
    Column("eff_count", BigInteger),
    Column("eff_ltv", BigInteger),
    Column("last_epoch", BigInteger),
    Column("gap", Integer),
    Column("status", String(16)),
    Column("score", Integer),
    Column("visits", BigInteger),
    Column("returned_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)

cells = Table(
    "scoring_cells", _temp,
    Column("cell", Integer, primary_key=True),
    Column("rfm", Integer),
    Column("grade", String(1)),
    Column("segments", Json, nullable=False),
    prefixes=["TEMPORARY"],
)

#: The events the pass writes.
_EVENT_TYPES = ("customer.status_changed", "customer.returned")

_STAGED = ("customer_id, old_status, order_count, ltv_minor, first_at, last_at, eff_count, "
           "eff_ltv, last_epoch, gap, status, score, visits, returned_at")


@dataclass(frozen=True)
class RescoreResult:
    tenant_id: str
    customers: int  # customers looked at (every one not redacted)
    scored: int  # customers with a status (a known last purchase)
    updated: int  # customer rows that changed
    transitions: int  # customer.status_changed events written
    returns: int  # customer.returned events written
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def _stage_sql(d: SqlDialect) -> str:
    return f"""
INSERT INTO scoring_stage ({_STAGED})
SELECT {_STAGED} FROM ({facts_sql(d, one_customer=False)}) x
"""


#: The RFM scores: (column, prefix of its parameters, the staged value ranked).
_RFM = (("recency_score", "r", "s.last_epoch"),
        ("frequency_score", "f", "s.visits"),
        ("monetary_score", "m", "COALESCE(s.eff_ltv, 0)"))


def tile_starts(n: int) -> list[int]:
    """The 1-based row numbers at which ``NTILE(5)`` over ``n`` rows starts tiles 2..5 (the
    first ``n % 5`` tiles hold one row more; with fewer than 5 rows, fewer tiles)."""
    q, rem = divmod(n, 5)
    return [start for k in range(1, 5) if (start := 1 + k * q + min(k, rem)) <= n]


def _cut_points(conn: Connection, d: SqlDialect, value: str, n: int) -> list[tuple]:
    """``(value, customer_id)`` of the first row of each tile after the first, ordered by value
    then customer id: one narrow sort of the staged, scored customers."""
    starts = tile_starts(n)
    if not starts:
        return []
    rows = conn.execute(text(f"""
SELECT rn, v, customer_id FROM (
    SELECT {value} AS v, s.customer_id,
           ROW_NUMBER() OVER (ORDER BY {value}, {d.ident('s.customer_id')}) AS rn
    FROM scoring_stage s WHERE s.last_epoch IS NOT NULL
) x WHERE rn IN ({", ".join(str(start) for start in starts)})
ORDER BY rn
""")).all()
    return [(row.v, row.customer_id) for row in rows]


def _tile_sql(d: SqlDialect, prefix: str, value: str, cuts: int) -> str:
    """The tile (1..5) of a staged row: 1 plus the number of cut points at or before it."""
    steps = "".join(
        f" + CASE WHEN {value} > :{prefix}{i}v OR ({value} = :{prefix}{i}v AND "
        f"{d.ident('s.customer_id')} >= :{prefix}{i}id) THEN 1 ELSE 0 END"
        for i in range(cuts))
    return f"CASE WHEN s.last_epoch IS NULL THEN NULL ELSE 1{steps} END"


def _update_sql(d: SqlDialect, gateway: bool, cuts: dict[str, int]) -> str:
    tiles = {column: _tile_sql(d, prefix, value, cuts[prefix]) for column, prefix, value in _RFM}
    cell = (f"CASE WHEN s.last_epoch IS NULL THEN 0 ELSE 100 * ({tiles['recency_score']}) + "
            f"10 * ({tiles['frequency_score']}) + ({tiles['monetary_score']}) END")
    sets = {
        "order_count": "s.order_count",
        "ltv_minor": "s.ltv_minor",
        "ltv_currency": "CASE WHEN s.order_count IS NULL THEN NULL ELSE :base END",
        "first_order_at": "s.first_at",
        "last_order_at": "s.last_at",
        "typical_gap_days": "s.gap",
        **tiles,
        "rfm": "k.rfm",
        "grade": "k.grade",
        "segments": "k.segments",
        "rfm_source": "CASE WHEN s.last_epoch IS NULL THEN NULL ELSE 'gateway' END",
        "gateway_status": "s.status",
        "gateway_score": "s.score",
    }
    if gateway:
        sets.update(status="s.status", engagement_score="s.score",
                    returned_at="COALESCE(s.returned_at, customers.returned_at)")
    changed = " OR ".join(d.distinct(f"customers.{col}", expr) for col, expr in sets.items())
    extra = {"updated_at": ":now_ts"}
    if gateway:
        extra["status_changed_at"] = (f"CASE WHEN {d.distinct('s.status', 'customers.status')} "
                                      f"THEN :now_ts ELSE customers.status_changed_at END")
    assignments = ",\n    ".join(f"{col} = {expr}" for col, expr in {**sets, **extra}.items())
    return f"""
UPDATE customers SET
    {assignments}
FROM scoring_stage s JOIN scoring_cells k ON k.cell = {cell}
WHERE customers.tenant_id = :tenant AND customers.id = s.customer_id AND ({changed})
"""


def _drop_temp(conn: Connection) -> None:
    for table in (stage, cells):
        conn.execute(text(f"DROP TABLE IF EXISTS {table.name}"))


def _write_events(conn: Connection, tenant_id: str, currency: str,
                  now: datetime) -> tuple[int, int]:
    """Stream the staged customers that give events, in chunks; returns (transitions, returns)."""
    gives_event = or_(
        and_(stage.c.status.is_not(None), or_(
            and_(stage.c.old_status.is_(None), stage.c.status.in_(FIRST_STATUS_EVENTS)),
            and_(stage.c.old_status.is_not(None), stage.c.status != stage.c.old_status))),
        stage.c.returned_at.is_not(None),
    )
    query = (
        select(stage.c.customer_id, stage.c.old_status, stage.c.status, stage.c.score,
               stage.c.eff_count, stage.c.eff_ltv, stage.c.last_epoch, stage.c.returned_at,
               customers.c.first_name, customers.c.last_name, customers.c.email,
               customers.c.phone, customers.c.returned_at.label("old_returned_at"),
               customers.c.status_changed_at)
        .join(customers, customers.c.id == stage.c.customer_id)
        .where(gives_event)
        .order_by(stage.c.customer_id)
        .execution_options(yield_per=CHUNK)
    )
    transitions = returns = 0
    for rows in conn.execute(query).partitions():
        planned = [(type_, row.customer_id, item) for row in rows
                   for type_, item in planned_events(row, now=now, currency=currency)]
        append_events(conn, tenant_id, planned, occurred_at=now, source="gateway")
        chunk_returns = sum(1 for type_, _, _ in planned if type_ == "customer.returned")
        returns += chunk_returns
        transitions += len(planned) - chunk_returns
    return transitions, returns


def rescore_tenant(engine: Engine, tenant_id: str, *, now: datetime | None = None) -> RescoreResult:
    """Re-score every customer of the tenant (see the module's docstring) and return the counts.

    Events (``customer.status_changed``, ``customer.returned``) are written only when the
    gateway is the tenant's scoring authority; the gateway's own status and score
    (``gateway_status``, ``gateway_score``), aggregates and RFM are stored either way.
    """
    started = time.perf_counter()
    now = utc(now) or utcnow()
    # The writer first (SQLite's BEGIN IMMEDIATE): a deferred transaction that read before another
    # writer committed would fail with "database is locked" at its first write.
    with db.write_transaction(engine) as conn:
        d = SqlDialect(conn.dialect.name)
        settings = get_settings(conn, tenant_id)
        rules = Rules.from_settings(settings)
        gateway = settings.scoring_authority == "gateway"
        _drop_temp(conn)
        stage.create(conn)
        cells.create(conn)
        try:
            conn.execute(cells.insert(), rfm_cells())
            conn.execute(text(_stage_sql(d)),
                         facts_params(tenant_id, settings.base_currency, rules, now))
            if d.pg:
                conn.execute(text("ANALYZE scoring_stage"))
            looked, scored = conn.execute(
                select(func.count(), func.count(stage.c.status))).one()
            log.debug("rescore %s: staged %d customers in %.2fs", tenant_id, looked,
                      time.perf_counter() - started)
            params = {"tenant": tenant_id, "now_ts": now, "base": settings.base_currency}
            cuts = {}
            for _, prefix, value in _RFM:
                points = _cut_points(conn, d, value, scored)
                cuts[prefix] = len(points)
                for i, (v, ident) in enumerate(points):
                    params[f"{prefix}{i}v"], params[f"{prefix}{i}id"] = v, ident
            log.debug("rescore %s: quintiles cut at %.2fs", tenant_id,
                      time.perf_counter() - started)
            transitions = returns = 0
            if gateway:
                # The deliveries the status events call for (the win-back route), planned in
                # this transaction once the statuses are stored; nothing when no route takes
                # them. The relay imports this package, so it is imported here.
                from gateway.relay.routes_planning import bulk_planning

                deliveries = bulk_planning(conn, tenant_id, _EVENT_TYPES)
                transitions, returns = _write_events(conn, tenant_id, settings.base_currency, now)
            log.debug("rescore %s: %d events written at %.2fs", tenant_id,
                      transitions + returns, time.perf_counter() - started)
            update = text(_update_sql(d, gateway, cuts)).bindparams(
                bindparam("now_ts", type_=UTCDateTime()))
            updated = conn.execute(update, params).rowcount
            if gateway:
                deliveries.plan_written()
        finally:
            _drop_temp(conn)
    return RescoreResult(tenant_id=tenant_id, customers=looked, scored=scored, updated=updated,
                         transitions=transitions, returns=returns,
                         seconds=round(time.perf_counter() - started, 3))
