"""The scoring rules as pure functions: typical gap, status, engagement score, grade, segments.

These are the readable statement of the rules in ``docs/scoring.md``. The set-based pass
(:mod:`gateway.scoring.sql`) computes the same gap, status and score in SQL, and the tests hold
the two to each other at every threshold; grade and segments are computed here once for each of
the 125 RFM cells and joined in SQL from a small table.

All time arithmetic is in whole seconds since the Unix epoch (fractions of a second are
dropped), and "days since the last order" is whole days, rounded down, so that Python, SQLite
and PostgreSQL agree to the second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from gateway.model import STATUSES
from gateway.tenant_settings import TenantSettings

DAY = 86_400
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Points of the engagement score that come from recency (the rest come from frequency).
RECENCY_POINTS = 80
FREQUENCY_POINTS = 20

#: Statuses an order can be a *return* from, when a win-back message started in them.
WINBACK_STATUSES = ("lapsed", "lost")

_COHORT = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Rules:
    """The tenant's thresholds, as the rules use them."""

    default_gap_days: int = 60
    at_risk_after: float = 1.5
    lapsed_after: float = 3.0
    lost_after: float = 6.0
    attribution_window_days: int = 30

    @classmethod
    def from_settings(cls, settings: TenantSettings) -> "Rules":
        return cls(
            default_gap_days=int(settings.default_gap_days),
            at_risk_after=float(settings.at_risk_after),
            lapsed_after=float(settings.lapsed_after),
            lost_after=float(settings.lost_after),
            attribution_window_days=int(settings.attribution_window_days),
        )


# --- time ------------------------------------------------------------------------------------


