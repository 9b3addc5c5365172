"""Proactive rate limiting per credential: :class:`RateBudget`.

In one process (``memory://``) the windows are exact moving windows kept here, on the budget's
injectable ``clock`` (epoch seconds, ``time.time`` by default), so a test can drive a budget
with a fake clock and a fake ``sleep`` and never wait. Shared between processes (a Redis URI),
the windows are the ``limits`` library's moving windows in Redis, which keep wall time: there
the clock must be wall time too (the default).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from typing import Callable, Sequence

from limits import RateLimitItemPerSecond
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from connectors.base import Limit


def credential_hash(credential: str) -> str:
    """A short, stable, one-way name for a credential (for keys and pools, never the secret)."""
    return hashlib.sha256(credential.encode()).hexdigest()[:20]


# ------------------------------------------------------------------------- in-process windows


Taken = list[tuple[list[float], float]]  # (an admission's entry, its window's length)


class _MemoryWindows:
    """Moving windows of one process. Per window key, one entry per admission: a one-item list
    holding the instant the admission leaves the window. A window of ``length`` seconds admits
    ``amount`` while fewer than ``amount`` entries have not left yet.

    An admission *held* by a request in flight leaves ``length`` after the request ends
    (:meth:`release`), not after it began: the service counts a request when it arrives, which
    is somewhere between the two, so however late it arrives, the service has forgotten it
    before the client does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[list[float]]] = {}
        self._pauses: dict[str, float] = {}

    def take(self, windows: Sequence[tuple[str, int, float]], now: float, *, take: bool = True,
             hold: float | None = None) -> tuple[float, Taken]:
        """A slot in every window at ``now`` (all or none): ``(0.0, taken)``, else ``(seconds
        until every window has room, [])``. ``take=False`` only looks. ``hold`` (seconds the
        request may take at most) keeps the slot until :meth:`release` instead."""
        with self._lock:
            wait = 0.0
            for key, amount, _length in windows:
                entries = [e for e in self._entries.get(key, ()) if e[0] > now]
                self._entries[key] = entries
                if len(entries) >= amount:
                    # the admission whose leaving makes room for one more
                    leaving = sorted(e[0] for e in entries)[len(entries) - amount]
                    wait = max(wait, leaving - now)
            if wait > 0 or not take:
                return wait, []
            taken: Taken = []
            for key, _amount, length in windows:
                entry = [now + length + (hold or 0.0)]
                self._entries[key].append(entry)
                taken.append((entry, length))
            return 0.0, taken

    def release(self, taken: Taken, now: float) -> None:
        """The held admissions' request ended at ``now``: each leaves a window length later."""
        with self._lock:
            for entry, length in taken:
                entry[0] = now + length

    def pause(self, key: str, until: float) -> None:
        with self._lock:
            self._pauses[key] = max(self._pauses.get(key, 0.0), until)

    def paused_until(self, key: str) -> float:
        with self._lock:
            return self._pauses.get(key, 0.0)


class Held:
    """A slot taken by :meth:`RateBudget.hold`; :meth:`release` it when the request has ended
    (with its answer). Releasing twice, or a slot of a shared (Redis) budget, does nothing."""

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self._release = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


_MEMORY: dict[str, _MemoryWindows] = {}
_STORAGES: dict[str, Storage] = {}
_SHARED_LOCK = threading.Lock()


def _memory(uri: str) -> _MemoryWindows:
    """One table of windows per memory URI per process, shared by every budget on it."""
    with _SHARED_LOCK:
        return _MEMORY.setdefault(uri, _MemoryWindows())


def _storage(uri: str) -> Storage:
    """One ``limits`` storage per URI per process, so every budget of a process shares it."""
    with _SHARED_LOCK:
        storage = _STORAGES.get(uri)
        if storage is None:
            storage = storage_from_string(uri)
            _STORAGES[uri] = storage
        return storage


# ----------------------------------------------------------------------------- shared windows


class _ScaledWindow(RateLimitItemPerSecond):
    """A ``limits`` moving-window item whose window is ``window`` seconds long."""

    __slots__ = ("window",)

    def __init__(self, amount: int, window: float, namespace: str = "GATEWAY") -> None:
        super().__init__(amount, max(1, math.ceil(window)), namespace)
        self.window = window

    def get_expiry(self) -> float:  # type: ignore[override]
        return self.window


