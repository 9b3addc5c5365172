"""What one gateway process holds: its settings, database engine, credential vault, rate
limiters and caches. Kept on the Flask app (``app.extensions["gateway"]``) and reachable with
:func:`runtime` inside a request, or built directly by commands that run without the app."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Protocol

from flask import current_app
from limits import RateLimitItem
from limits import storage as limits_storage
from limits.strategies import SlidingWindowCounterRateLimiter
from limits.util import WindowStats
from sqlalchemy import Engine

from gateway import tenant_settings
from gateway.crypto import Vault, secret_key
from gateway.settings import Settings
from gateway.store import db
from gateway.store import keys as key_store
from gateway.store import tenants as tenant_store

log = logging.getLogger(__name__)

SETTINGS_CACHE_SECONDS = 10.0
#: How long a process trusts a key it verified (and its tenant) without asking the database:
#: a key revoked by another process (``python app.py keys revoke``) stops working here within
#: this many seconds; one revoked by this process stops at once.
KEY_CACHE_SECONDS = 5.0
KEY_CACHE_MAX_KEYS = 10_000
KEY_CACHE_MAX_REFUSED = 1_000
#: Failed authentications allowed per client address and minute (see gateway.api.auth).
FAILED_AUTH_PER_MINUTE = 20


class RateLimiter(Protocol):
    """What the API needs of a limiter (the ``limits`` strategies' interface)."""

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool: ...

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool: ...

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats: ...

    def clear(self, item: RateLimitItem, *identifiers: str) -> None: ...


class FallbackLimiter:
    """A shared limiter (Redis) that falls back to this process's own while the shared store
    cannot be reached, so a Redis outage degrades the API's limits to per-process ones instead
    of answering 500s. The outage is logged, at most once a minute, without the store's URL."""

    LOG_EVERY_SECONDS = 60.0

    def __init__(self, primary: RateLimiter, fallback: RateLimiter) -> None:
        self.primary, self.fallback = primary, fallback
        self._last_logged = -math.inf

    def _call(self, name: str, *args: object, **kwargs: object):  # noqa: ANN202
        try:
            return getattr(self.primary, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the store: fall back
            now = time.monotonic()
            if now - self._last_logged >= self.LOG_EVERY_SECONDS:
                self._last_logged = now
                log.warning("the shared rate-limit store is unreachable (%s); limiting in "
                            "this process until it answers", type(exc).__name__)
            return getattr(self.fallback, name)(*args, **kwargs)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        return self._call("hit", item, *identifiers, cost=cost)

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        return self._call("test", item, *identifiers, cost=cost)

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        return self._call("get_window_stats", item, *identifiers)

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        self._call("clear", item, *identifiers)
        self.fallback.clear(item, *identifiers)


class LocalSlidingWindowLimiter:
    """A sliding window counter in this process's memory: per limited thing, the count of the
    current fixed window and of the one before, the latter weighted by how much of it still
    overlaps the last ``window`` seconds. The same algorithm, and the same window stats, as
    ``limits``' :class:`SlidingWindowCounterRateLimiter` (used on Redis), in constant memory
    and time per key whatever the limit, and without the timer thread ``limits``' memory
    storage starts for expiry (which, on a busy machine, cost more than the rest of a request).
    Idle keys are swept every :attr:`SWEEP_EVERY` new keys. ``clock`` (epoch seconds) is
    injectable for tests."""

    SWEEP_EVERY = 10_000

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # key -> [window length, index of the current window, its count, the previous count]
        self._state: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._created = 0

    def __len__(self) -> int:
        return len(self._state)

    def _counts(self, key: str, window: int, now: float, *,
                create: bool = False) -> tuple[list[int], float]:
        """The key's state rolled forward to ``now`` (stored only with ``create``), and the
        previous window's count weighted by its overlap with the last ``window`` seconds."""
        index = int(now // window)
        state = self._state.get(key)
        if state is None:
            state = [window, index, 0, 0]
            if create:
                self._state[key] = state
                self._created += 1
                if self._created % self.SWEEP_EVERY == 0:
                    self._sweep(now)
        elif state[1] != index:
            state[3] = state[2] if state[1] == index - 1 else 0
            state[1], state[2] = index, 0
        left_in_window = (index + 1) * window - now
        return state, state[3] * left_in_window / window

    def _sweep(self, now: float) -> None:
        """Drop keys whose counts no longer weigh anything (both their windows are over)."""
        self._state = {key: st for key, st in self._state.items()
                       if st[1] >= int(now // st[0]) - 1}

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        now = self.clock()
        with self._lock:
            state, previous = self._counts(item.key_for(*identifiers), item.get_expiry(), now,
                                           create=True)
            if math.floor(previous + state[2]) + cost > item.amount:
                return False
            state[2] += cost
            return True

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        now = self.clock()
        with self._lock:
            state, previous = self._counts(item.key_for(*identifiers), item.get_expiry(), now)
            return math.floor(previous + state[2]) + cost <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """(When the count next falls by about one request, requests remaining.)"""
        now, window = self.clock(), item.get_expiry()
        with self._lock:
            state, previous = self._counts(item.key_for(*identifiers), window, now)
            current, previous_count = state[2], state[3]
        remaining = max(0, item.amount - math.floor(previous + current))
        left_in_window = (int(now // window) + 1) * window - now
        waits = []
        if previous_count:  # the previous window's weight falls by one request this often
            waits.append(left_in_window % (window / previous_count))
        if current:  # the current count starts to fall when its window ends
            waits.append(left_in_window)
        return WindowStats(now + min(waits, default=0.0), remaining)

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        with self._lock:
            self._state.pop(item.key_for(*identifiers), None)


@dataclass(frozen=True)
class VerifiedKey:
    """A live key, as verified against the database, with its tenant."""

    info: key_store.KeyInfo
    tenant: tenant_store.Tenant


class KeyCache:
    """Keys this process verified recently, keyed by the SHA-256 of the presented key (never
    the key itself), each trusted for ``ttl`` seconds from the moment its database read began.

    Refused keys (well-formed, but unknown, wrong or revoked) are remembered for the same time,
    in a smaller table of their own, so that a client repeating a dead key does not cost a
    database read each time. That cannot make a new key fail: a key's hash is only ever
    looked up after the key was presented, and a new key is random, so no refusal can be on
    record for it; and a refused key never becomes valid again (there is no un-revoke).

    :meth:`forget_key` (called by :func:`gateway.store.keys.revoke_key` in this process) drops
    a key at once and refuses to cache it again for ``ttl`` seconds, so that a request whose
    read raced the revocation cannot put it back. Both tables are bounded; the oldest entry
    goes first. ``clock`` is injectable for tests.
    """

    def __init__(self, ttl: float = KEY_CACHE_SECONDS, *, max_keys: int = KEY_CACHE_MAX_KEYS,
                 max_refused: int = KEY_CACHE_MAX_REFUSED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._max = {True: max_keys, False: max_refused}
        self._tables: dict[bool, OrderedDict[str, tuple[float, VerifiedKey | None]]] = {
            True: OrderedDict(), False: OrderedDict()}
        self._forgotten: dict[str, float] = {}  # key id -> until when it is not cached
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, VerifiedKey | None]:
        """``(True, key)`` or ``(True, None)`` (a remembered refusal), or ``(False, None)``
        when the database must be asked."""
        now = self.clock()
        with self._lock:
            for table in self._tables.values():
                hit = table.get(digest)
                if hit is not None:
                    if hit[0] > now:
                        return True, hit[1]
                    del table[digest]
        return False, None

    def put(self, digest: str, value: VerifiedKey | None, read_started: float) -> None:
        """Remember the answer of a database read that began at ``read_started`` (this
        cache's clock)."""
        expires = read_started + self.ttl
        with self._lock:
            if value is not None and self._forgotten.get(value.info.id, 0.0) > read_started:
                return  # revoked here after (or while) it was read
            table = self._tables[value is not None]
            table[digest] = (expires, value)
            table.move_to_end(digest)
            while len(table) > self._max[value is not None]:
                table.popitem(last=False)

    def forget_key(self, key_id: str) -> None:
        now = self.clock()
        with self._lock:
            keys = self._tables[True]
            for digest in [d for d, (_, v) in keys.items() if v and v.info.id == key_id]:
                del keys[digest]
            self._forgotten = {k: until for k, until in self._forgotten.items() if until > now}
            self._forgotten[key_id] = now + self.ttl


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    _settings_cache: dict[str, tuple[float, tenant_settings.TenantSettings]] = field(
        default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    failed_auth_per_minute: int = FAILED_AUTH_PER_MINUTE

    @classmethod
    def open(cls, settings: Settings | None = None, *, migrate: bool | None = None) -> "Runtime":
        settings = settings or Settings.from_env()
        runtime = cls(settings=settings, engine=db.open_engine(settings, migrate=migrate))
        if settings.embedded:
            _ = runtime.vault  # create the key file now, and say so once, not on first use
        return runtime

    @cached_property
    def vault(self) -> Vault:
        return Vault(secret_key(self.settings))

    @cached_property
    def api_limiter(self) -> RateLimiter:
        """The limiter of the gateway's own API (per key, and failed authentications per
        address): a sliding window counter, two counters per limited thing whatever the limit
        (a moving window keeps an entry per request). On Redis when ``GATEWAY_REDIS_URL`` is
        set, so every process shares one budget; else in this process's memory."""
        if self.settings.redis_url:
            storage = limits_storage.storage_from_string(self.settings.redis_url)
            return FallbackLimiter(SlidingWindowCounterRateLimiter(storage),
                                   LocalSlidingWindowLimiter())
        return LocalSlidingWindowLimiter()

    @cached_property
    def key_cache(self) -> KeyCache:
        cache = KeyCache()
        key_store.on_revoke(cache)
        return cache

    def cached_settings(self, tenant_id: str) -> tenant_settings.TenantSettings:
        """A tenant's settings, re-read at most every few seconds (for hot paths)."""
        now = time.monotonic()
        with self._lock:
            hit = self._settings_cache.get(tenant_id)
            if hit and now - hit[0] < SETTINGS_CACHE_SECONDS:
                return hit[1]
        with self.engine.connect() as conn:
            value = tenant_store.get_settings(conn, tenant_id)
        with self._lock:
            self._settings_cache[tenant_id] = (now, value)
        return value

    def forget_settings(self, tenant_id: str) -> None:
        with self._lock:
            self._settings_cache.pop(tenant_id, None)

    def close(self) -> None:
        self.engine.dispose()


def runtime() -> Runtime:
    return current_app.extensions["gateway"]
