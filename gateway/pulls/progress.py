"""How far a sync is, and how long the services' limits say it still takes.

:class:`Estimator` turns what a sync knows (records read, an estimate of how many there are,
deliveries queued and sent per destination) into the seconds left, governed by the documented
rate limits our clients hold themselves to (``client_limits``, windows divided by the
process's ``rate_time_scale``): the source's pages still to read, and each destination's
requests still to send (Replenit takes 500 customers a request, Rekindle one, Rejoiner two
requests per customer: a look-up and a write); the services work side by side, so the time
left is the longest of them.

:class:`TerminalProgress` draws a one-line bar on a terminal; :class:`LineProgress` prints a
plain line now and then (a log, a pipe). Both write to ``stderr``, so ``stdout`` keeps the
summary and the JSON line.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, TextIO

from connectors import base as registry
from gateway.runtime import Runtime

#: Records of the source a request brings (RCI's page size is unspecified: the sandbox's).
RECORDS_PER_PAGE = 100
#: Requests one record costs where a connector sends more than one per record.
REQUESTS_PER_RECORD = {"rejoiner": 2.0}
PROFILE_OPERATION = "customers.upsert"


def requests_per_second(connector: str, time_scale: float = 1.0) -> float:
    """The sustained rate the connector's client holds itself to (requests a second)."""
    spec = registry.get(connector)
    limits = spec.client_limits or spec.limits
    if not limits:
        return math.inf
    return min(limit.requests / limit.seconds for limit in limits) * time_scale


def requests_for(connector: str, records: int) -> float:
    """Requests ``records`` profile writes cost at ``connector``."""
    if records <= 0:
        return 0.0
    per = REQUESTS_PER_RECORD.get(connector)
    if per is not None:
        return records * per
    operation = registry.get(connector).operations.get(PROFILE_OPERATION)
    size = operation.max_batch if operation is not None else 1
    return math.ceil(records / max(1, size))


@dataclass
class Estimator:
    """Seconds left for a sync of a source to ``destinations`` (see the module docstring)."""

    source: str = "rci"
    destinations: tuple[str, ...] = ()
    time_scale: float = 1.0

    @classmethod
    def for_tenant(cls, runtime: Runtime, tenant_id: str, source: str = "rci") -> "Estimator":
        from gateway.relay.routes_context import open_context

        with runtime.engine.connect() as conn:
            context = open_context(conn, tenant_id)
        destinations = tuple(c for c in ("replenit", "rekindle", "rejoiner")
                             if context.is_connected(c))
        return cls(source, destinations, runtime.settings.rate_time_scale or 1.0)

    def seconds_left(self, *, read: int, total_hint: int | None, queued: Mapping[str, int],
                     sent: Mapping[str, int]) -> float | None:
        """The time the limits allow for what is left; None when nothing is known yet."""
        remaining_reads = max(0, (total_hint or 0) - read)
        times = [math.ceil(remaining_reads / RECORDS_PER_PAGE)
                 / requests_per_second(self.source, self.time_scale)]
        for connector in self.destinations:
            done_share = queued.get(connector, 0) / read if read else 0.0
            expected = queued.get(connector, 0) + done_share * remaining_reads
            left = max(0.0, expected - sent.get(connector, 0))
            times.append(requests_for(connector, math.ceil(left))
                         / requests_per_second(connector, self.time_scale))
        if not read and not total_hint:
            return None
        return max(times)


def clock_text(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None or math.isinf(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


@dataclass
class _State:
    read: int = 0
    sent: int = 0
    total_hint: int | None = None
    eta: float | None = None
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return self.read / elapsed


class LineProgress:
    """Plain lines, at most one every ``every`` seconds: for logs and pipes."""

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.label, self.stream, self.every = label, stream or sys.stderr, every
        self.state = _State()
        self._last = -math.inf

    def update(self, *, read: int, sent: int, total_hint: int | None) -> None:
        self.state.read, self.state.sent, self.state.total_hint = read, sent, total_hint
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._write()

    def set_eta(self, seconds: float | None) -> None:
        self.state.eta = seconds

    def line(self) -> str:
        s = self.state
        total = f"/~{s.total_hint}" if s.total_hint else ""
        return (f"{self.label}: read {s.read}{total}, sent {s.sent}, {s.rate():.1f} records/s, "
                f"time left {clock_text(s.eta)}")

    def _write(self) -> None:
        print(self.line(), file=self.stream, flush=True)

    def finish(self) -> None:
        self._write()


class TerminalProgress(LineProgress):
    """A bar redrawn in place on a terminal (at most ten times a second)."""

    WIDTH = 24

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        super().__init__(label, stream, every=0.1)

    def _write(self) -> None:
        s = self.state
        share = min(1.0, s.read / s.total_hint) if s.total_hint else None
        filled = int(self.WIDTH * share) if share is not None else 0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        self._write()
        self.stream.write("\n")
        self.stream.flush()


def for_stream(label: str, stream: Any | None = None) -> LineProgress:
    """A bar on a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return TerminalProgress(label, stream)
    return LineProgress(label, stream)
