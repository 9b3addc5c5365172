"""Exact sliding-window rate limiting, as the sandboxes enforce it.

A request counts in a window of ``seconds`` when it was allowed less than ``seconds`` ago on the
service's clock (the window is ``(now - seconds, now]``). Every window of every limit must have
room for a request to be allowed; an allowed request is recorded in all of them, a refused one in
none (a refused request costs the client nothing but the round trip).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from connectors.base import Limit

from .clock import SandboxClock


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The limiter's answer for one request, described by its tightest window.

    ``reset_epoch`` is when that window next frees a slot (service clock, whole seconds, rounded
    up); ``retry_after`` is how many service seconds until a refused request would be allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int
    retry_after: int


class SlidingWindow:
    """An exact sliding-window counter: the timestamps of the last ``limit`` allowed hits."""

    __slots__ = ("limit", "seconds", "_hits")

    def __init__(self, limit: int, seconds: float) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("a window needs a positive limit and length")
        self.limit = limit
        self.seconds = float(seconds)
        self._hits: deque[float] = deque()

    def _evict(self, now: float) -> None:
        horizon = now - self.seconds
        hits = self._hits
        while hits and hits[0] <= horizon:
            hits.popleft()

    def count(self, now: float) -> int:
        """Hits inside ``(now - seconds, now]``."""
        self._evict(now)
        return len(self._hits)

    def has_room(self, now: float) -> bool:
        return self.count(now) < self.limit

    def record(self, now: float) -> None:
        self._hits.append(now)

    def free_at(self, now: float) -> float:
        """When the next slot frees (``now`` if one is free already)."""
        if self.count(now) < self.limit:
            return now
        return self._hits[-self.limit] + self.seconds

    def reset_at(self, now: float) -> float:
        """When the oldest hit in the window leaves it (``now + seconds`` when empty)."""
        self._evict(now)
        return self._hits[0] + self.seconds if self._hits else now + self.seconds


class RateLimiter:
    """Per-key sliding windows for a service's documented limits, on a :class:`SandboxClock`."""

    def __init__(self, limits: Sequence[Limit], clock: SandboxClock) -> None:
        self.limits = tuple(limits)
        self.clock = clock
        self._windows: dict[str, list[SlidingWindow]] = {}
        self._lock = threading.Lock()

    def _windows_for(self, key: str) -> list[SlidingWindow]:
        windows = self._windows.get(key)
        if windows is None:
            windows = [SlidingWindow(limit.requests, limit.seconds) for limit in self.limits]
            self._windows[key] = windows
        return windows

    def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` if every window has room; say what happened."""
        with self._lock:
            now = self.clock.now()
            windows = self._windows_for(key)
            if not windows:
                return RateDecision(True, 0, 0, math.ceil(now), 0)
            allowed = all(window.has_room(now) for window in windows)
            if allowed:
                for window in windows:
                    window.record(now)
            return self._describe(allowed, windows, now)

    def peek(self, key: str) -> RateDecision:
        """The state of ``key``'s windows without counting a request."""
        with self._lock:
            now = self.clock.now()
            windows = self._windows_for(key)
            if not windows:
                return RateDecision(True, 0, 0, math.ceil(now), 0)
            return self._describe(all(w.has_room(now) for w in windows), windows, now)

    @staticmethod
    def _describe(allowed: bool, windows: list[SlidingWindow], now: float) -> RateDecision:
        # The tightest window: the fewest requests left, the longest wait on a tie.
        tightest = min(
            windows, key=lambda w: (w.limit - w.count(now), -(w.free_at(now) - now))
        )
        remaining = max(0, tightest.limit - tightest.count(now))
        wait = max(w.free_at(now) for w in windows) - now
        retry_after = 0 if allowed else max(1, math.ceil(wait))
        return RateDecision(
            allowed=allowed,
            limit=tightest.limit,
            remaining=remaining,
            reset_epoch=math.ceil(tightest.reset_at(now)),
            retry_after=retry_after,
        )

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
