"""The slot grid: stable per schedule, exact, and the next slot strictly after a moment."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from gateway.schedule import slots


def test_a_spread_offset_is_stable_within_the_interval_and_differs_between_tenants():
    offsets = [slots.offset_seconds(f"ten_{i}", "rekindle-poll", 900) for i in range(50)]
    assert offsets == [slots.offset_seconds(f"ten_{i}", "rekindle-poll", 900)
                       for i in range(50)]
    assert all(0 <= o < 900 and abs(o * 1000 - round(o * 1000)) < 1e-6
               for o in offsets)  # whole milliseconds
    assert len(set(offsets)) > 25  # spread, not all at :00
    assert slots.offset_seconds("ten_1", "a", 900) != slots.offset_seconds("ten_1", "b", 900) \
        or slots.offset_seconds("ten_2", "a", 900) != slots.offset_seconds("ten_2", "b", 900)


def test_an_anchored_daily_grid_falls_at_its_time_of_day():
    day = 86_400
    offset = slots.offset_seconds("ten_x", "rescore", day, 3 * 3600)
    noon = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
    three = datetime(2025, 6, 2, 3, 0, tzinfo=timezone.utc)
    assert slots.next_slot_after(noon, day, offset) == three
    assert slots.slot_at_or_after(noon, day, offset) == three
    assert slots.slot_at_or_after(three, day, offset) == three
    assert slots.next_slot_after(three, day, offset) == three + timedelta(days=1)
    # A shorter interval keeps the anchor on its grid: every 12 hours from 03:00 is 15:00.
    assert slots.next_slot_after(noon, day // 2, slots.offset_seconds(
        "ten_x", "rescore", day // 2, 3 * 3600)) == noon.replace(hour=15)


@pytest.mark.parametrize("interval", [1, 7, 60, 900, 86_400])
def test_the_next_slot_is_the_first_grid_point_strictly_after_the_moment(interval):
    rng = random.Random(interval)
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for _ in range(200):
        offset = float(rng.randrange(interval))
        moment = base + timedelta(microseconds=rng.randrange(10**13))
        following = slots.next_slot_after(moment, interval, offset)
        assert following > moment
        assert following - timedelta(seconds=interval) <= moment
        assert slots.on_grid(following, interval, offset)
        # A moment on the grid itself is not "after" it.
        assert slots.next_slot_after(following, interval, offset) == \
            following + timedelta(seconds=interval)
        at_or_after = slots.slot_at_or_after(moment, interval, offset)
        assert at_or_after >= moment and at_or_after - timedelta(seconds=interval) < moment
        assert slots.on_grid(at_or_after, interval, offset)


def test_an_interval_must_be_positive():
    with pytest.raises(ValueError):
        slots.offset_seconds("t", "r", 0)