def epoch_seconds(moment: datetime | None) -> int | None:
    """Whole seconds since 1970-01-01 UTC, fractions dropped; a naive time is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _SECOND


def from_epoch(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def cohort_epoch(cohort: str | None) -> int | None:
    """The first day of a ``YYYY-MM`` cohort (RCI's only hint of a first order), or None."""
    if not cohort or not _COHORT.match(cohort):
        return None
    return epoch_seconds(datetime(int(cohort[:4]), int(cohort[5:7]), 1, tzinfo=timezone.utc))


def elapsed_days(now_epoch: int, last_epoch: int) -> int:
    """Whole days since the last order (0 for an order in the future)."""
    return 0 if now_epoch <= last_epoch else (now_epoch - last_epoch) // DAY


# --- the rules -------------------------------------------------------------------------------


def typical_gap_days(order_count: int | None, first_epoch: int | None, last_epoch: int | None,
                     default_gap_days: int) -> int:
    """The customer's own expected gap between orders, in whole days.

    With two or more orders and a known first order, it is the mean interval between the first
    and the last order, ``(last - first) / (count - 1)``, rounded down. Orders bunched closer
    than a day apart on average (two orders the same afternoon) say nothing about a rhythm, so
    they, one order, or an unknown first order date give the tenant's default gap.
    """
    if (order_count is not None and order_count >= 2 and first_epoch is not None
            and last_epoch is not None and last_epoch - first_epoch >= (order_count - 1) * DAY):
        return (last_epoch - first_epoch) // ((order_count - 1) * DAY)
    return default_gap_days


def status_for(elapsed: int, gap: int, rules: Rules) -> str:
    """``active`` / ``at_risk`` / ``lapsed`` / ``lost``: each threshold is a multiple of the gap,
    and a customer reaches a status on the first whole day at or beyond its threshold."""
    if elapsed >= rules.lost_after * gap:
        return "lost"
    if elapsed >= rules.lapsed_after * gap:
        return "lapsed"
    if elapsed >= rules.at_risk_after * gap:
        return "at_risk"
    return "active"


def engagement_score(elapsed: int, gap: int, order_count: int | None, rules: Rules) -> int:
    """0-100: recency points (80 within the gap, falling linearly to 0 at the ``lost``
    threshold) plus frequency points (``20 - 20 // orders``: 0 for one order, 10 for two,
    20 from 21 orders on). Never rises as time passes; never falls as orders are added."""
    lost_days = rules.lost_after * gap
    if elapsed <= gap:
        recency = RECENCY_POINTS
    elif elapsed >= lost_days:
        recency = 0
    else:
        recency = int(float(RECENCY_POINTS) * (lost_days - elapsed) / (lost_days - gap))
    visits = order_count if order_count is not None and order_count >= 1 else 1
    return recency + FREQUENCY_POINTS - FREQUENCY_POINTS // visits


def assess(now_epoch: int, last_epoch: int | None, first_epoch: int | None,
           order_count: int | None, rules: Rules) -> tuple[int | None, str | None, int | None]:
    """``(gap, status, score)`` of one customer; all ``None`` without a known last order."""
    if last_epoch is None:
        return None, None, None
    gap = typical_gap_days(order_count, first_epoch, last_epoch, rules.default_gap_days)
    elapsed = elapsed_days(now_epoch, last_epoch)
    return gap, status_for(elapsed, gap, rules), engagement_score(elapsed, gap, order_count, rules)


# --- RFM: grade and segments -----------------------------------------------------------------

#: Grade by the sum R + F + M (3..15), best first.
GRADES: tuple[tuple[str, int], ...] = (("A", 13), ("B", 10), ("C", 7), ("D", 5), ("F", 3))


def grade_for(r: int, f: int, m: int) -> str:
    total = r + f + m
    for grade, floor in GRADES:
        if total >= floor:
            return grade
    raise ValueError(f"RFM scores must be 1-5, got {r}{f}{m}")


#: The primary segment: the first rule that matches, in this order. Every cell matches one.
SEGMENT_RULES: tuple[tuple[str, str, Callable[[int, int, int], bool]], ...] = (
    ("champions", "R >= 4, F >= 4, M >= 4", lambda r, f, m: r >= 4 and f >= 4 and m >= 4),
    ("loyal", "R >= 3, F >= 4", lambda r, f, m: r >= 3 and f >= 4),
    ("potential_loyalist", "R >= 4, F 2-3", lambda r, f, m: r >= 4 and 2 <= f <= 3),
    ("new_customer", "R >= 4, F = 1", lambda r, f, m: r >= 4 and f == 1),
    ("needs_attention", "R = 3, F <= 3", lambda r, f, m: r == 3 and f <= 3),
    ("cant_lose_them", "R <= 2, F >= 4, M >= 4", lambda r, f, m: r <= 2 and f >= 4 and m >= 4),
    ("slipping_regular", "R <= 2, F >= 3", lambda r, f, m: r <= 2 and f >= 3),
    ("hibernating", "R = 2, F <= 2", lambda r, f, m: r == 2 and f <= 2),
    ("dormant", "R = 1, F <= 2", lambda r, f, m: r == 1 and f <= 2),
)

#: Labels added after the primary segment when they hold.
SEGMENT_FLAGS: tuple[tuple[str, str, Callable[[int, int, int], bool]], ...] = (
    ("big_spender", "M = 5", lambda r, f, m: m == 5),
    ("frequent_buyer", "F = 5", lambda r, f, m: f == 5),
)


def segments_for(r: int, f: int, m: int) -> list[str]:
    """The primary segment, then any flags."""
    for name, _, rule in SEGMENT_RULES:
        if rule(r, f, m):
            primary = name
            break
    else:  # pragma: no cover - the table is exhaustive, and a test says so
        raise ValueError(f"no segment for RFM {r}{f}{m}")
    return [primary] + [name for name, _, rule in SEGMENT_FLAGS if rule(r, f, m)]


def rfm_cells() -> list[dict]:
    """Every RFM cell with its grade and segments, plus cell 0 for an unscored customer."""
    cells = [{"cell": 0, "rfm": None, "grade": None, "segments": []}]
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                cells.append({"cell": r * 100 + f * 10 + m, "rfm": r * 100 + f * 10 + m,
                              "grade": grade_for(r, f, m), "segments": segments_for(r, f, m)})
    return cells


def check_status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return status


_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc) - EPOCH
