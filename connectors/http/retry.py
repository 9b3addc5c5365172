"""How patiently to retry (:class:`RetryPolicy`, ``Retry-After``) and until when
(:class:`Deadline`, :func:`deadline_scope`).

A deadline is the caller's: the instant by which a send must be over, retries and waits for the
rate budget included (the relay sets it inside its lease). Every :class:`~.client.HttpClient`
request honours the earliest of its own ``deadline=`` argument, the innermost
:func:`deadline_scope` of the running context, and the client's ``deadline_seconds`` default.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

# ------------------------------------------------------------------------------ retry policy


@dataclass
class RetryPolicy:
    """How often and how patiently to retry a :class:`~.errors.RetriableError`.

    ``delay(attempt, retry_after)`` after the ``attempt``-th failed attempt (1-based): a uniform
    draw from ``[0, min(cap, base * 2**(attempt-1))]`` (full jitter), never less than
    ``retry_after``. ``max_attempts`` counts every attempt; ``max_elapsed`` bounds the seconds
    from the first attempt to the start of the last.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_elapsed: float = 120.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def backoff_ceiling(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempt - 1)))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        jittered = self.rng.uniform(0.0, self.backoff_ceiling(attempt))
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    ``None`` for a missing or unreadable value; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


# --------------------------------------------------------------------------------- deadlines


@dataclass(frozen=True)
class Deadline:
    """An instant (``at``, seconds on ``clock``; epoch seconds by default) by which a send must
    be over."""

    at: float
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.time) -> "Deadline":
        """The deadline ``seconds`` from now on ``clock``."""
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self.clock()

    def expired(self) -> bool:
        return self.remaining() <= 0


_SCOPE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "connectors_http_deadline", default=None)


def as_deadline(value: Deadline | float | None,
                clock: Callable[[], float] = time.time) -> Deadline | None:
    """A :class:`Deadline` from a deadline or an instant on ``clock`` (None stays None)."""
    if value is None or isinstance(value, Deadline):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("a deadline is a Deadline or seconds on the clock (e.g. epoch seconds)")
    return Deadline(float(value), clock)


def earliest(*deadlines: Deadline | None) -> Deadline | None:
    """The deadline with the least time left, or None when none is given."""
    given = [d for d in deadlines if d is not None]
    return min(given, key=Deadline.remaining) if given else None


def current_deadline() -> Deadline | None:
    """The deadline of the innermost :func:`deadline_scope` of the running context, if any."""
    return _SCOPE.get()


@contextlib.contextmanager
def deadline_scope(deadline: Deadline | float | None,
                   clock: Callable[[], float] = time.time) -> Iterator[Deadline | None]:
    """Within the ``with`` block every request of every client in this context (thread) ends
    by ``deadline`` (a :class:`Deadline`, or an instant on ``clock``). Scopes nest; an inner
    one can only bring the deadline nearer. ``None`` leaves the enclosing deadline as it is.

    The relay keeps a whole send inside its lease with
    ``with deadline_scope(lease_expiry - margin): operation.send(client, records, context)``.
    """
    scoped = earliest(_SCOPE.get(), as_deadline(deadline, clock))
    token = _SCOPE.set(scoped)
    try:
        yield scoped
    finally:
        _SCOPE.reset(token)
