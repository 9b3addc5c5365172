"""The scoring rules in SQL, for one customer or a whole tenant at once.

:func:`facts_sql` is one SELECT that both paths run: it aggregates each customer's
non-cancelled orders (``GROUP BY``), lets a source's reported aggregates stand in where the
gateway holds no orders, finds a return after an open win-back message, and computes the typical
gap, status and engagement score exactly as :mod:`gateway.scoring.rules` does (whole seconds,
whole days, the same float operations in the same order). Everything that differs between
SQLite and PostgreSQL is in :class:`SqlDialect`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.scoring.rules import DAY, FREQUENCY_POINTS, RECENCY_POINTS, Rules, epoch_seconds


class SqlDialect:
    """The few SQL fragments that SQLite and PostgreSQL spell differently."""

    def __init__(self, name: str) -> None:
        if name not in ("sqlite", "postgresql"):
            raise ValueError(f"scoring supports SQLite and PostgreSQL, not {name}")
        self.name = name

    @property
    def pg(self) -> bool:
        return self.name == "postgresql"

    def epoch(self, expr: str) -> str:
        """Whole seconds since 1970 of a stored UTC timestamp (fractions dropped)."""
        if self.pg:
            return f"CAST(FLOOR(EXTRACT(EPOCH FROM {expr})) AS BIGINT)"
        return f"CAST(strftime('%s', {expr}) AS INTEGER)"

    def cohort_epoch(self, expr: str) -> str:
        """The first day of a ``YYYY-MM`` cohort in epoch seconds; NULL for anything else."""
        if self.pg:
            return (f"CASE WHEN {expr} ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$' THEN "
                    f"CAST(EXTRACT(EPOCH FROM CAST({expr} || '-01' AS DATE)) AS BIGINT) END")
        return (f"CASE WHEN {expr} GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]' THEN "
                f"CAST(strftime('%s', {expr} || '-01') AS INTEGER) END")

    def floor_int(self, expr: str) -> str:
        """A non-negative float rounded down to an integer."""
        if self.pg:
            return f"CAST(FLOOR({expr}) AS INTEGER)"
        return f"CAST({expr} AS INTEGER)"  # truncation, which is floor for x >= 0

    def ident(self, expr: str) -> str:
        """An id compared and ordered byte by byte (PostgreSQL's collation may differ)."""
        return f'{expr} COLLATE "C"' if self.pg else expr

    def distinct(self, a: str, b: str) -> str:
        """Null-safe "differs"."""
        return f"({a} IS DISTINCT FROM {b})" if self.pg else f"({a} IS NOT {b})"


def facts_sql(d: SqlDialect, *, one_customer: bool) -> str:
    """One row per scored customer of ``:tenant`` (not redacted) with these columns:

    ``customer_id``, ``old_status``, ``old_returned_at``, ``status_changed_at``; the gateway's
    own aggregates ``order_count``, ``ltv_minor``, ``first_at``, ``last_at`` (NULL without
    orders); the effective ``eff_count``, ``eff_ltv``, ``last_epoch`` (reported values stand
    in); ``gap``, ``status``, ``score``; and ``returned_at``, the time of the order that
    completes an open win-back (NULL when none does). With ``one_customer`` it is filtered to
    ``:customer`` and also carries the profile fields a trigger item needs.
    """
    only_order = "AND o.customer_id = :customer" if one_customer else ""
    only_customer = "AND c.id = :customer" if one_customer else ""
    profile = ("c.first_name, c.last_name, c.email, c.phone, c.returned_at AS old_returned_at, "
               "c.status_changed_at, c.updated_at," if one_customer else "")
    rec = f"CAST(:recency_points AS {'DOUBLE PRECISION' if d.pg else 'REAL'})"
    lost_days = "(:lost_after * gap)"
    return f"""
WITH agg AS (
    SELECT o.customer_id, COUNT(*) AS n,
           SUM(CASE WHEN o.currency = :base THEN o.total_minor ELSE 0 END) AS ltv,
           MIN(o.placed_at) AS first_at, MAX(o.placed_at) AS last_at
    FROM orders o
    WHERE o.tenant_id = :tenant AND NOT o.cancelled {only_order}
    GROUP BY o.customer_id
),
eff AS MATERIALIZED (
    SELECT c.id AS customer_id, c.status AS old_status, {profile}
           a.n AS order_count, a.ltv AS ltv_minor, a.first_at, a.last_at,
           CASE WHEN a.n IS NOT NULL THEN a.n ELSE c.reported_order_count END AS eff_count,
           CASE WHEN a.n IS NOT NULL THEN a.ltv
                WHEN c.reported_ltv_currency = :base THEN c.reported_ltv_minor END AS eff_ltv,
           CASE WHEN a.n IS NOT NULL THEN {d.epoch('a.first_at')}
                ELSE COALESCE({d.epoch('c.reported_first_order_at')},
                              {d.cohort_epoch('c.reported_cohort')}) END AS first_epoch,
           CASE WHEN a.n IS NOT NULL THEN {d.epoch('a.last_at')}
                ELSE {d.epoch('c.reported_last_order_at')} END AS last_epoch,
           CASE WHEN c.winback_status IN ('lapsed', 'lost')
                     AND (c.returned_at IS NULL OR c.returned_at < c.winback_started_at)
                THEN (SELECT MIN(o.placed_at) FROM orders o
                      WHERE o.tenant_id = c.tenant_id AND o.customer_id = c.id
                        AND NOT o.cancelled AND o.placed_at >= c.winback_started_at)
                END AS back_at,
           c.winback_started_at
    FROM customers c
    LEFT JOIN agg a ON a.customer_id = c.id
    WHERE c.tenant_id = :tenant AND c.redacted_at IS NULL {only_customer}
),
gapped AS (
    SELECT eff.*,
           CASE WHEN last_epoch IS NULL THEN NULL
                WHEN eff_count >= 2 AND first_epoch IS NOT NULL
                     AND last_epoch - first_epoch >= (eff_count - 1) * {DAY}
                THEN (last_epoch - first_epoch) / ((eff_count - 1) * {DAY})
                ELSE :default_gap END AS gap,
           CASE WHEN last_epoch IS NULL THEN NULL
                WHEN :now <= last_epoch THEN 0
                ELSE (:now - last_epoch) / {DAY} END AS elapsed,
           CASE WHEN eff_count IS NULL OR eff_count < 1 THEN 1 ELSE eff_count END AS visits
    FROM eff
)
SELECT gapped.*,
       CASE WHEN back_at IS NOT NULL
                 AND {d.epoch('back_at')} <= {d.epoch('winback_started_at')} + :window
            THEN back_at END AS returned_at,
       CASE WHEN elapsed IS NULL THEN NULL
            WHEN elapsed >= :lost_after * gap THEN 'lost'
            WHEN elapsed >= :lapsed_after * gap THEN 'lapsed'
            WHEN elapsed >= :at_risk_after * gap THEN 'at_risk'
            ELSE 'active' END AS status,
       CASE WHEN elapsed IS NULL THEN NULL
            ELSE (CASE WHEN elapsed <= gap THEN {RECENCY_POINTS}
                       WHEN elapsed >= {lost_days} THEN 0
                       ELSE {d.floor_int(f"{rec} * ({lost_days} - elapsed) / ({lost_days} - gap)")}
                  END) + {FREQUENCY_POINTS} - {FREQUENCY_POINTS} / visits
       END AS score
FROM gapped
"""


def facts_params(tenant_id: str, base_currency: str, rules: Rules, now: datetime,
                 customer_id: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "base": base_currency,
        "window": rules.attribution_window_days * DAY,
        "default_gap": rules.default_gap_days,
        "now": epoch_seconds(now),
        "at_risk_after": rules.at_risk_after,
        "lapsed_after": rules.lapsed_after,
        "lost_after": rules.lost_after,
        "recency_points": float(RECENCY_POINTS),
    }
    if customer_id is not None:
        params["customer"] = customer_id
    return params
