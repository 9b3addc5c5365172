"""The service's clock, which a sandbox runs its rate limits on.

A sandbox can run its clock faster than wall time (``rate_scale``), so that two hours of a
service's limits pass in a minute of a test; a client built with the same ``time_scale`` divides
its windows and ``Retry-After`` waits by the same factor and so stays in step.
"""

from __future__ import annotations

import threading
import time


class SandboxClock:
    """Seconds on the service's clock: ``start`` plus elapsed wall time times ``rate_scale``.

    ``start`` defaults to the current epoch time, so at ``rate_scale=1`` the clock reads the real
    time. :meth:`advance` jumps forward (tests that want a window to pass without waiting).
    """

    def __init__(self, rate_scale: float = 1.0, start: float | None = None) -> None:
        if rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        self.rate_scale = float(rate_scale)
        self._start = time.time() if start is None else float(start)
        self._wall_start = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """The service's time in seconds (epoch-based)."""
        with self._lock:
            elapsed = time.monotonic() - self._wall_start
            return self._start + elapsed * self.rate_scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the clock forward by ``seconds`` of service time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds

    def wall_seconds(self, service_seconds: float) -> float:
        """How long ``service_seconds`` of this clock take in wall time."""
        return service_seconds / self.rate_scale

    def __repr__(self) -> str:
        return f"SandboxClock(rate_scale={self.rate_scale})"


class ManualClock(SandboxClock):
    """A service clock that moves only when :meth:`advance` moves it.

    For tests that count requests inside a window: on it, however slowly the machine runs them,
    every request of the test falls at the same instant unless the test says otherwise.
    """

    def __init__(self, start: float | None = None) -> None:
        super().__init__(1.0, start)

    def now(self) -> float:
        with self._lock:
            return self._start + self._offset
