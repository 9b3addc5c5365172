"""Request counters and the served-request log a sandbox keeps."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any


class Stats:
    """Thread-safe counts of answered service requests by status, plus their arrival times.

    ``snapshot`` gives ``{"records": {...}, "requests": {"200": n, ...}}``. ``log`` holds the
    service-clock timestamp of every service request that reached the sandbox (answered or not,
    in arrival order), bounded to the last ``log_size``; ``GET /_sandbox/requests-log`` serves it.
    """

    def __init__(self, log_size: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._log: deque[float] = deque(maxlen=log_size)
        self._logged = 0

    def count_request(self, status: int) -> None:
        with self._lock:
            self._requests[str(status)] += 1

    def log_arrival(self, timestamp: float) -> None:
        with self._lock:
            self._log.append(timestamp)
            self._logged += 1

    def arrivals(self) -> tuple[list[float], int]:
        """The logged timestamps and how many older ones fell off the bounded log."""
        with self._lock:
            return list(self._log), self._logged - len(self._log)

    def snapshot(self, records: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            return {"records": dict(records), "requests": dict(self._requests)}

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._log.clear()
            self._logged = 0
