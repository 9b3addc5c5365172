"""Per-target throttling of hook posts: at most ``rate`` posts a second to one target host (a
moving window), and a hold on a target that asked to wait (a 429's ``Retry-After``).

In this process's memory, with an injectable clock (epoch seconds). Several sender processes
each keep their own window.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable


class TargetThrottle:
    def __init__(self, rate_per_second: float, clock: Callable[[], float]) -> None:
        self.capacity = max(1, int(round(rate_per_second)))
        self.window = self.capacity / rate_per_second  # seconds that hold ``capacity`` posts
        self.clock = clock
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def _recent(self, target: str, now: float) -> deque[float]:
        sent = self._sent.setdefault(target, deque())
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        return sent

    def room(self, target: str) -> int:
        """How many posts ``target`` may take now."""
        now = self.clock()
        with self._lock:
            if self._held.get(target, 0.0) > now:
                return 0
            self._held.pop(target, None)
            return max(0, self.capacity - len(self._recent(target, now)))

    def reserve(self, target: str, wanted: int) -> int:
        """Take up to ``wanted`` of ``target``'s room now (counted as sent now); how many."""
        now = self.clock()
        with self._lock:
            if self._held.get(target, 0.0) > now:
                return 0
            self._held.pop(target, None)
            sent = self._recent(target, now)
            granted = max(0, min(wanted, self.capacity - len(sent)))
            sent.extend([now] * granted)
            return granted

    def hold(self, target: str, until: float) -> None:
        """Send nothing to ``target`` before ``until`` (epoch seconds)."""
        with self._lock:
            self._held[target] = max(self._held.get(target, 0.0), until)

    def ready_in(self) -> float | None:
        """Seconds until some full or held target has room again, if any is waiting."""
        now = self.clock()
        with self._lock:
            moments = [t for t in self._held.values() if t > now]
            moments += [sent[0] + self.window for sent in self._sent.values()
                        if len(sent) >= self.capacity]
        return max(0.0, min(moments) - now) if moments else None
