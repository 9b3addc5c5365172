"""The facts of a customer whose every order the caller knows, computed without a query.

A customer that an ingest has just created has no orders but the ones that ingest wrote since:
its re-score needs nothing that the database would add, so :func:`known_facts` gives the row
that :func:`gateway.scoring.sql.facts_sql` would (the same columns, from the same rules in
:mod:`gateway.scoring.rules`) for the customer's row and those orders. A re-score of such a
customer is then one statement (its update) instead of two on a batch of new customers' first
orders. Tests hold the two to each other: a re-score through the query right after changes
nothing.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, Sequence

from gateway.model import utc
from gateway.scoring.rules import WINBACK_STATUSES, Rules, assess, cohort_epoch, epoch_seconds


class KnownOrder(NamedTuple):
    """What scoring reads of an order, as it was written."""

    placed_at: datetime
    total_minor: int
    currency: str
    cancelled: bool


def known_facts(row: Any, orders: Sequence[KnownOrder], *, base_currency: str, rules: Rules,
                now: datetime) -> Any:
    """The facts row of the customer ``row`` (every column, as its insert returned it) whose
    orders are exactly ``orders``; ``None`` where only the query can tell (an open win-back
    message, whose return the query attributes)."""
    if row.winback_status in WINBACK_STATUSES:
        return None
    live = [order for order in orders if not order.cancelled]
    if live:
        order_count: int | None = len(live)
        ltv: int | None = sum(o.total_minor for o in live if o.currency == base_currency)
        first_at: datetime | None = utc(min(o.placed_at for o in live))
        last_at: datetime | None = utc(max(o.placed_at for o in live))
        eff_count, eff_ltv = order_count, ltv
        first_epoch, last_epoch = epoch_seconds(first_at), epoch_seconds(last_at)
    else:  # the source's reported aggregates stand in, as in the query
        order_count = ltv = first_at = last_at = None
        eff_count = row.reported_order_count
        eff_ltv = (row.reported_ltv_minor if row.reported_ltv_currency == base_currency
                   else None)
        first_epoch = epoch_seconds(row.reported_first_order_at)
        if first_epoch is None:
            first_epoch = cohort_epoch(row.reported_cohort)
        last_epoch = epoch_seconds(row.reported_last_order_at)
    gap, status, score = assess(epoch_seconds(now), last_epoch, first_epoch, eff_count, rules)
    return SimpleNamespace(
        customer_id=row.id, old_status=row.status, first_name=row.first_name,
        last_name=row.last_name, email=row.email, phone=row.phone,
        old_returned_at=row.returned_at, status_changed_at=row.status_changed_at,
        updated_at=row.updated_at, order_count=order_count, ltv_minor=ltv, first_at=first_at,
        last_at=last_at, eff_count=eff_count, eff_ltv=eff_ltv, first_epoch=first_epoch,
        last_epoch=last_epoch, gap=gap, status=status, score=score, returned_at=None)
