"""The slot grid of a schedule: the times it is meant to run at.

A schedule of interval ``I`` runs at ``EPOCH + offset + k * I`` (whole ``k``). The grid is a
function of the schedule alone (tenant, route, interval, the route's anchor), never of when it
last ran, so a late run, a retry or a process restart never shifts it, and every process agrees
on it without storing anything:

- a route with an **anchor** (seconds after midnight UTC, e.g. the re-score's 03:00) has its
  slots on that time of day, every interval after it;
- a route without one is **spread**: its offset is a fraction of the interval (in whole
  milliseconds) taken from a hash of (tenant, route), so a thousand tenants polling every 15
  minutes do not all poll at :00, and several processes ticking at different moments share
  the work of schedules with short intervals.

After a run, the next slot is the first grid point strictly after the time the run ended, so a
schedule that missed several slots (every worker was down) runs once, not once per missed slot.
All arithmetic is in whole microseconds, so it is exact.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_US_PER_S = 1_000_000


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // _US


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def offset_seconds(tenant_id: str, route: str, interval_seconds: int,
                   anchor_seconds: float | None = None) -> float:
    """Where the schedule's grid starts within an interval, in seconds (``0 <= offset <
    interval``): the route's anchor, or a stable spread from a hash of (tenant, route)."""
    if interval_seconds <= 0:
        raise ValueError("an interval must be positive")
    if anchor_seconds is not None:
        return float(anchor_seconds) % interval_seconds
    digest = hashlib.sha256(f"{tenant_id}\0{route}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return int(fraction * interval_seconds * 1000) / 1000  # whole milliseconds


def next_slot_after(moment: datetime, interval_seconds: int, offset: float) -> datetime:
    """The first grid point strictly after ``moment``."""
    step, start = interval_seconds * _US_PER_S, round(offset * _US_PER_S)
    k = (_micros(moment) - start) // step + 1
    return _moment(start + k * step)


def slot_at_or_after(moment: datetime, interval_seconds: int, offset: float) -> datetime:
    """The first grid point at or after ``moment``."""
    step, start = interval_seconds * _US_PER_S, round(offset * _US_PER_S)
    k = -((start - _micros(moment)) // step)  # ceil((moment - start) / step)
    return _moment(start + k * step)


def on_grid(moment: datetime, interval_seconds: int, offset: float) -> bool:
    """True when ``moment`` is one of the grid's points."""
    return (_micros(moment) - round(offset * _US_PER_S)) % (interval_seconds * _US_PER_S) == 0