_RAISE_PAUSE = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return redis.call('get', KEYS[1])
"""


# ----------------------------------------------------------------------------------- budget


class RateBudget:
    """Proactive limiting for one credential: ``acquire()`` before every request.

    Each :class:`Limit` becomes a moving window of ``seconds / time_scale + margin`` seconds
    (``storage_uri``: None -> ``GATEWAY_REDIS_URL`` if set, else ``memory://``); every budget
    on the same storage and credential shares the windows, so two processes on one Redis stay
    within the limit together (budgets sharing memory windows must share a clock). ``margin``
    (seconds; default the smaller of 50 ms and a quarter of the window) widens every window to
    absorb the spread of network delay between us and the service's counter. Redis keeps whole
    seconds only: there ``seconds / time_scale`` must be whole (a ``ValueError`` says so
    otherwise) and a margin is rounded up to a whole second.

    ``clock`` (epoch seconds) and ``sleep`` are injectable; in memory they drive everything.
    The keys start with ``key_prefix`` (default ``GATEWAY_RATE_KEY_PREFIX`` or ``gateway``) and
    hold :func:`credential_hash`, never the credential. After a 429, :meth:`pause_until` holds
    back every budget of that credential on the storage.
    """

    def __init__(self, service: str, credential: str, limits: Sequence[Limit],
                 storage_uri: str | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, *, time_scale: float = 1.0,
                 margin: float | None = None, key_prefix: str | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        key_prefix = key_prefix or os.environ.get("GATEWAY_RATE_KEY_PREFIX") or "gateway"
        self.service = service
        self.limits = tuple(limits)
        self.time_scale = float(time_scale)
        self.storage_uri = storage_uri or os.environ.get("GATEWAY_REDIS_URL") or "memory://"
        self.clock = clock
        self.sleep = sleep
        self._in_memory = self.storage_uri.split("://", 1)[0].lower() == "memory"
        if self._in_memory:
            self._memory = _memory(self.storage_uri)
        else:
            self._storage = _storage(self.storage_uri)
            self._limiter = MovingWindowRateLimiter(self._storage)
        self._identity = (key_prefix, service, credential_hash(credential))
        self._windows = [self._window(limit, margin) for limit in self.limits]
        self._items = [] if self._in_memory else [
            (_ScaledWindow(amount, length), key) for key, amount, length in self._windows]
        self._pause_key = ":".join(("pause", *self._identity))

    def _window(self, limit: Limit, margin: float | None) -> tuple[str, int, float]:
        """``(key, amount, length)`` of the window for ``limit``."""
        seconds = limit.seconds / self.time_scale
        if margin is None:
            margin = min(0.05, seconds / 4)
        if not self._in_memory:
            if abs(seconds - round(seconds)) > 1e-9 or round(seconds) < 1:
                raise ValueError(
                    f"{self.service}: a {limit.seconds} s window at time_scale "
                    f"{self.time_scale:g} is {seconds:g} s, but {self.storage_uri.split(':')[0]}"
                    " storage keeps whole seconds only; pick a time_scale that divides "
                    f"{limit.seconds} into whole seconds"
                )
            length: float = int(round(seconds)) + math.ceil(margin)
        else:
            length = seconds + margin
        key = ":".join((*self._identity, f"{limit.requests}per{limit.seconds}s",
                        f"x{self.time_scale:g}", f"w{length:g}"))
        return key, limit.requests, length

    # ---- pauses after a 429

    def pause_until(self, epoch_seconds: float) -> None:
        """Send nothing on this credential before ``epoch_seconds`` (on the clock, shared)."""
        if self._in_memory:
            self._memory.pause(self._pause_key, epoch_seconds)
            return
        ttl_ms = max(1, math.ceil((epoch_seconds - self.clock()) * 1000))
        connection = self._storage.get_connection()  # type: ignore[attr-defined]
        key = f"{self._storage.key_prefix}:{self._pause_key}"  # type: ignore[attr-defined]
        connection.eval(_RAISE_PAUSE, 1, key, repr(float(epoch_seconds)), ttl_ms)

    def paused_until(self) -> float:
        """The end of the current pause (0 when there is none)."""
        if self._in_memory:
            return self._memory.paused_until(self._pause_key)
        connection = self._storage.get_connection()  # type: ignore[attr-defined]
        value = connection.get(f"{self._storage.key_prefix}:{self._pause_key}")  # type: ignore
        return float(value) if value else 0.0

    # ---- the windows

    def try_acquire(self) -> float:
        """Take a slot in every window if all have room (0.0), else seconds to wait first."""
        wait, _ = self._try(take=True, hold=None)
        return wait

    def wait(self) -> float:
        """Seconds until :meth:`try_acquire` would take a slot (0.0: now), taking nothing."""
        wait, _ = self._try(take=False, hold=None)
        return wait

    def _try(self, *, take: bool, hold: float | None) -> tuple[float, Taken]:
        now = self.clock()
        pause = self.paused_until() - now
        if pause > 0:
            return pause, []
        if self._in_memory:
            return self._memory.take(self._windows, now, take=take, hold=hold)
        return self._try_shared(take=take), []

    def _try_shared(self, take: bool = True) -> float:
        wait = 0.0
        for item, key in self._items:
            if not self._limiter.test(item, key):
                stats = self._limiter.get_window_stats(item, key)
                wait = max(wait, stats.reset_time - time.time(), 0.001)  # limits' wall clock
        if wait or not take:
            return wait
        for item, key in self._items:
            if not self._limiter.hit(item, key):
                return 0.001  # another client took the slot meanwhile
        return 0.0

    def _wait_and_take(self, within: float | None, hold: float | None) -> Taken | None:
        started = self.clock() if within is not None else 0.0
        while True:
            wait, taken = self._try(take=True, hold=hold)
            if wait <= 0:
                return taken
            if within is not None and self.clock() - started + wait >= within:
                return None
            self.sleep(wait)

    def acquire(self, within: float | None = None) -> bool:
        """Wait until every window has room and no pause is on, then take the slot: True. The
        slot leaves each window a window's length later.

        With ``within`` (seconds), give up at once, taking nothing, when the wait would not be
        over ``within`` seconds from the call: False (the caller's deadline would pass first).
        """
        return self._wait_and_take(within, None) is not None

    def hold(self, within: float | None = None, *, longest: float = 60.0) -> Held | None:
        """As :meth:`acquire`, but the slot stays in every window until ``release()``d (at the
        latest ``longest`` seconds) and a window's length after that: a request counts until
        its answer is in, whenever the service saw it arrive. None when ``within`` is too short.

        In Redis the slot leaves a window's length after it was taken, as with :meth:`acquire`
        (the ``margin`` absorbs the delay there).
        """
        taken = self._wait_and_take(within, longest)
        if taken is None:
            return None
        if not taken:
            return Held()
        return Held(lambda: self._memory.release(taken, self.clock()))

    def __repr__(self) -> str:
        limits = ", ".join(str(limit) for limit in self.limits)
        return (f"RateBudget({self.service}, [{limits}], time_scale={self.time_scale:g}, "
                f"storage={self.storage_uri.split('://')[0]})")
