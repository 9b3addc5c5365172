"""The HTTP core the four connector clients share.

One error table (:func:`decide`) says what becomes of a failure: retry it, fail the connection,
or dead-letter the record. :class:`HttpClient` sends every attempt through a :class:`RateBudget`
(the ``limits`` library's moving window, per credential, in memory or in Redis), maps answers to
typed errors that never carry a secret, and retries what the table says to retry with
exponential backoff, full jitter and ``Retry-After`` honoured. Paginators are small state
machines that refuse to walk in circles.

``time_scale`` (on :class:`RateBudget` and :class:`HttpClient`, default 1) divides every rate
window and every ``Retry-After`` wait: a client with ``time_scale=X`` keeps in step with a
sandbox whose clock runs ``X`` times faster than wall time (``SandboxConfig(rate_scale=X)``).
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import math
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Iterable, Iterator, Protocol, Sequence
from urllib.parse import urljoin

import requests
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from requests.auth import AuthBase

from connectors import jsontext
from connectors.base import Limit

__all__ = [
    "UsesHttp",
    "AuthError",
    "BearerAuth",
    "ConnectorError",
    "Decision",
    "FatalError",
    "HeaderAuth",
    "HttpClient",
    "JsonApiCursorPaginator",
    "NotFound",
    "PageNumberPaginator",
    "PaginationLoop",
    "Paginator",
    "RateBudget",
    "RateLimited",
    "RetriableError",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "ValidationError",
    "credential_hash",
    "decide",
    "error_for_response",
    "paginate",
    "parse_retry_after",
]


# --------------------------------------------------------------------------------------- errors


class ConnectorError(Exception):
    """A failed call to a service. Carries what the service answered, never the credential.

    ``str()`` is safe to log: ``"<service>: <status> <message>"``.
    """

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None) -> None:
        self.service = service
        self.status = status
        self.message = message
        self.body = body
        super().__init__(self._summary())

    def _summary(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.service}:{status} {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._summary()!r})"


class RetriableError(ConnectorError):
    """Worth trying again; ``retry_after`` is the service's wish in seconds, if it said."""

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(service, message, status=status, body=body)


class RateLimited(RetriableError):
    """429 Too Many Requests."""


class ServerError(RetriableError):
    """5xx: the service failed this time."""


class TransportError(RetriableError):
    """No answer: timeout, connection refused or reset (also 408)."""


class FatalError(ConnectorError):
    """Trying again will not help."""


class AuthError(FatalError):
    """401/403: the credential (or the plan) does not let us in."""


class NotFound(FatalError):
    """404."""


class PaginationLoop(FatalError):
    """A listing pointed back at a page it had already served."""


class ValidationError(FatalError):
    """400/422 with the service's field errors.

    ``field_errors`` keeps the service's own keys (``"[0].Email"``); ``by_record`` regroups
    those that name a record index: ``{0: {"Email": [...]}}`` (``"[1]"`` alone gives ``""``).
    """

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None,
                 field_errors: dict[str, list[str]] | None = None) -> None:
        self.field_errors = field_errors or {}
        self.by_record = group_by_record(self.field_errors)
        super().__init__(service, message, status=status, body=body)


_RECORD_KEY = re.compile(r"^\[?(\d+)\]?(?:[.:/](.*))?$")


def group_by_record(field_errors: dict[str, list[str]]) -> dict[int, dict[str, list[str]]]:
    """``{"[0].Email": [m]}`` -> ``{0: {"Email": [m]}}``; keys without an index are left out."""
    grouped: dict[int, dict[str, list[str]]] = {}
    for key, messages in field_errors.items():
        match = _RECORD_KEY.match(key.strip())
        if match:
            index, name = int(match.group(1)), match.group(2) or ""
            grouped.setdefault(index, {}).setdefault(name, []).extend(messages)
    return grouped


class Decision(enum.Enum):
    RETRY = "retry"  # try again later: the service or the network failed this time
    FAIL = "fail"  # the connection is broken (credential, plan): nothing will get through
    DEAD_LETTER = "dead_letter"  # this record will never pass: park it for a human


def decide(error: BaseException) -> Decision:
    """The error table.

    ================================================  ===========
    429, 5xx, 408, timeouts, refused/reset connections  RETRY
    401, 403                                            FAIL
    400, 404, 422 and any other 4xx                     DEAD_LETTER
    a record that cannot be mapped (ValueError,
    TypeError, KeyError)                                DEAD_LETTER
    anything else (a pagination loop, a bug)            FAIL
    ================================================  ===========
    """
    if isinstance(error, RetriableError):
        return Decision.RETRY
    if isinstance(error, (requests.Timeout, requests.ConnectionError)):
        return Decision.RETRY
    if isinstance(error, AuthError):
        return Decision.FAIL
    if isinstance(error, (ValidationError, NotFound)):
        return Decision.DEAD_LETTER
    if isinstance(error, ConnectorError):
        if error.status is not None and 400 <= error.status < 500:
            return Decision.DEAD_LETTER
        return Decision.FAIL
    if isinstance(error, (ValueError, TypeError, KeyError)):
        return Decision.DEAD_LETTER
    return Decision.FAIL


def _body_of(response: requests.Response) -> Any | None:
    try:
        return response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] if text else None


def _message_of(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            value = first.get("detail") or first.get("title")
            if isinstance(value, str):
                return value[:300]
    if isinstance(body, str) and body:
        return body[:300]
    return fallback


def _field_errors_of(body: Any) -> dict[str, list[str]]:
    """Field errors from ``{"errors": {key: msgs}}`` or JSON:API ``{"errors": [...]}``."""
    if not isinstance(body, dict):
        return {}
    errors = body.get("errors")
    result: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, messages in errors.items():
            if isinstance(messages, (list, tuple)):
                result[str(key)] = [str(m) for m in messages]
            else:
                result[str(key)] = [str(messages)]
    elif isinstance(errors, list):
        for item in errors:
            if not isinstance(item, dict):
                continue
            source = item.get("source") or {}
            pointer = source.get("pointer") or source.get("parameter") or ""
            key = _pointer_key(pointer) if pointer else ""
            result.setdefault(key, []).append(str(item.get("detail") or item.get("title") or ""))
    return result


def _pointer_key(pointer: str) -> str:
    """JSON:API ``/data/0/attributes/email`` -> ``[0].email``; other pointers stay as they are."""
    match = re.match(r"^/data/(\d+)/(?:attributes/)?(.*)$", pointer)
    if match:
        return f"[{match.group(1)}].{match.group(2)}" if match.group(2) else f"[{match.group(1)}]"
    return pointer


def error_for_response(service: str, response: requests.Response, *,
                       now: datetime | None = None) -> ConnectorError:
    """The typed error for an unwanted answer (the table's input)."""
    status = response.status_code
    body = _body_of(response)
    message = _message_of(body, response.reason or f"HTTP {status}")
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status == 429:
        return RateLimited(service, message, status=status, body=body, retry_after=retry_after)
    if status >= 500:
        return ServerError(service, message, status=status, body=body, retry_after=retry_after)
    if status == 408:
        return TransportError(service, message, status=status, body=body,
                              retry_after=retry_after)
    if status in (401, 403):
        return AuthError(service, message, status=status, body=body)
    if status == 404:
        return NotFound(service, message, status=status, body=body)
    if status in (400, 422):
        return ValidationError(service, message, status=status, body=body,
                               field_errors=_field_errors_of(body))
    return FatalError(service, message, status=status, body=body)


def _scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings replaced by ``***``."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


# ------------------------------------------------------------------------------- retry policy


@dataclass
class RetryPolicy:
    """How often and how patiently to retry a :class:`RetriableError`.

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


# -------------------------------------------------------------------------------- rate budget


def credential_hash(credential: str) -> str:
    """A short, stable, one-way name for a credential (for keys and pools, never the secret)."""
    return hashlib.sha256(credential.encode()).hexdigest()[:20]


class _ScaledWindow(RateLimitItemPerSecond):
    """A moving-window item whose window is ``seconds`` long, possibly fractional (memory)."""

    __slots__ = ("window",)

    def __init__(self, amount: int, window: float, namespace: str = "GATEWAY") -> None:
        super().__init__(amount, max(1, math.ceil(window)), namespace)
        self.window = window

    def get_expiry(self) -> float:  # type: ignore[override]
        return self.window


_STORAGES: dict[str, Storage] = {}
_MEMORY_PAUSES: dict[str, float] = {}
_SHARED_LOCK = threading.Lock()

_RAISE_PAUSE = """
local current = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return redis.call('get', KEYS[1])
"""


def _storage(uri: str) -> Storage:
    """One storage per URI per process, so every budget of a process shares its windows."""
    with _SHARED_LOCK:
        storage = _STORAGES.get(uri)
        if storage is None:
            storage = storage_from_string(uri)
            _STORAGES[uri] = storage
        return storage


class RateBudget:
    """Proactive limiting for one credential: ``acquire()`` before every request.

    Each :class:`Limit` becomes a moving window of ``seconds / time_scale + margin`` wall
    seconds in ``limits``' storage (``storage_uri``: None -> ``GATEWAY_REDIS_URL`` if set, else
    ``memory://``); every budget on the same storage and credential shares the windows, so two
    processes on one Redis stay within the limit together. ``margin`` (wall seconds; default
    the smaller of 50 ms and a quarter of the window) widens every window to absorb the spread
    of network delay between us and the service's counter. Redis keeps whole seconds only:
    there ``seconds / time_scale`` must be whole (a ``ValueError`` says so otherwise) and a
    margin is rounded up to a whole second.

    The keys start with ``key_prefix`` (default ``GATEWAY_RATE_KEY_PREFIX`` or ``gateway``) and
    hold :func:`credential_hash`, never the credential. After a 429,
    :meth:`pause_until` holds back every budget of that credential on the storage.
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
        self._storage = _storage(self.storage_uri)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._in_memory = isinstance(self._storage, MemoryStorage)
        self._identity = (key_prefix, service, credential_hash(credential))
        self._windows = [self._window(limit, margin) for limit in self.limits]
        self._pause_key = ":".join(("pause", *self._identity))

    def _window(self, limit: Limit, margin: float | None
                ) -> tuple[_ScaledWindow, tuple[str, ...]]:
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
            window: float = int(round(seconds)) + math.ceil(margin)
        else:
            window = seconds + margin
        item = _ScaledWindow(limit.requests, window)
        return item, (*self._identity, f"{limit.requests}per{limit.seconds}s",
                      f"x{self.time_scale:g}", f"w{window:g}")

    # ---- pauses after a 429

    def pause_until(self, epoch_seconds: float) -> None:
        """Send nothing on this credential before ``epoch_seconds`` (wall clock, shared)."""
        if self._in_memory:
            with _SHARED_LOCK:
                key = f"{self.storage_uri}|{self._pause_key}"
                _MEMORY_PAUSES[key] = max(_MEMORY_PAUSES.get(key, 0.0), epoch_seconds)
            return
        ttl_ms = max(1, math.ceil((epoch_seconds - self.clock()) * 1000))
        connection = self._storage.get_connection()  # type: ignore[attr-defined]
        key = f"{self._storage.key_prefix}:{self._pause_key}"  # type: ignore[attr-defined]
        connection.eval(_RAISE_PAUSE, 1, key, repr(float(epoch_seconds)), ttl_ms)

    def paused_until(self) -> float:
        """The end of the current pause (0 when there is none)."""
        if self._in_memory:
            with _SHARED_LOCK:
                return _MEMORY_PAUSES.get(f"{self.storage_uri}|{self._pause_key}", 0.0)
        connection = self._storage.get_connection()  # type: ignore[attr-defined]
        value = connection.get(f"{self._storage.key_prefix}:{self._pause_key}")  # type: ignore
        return float(value) if value else 0.0

    # ---- the windows

    def try_acquire(self) -> float:
        """Take a slot in every window if all have room (0.0), else seconds to wait first."""
        pause = self.paused_until() - self.clock()
        if pause > 0:
            return pause
        wait = 0.0
        for item, ids in self._windows:
            if not self._limiter.test(item, *ids):
                stats = self._limiter.get_window_stats(item, *ids)
                wait = max(wait, stats.reset_time - time.time(), 0.001)
        if wait:
            return wait
        for item, ids in self._windows:
            if not self._limiter.hit(item, *ids):
                return 0.001  # another client took the slot meanwhile
        return 0.0

    def acquire(self) -> None:
        """Block until every window has room and no pause is on, then take the slot."""
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return
            self.sleep(wait)

    def __repr__(self) -> str:
        limits = ", ".join(str(limit) for limit in self.limits)
        return (f"RateBudget({self.service}, [{limits}], time_scale={self.time_scale:g}, "
                f"storage={self.storage_uri.split('://')[0]})")


# -------------------------------------------------------------------------------------- auth


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>``; the repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"

    __str__ = __repr__


class HeaderAuth(AuthBase):
    """Any one header carrying the secret, e.g. ``HeaderAuth("x-replenit-auth-key", key)``."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self._value
        return request

    def __repr__(self) -> str:
        return f"HeaderAuth({self.header!r}, ***)"

    __str__ = __repr__


# ----------------------------------------------------------------------------- session pool


class _SessionPool:
    """One ``requests.Session`` per (service, base URL, credential hash), shared by clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str, str], tuple[requests.Session, int]] = {}

    def take(self, key: tuple[str, str, str]) -> requests.Session:
        with self._lock:
            session, users = self._sessions.get(key, (None, 0))
            if session is None:
                session = requests.Session()
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            self._sessions[key] = (session, users + 1)
            return session

    def give_back(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            session, users = self._sessions.get(key, (None, 0))
            if session is None:
                return
            if users <= 1:
                del self._sessions[key]
                session.close()
            else:
                self._sessions[key] = (session, users - 1)


_POOL = _SessionPool()


# ------------------------------------------------------------------------------ http client


class HttpClient:
    """A service's HTTP client: pooled session, auth, rate budget, error table, retries.

    ``time_scale`` divides the budget's windows and every ``Retry-After`` wait (see the module
    docstring); ``margin`` is passed to the :class:`RateBudget`.
    """

    def __init__(self, service: str, base_url: str, auth: AuthBase, credential: str,
                 limits: Sequence[Limit], *, timeout: tuple[float, float] = (5.0, 30.0),
                 retry: RetryPolicy | None = None, storage_uri: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, time_scale: float = 1.0,
                 margin: float | None = None, key_prefix: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.time_scale = float(time_scale)
        self._secret = credential
        self.budget = RateBudget(service, credential, limits, storage_uri, sleep=sleep,
                                 time_scale=time_scale, margin=margin, key_prefix=key_prefix)
        self._pool_key = (service, self.base_url, credential_hash(credential))
        self.session = _POOL.take(self._pool_key)
        self._closed = False
        self.headers = {"Accept": "application/json", **(headers or {})}

    def url(self, path_or_url: str) -> str:
        """An absolute URL as is; anything else appended to the base URL."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(self, method: str, path_or_url: str, *, params: Any = None, json: Any = None,
                ok: Collection[int] = (200,), headers: dict[str, str] | None = None
                ) -> requests.Response:
        """Send with budget, error table and retries; the response if its status is in ``ok``.

        Raises the typed :class:`ConnectorError` once the table says stop or the policy's
        attempts or time run out.
        """
        url = self.url(path_or_url)
        send_headers = {**self.headers, **(headers or {})}
        data = None
        if json is not None:  # exact decimals: the standard encoder cannot write a Decimal
            data = jsontext.dumps(json).encode()
            send_headers.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.budget.acquire()
            try:
                response = self.session.request(
                    method, url, params=params, data=data, auth=self.auth,
                    timeout=self.timeout, headers=send_headers,
                )
            except requests.Timeout:
                error: ConnectorError = TransportError(
                    self.service, f"{method} {self._path(url)}: timed out")
            except requests.ConnectionError as exc:
                error = TransportError(
                    self.service, f"{method} {self._path(url)}: connection failed "
                    f"({_cause_name(exc)})")
            else:
                if response.status_code in ok:
                    return response
                error = error_for_response(self.service, response)
                response.close()
                error.message = _scrub(error.message, self._secret)
                error.body = _scrub(error.body, self._secret)
                error.args = (error._summary(),)
            wait = self._after_failure(error)
            if wait is None or attempt >= self.retry.max_attempts:
                raise error
            delay = self.retry.delay(attempt, wait)
            if time.monotonic() - started + delay > self.retry.max_elapsed:
                raise error
            self.sleep(delay)

    def _after_failure(self, error: ConnectorError) -> float | None:
        """Wall seconds the service asked us to wait (0.0 if none); None when not to retry."""
        if decide(error) is not Decision.RETRY:
            return None
        retry_after = getattr(error, "retry_after", None)
        wait = retry_after / self.time_scale if retry_after is not None else 0.0
        if isinstance(error, RateLimited) and retry_after is not None:
            self.budget.pause_until(self.budget.clock() + wait)
        return wait

    def json(self, method: str, path_or_url: str, **kw: Any) -> Any:
        """``request(...).json()``."""
        return self.request(method, path_or_url, **kw).json()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _POOL.give_back(self._pool_key)

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _path(self, url: str) -> str:
        return _scrub(url.split("?", 1)[0], self._secret)

    def __repr__(self) -> str:
        return f"HttpClient({self.service}, {self.base_url})"


def _cause_name(exc: BaseException) -> str:
    """The innermost cause's class name (e.g. ConnectionResetError), not its message."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    args = getattr(exc, "args", ())
    inner = args[0] if args else None
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        return type(reason).__name__
    return type(seen).__name__


class UsesHttp:
    """For a service client that owns an :class:`HttpClient` as ``self.http``: closing it, and
    ``with`` support."""

    http: HttpClient

    def close(self) -> None:
        self.http.close()

    def __enter__(self):  # noqa: ANN204 - returns the concrete client
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------- pagination


class Paginator(Protocol):
    """A small state machine: where the first page is, and where the next one is, if any."""

    def first(self) -> tuple[str, dict]: ...

    def advance(self, response_json: Any) -> tuple[str, dict] | None: ...


class LoopDetector:
    """Brent's cycle detection over the sequence of next-page links, in constant memory.

    Remembers one checkpoint link; the checkpoint moves to the current link whenever the number
    of steps since it reaches a power of two. A cursor sequence that cycles meets its checkpoint
    within about twice the cycle's length plus its lead-in, however long the walk.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._checkpoint: str | None = None
        self._power = 1
        self._steps = 0

    def seen_again(self, link: str) -> bool:
        """True when ``link`` equals the checkpoint (a cycle); otherwise record the step."""
        if link == self._checkpoint:
            return True
        self._steps += 1
        if self._steps == self._power:
            self._checkpoint, self._power, self._steps = link, self._power * 2, 0
        return False


class JsonApiCursorPaginator:
    """JSON:API cursor pagination: follow ``links.next`` until it is absent or null.

    The cursor is opaque; a cycle of ``next`` links raises :class:`PaginationLoop`.
    """

    def __init__(self, service: str, path: str, params: dict | None = None) -> None:
        self.service = service
        self.path = path
        self.params = dict(params or {})
        self._loops = LoopDetector()
        self.pages = 0

    def first(self) -> tuple[str, dict]:
        self._loops.reset()
        self.pages = 0
        return self.path, dict(self.params)

    def advance(self, response_json: Any) -> tuple[str, dict] | None:
        self.pages += 1
        links = response_json.get("links") if isinstance(response_json, dict) else None
        next_link = links.get("next") if isinstance(links, dict) else None
        if isinstance(next_link, dict):  # JSON:API link objects: {"href": ...}
            next_link = next_link.get("href")
        if not next_link:
            return None
        if self._loops.seen_again(next_link):
            raise PaginationLoop(self.service, f"links.next repeats after {self.pages} pages")
        return next_link, {}


class PageNumberPaginator:
    """``?page=N`` pages of ``{count, next, previous, results}`` (Rejoiner).

    Stops when ``next`` is null; raises :class:`PaginationLoop` when the ``next`` links cycle
    or an empty page still claims a next one.
    """

    def __init__(self, service: str, path: str, params: dict | None = None, *,
                 param: str = "page", start: int = 1) -> None:
        self.service = service
        self.path = path
        self.params = dict(params or {})
        self.param = param
        self.start = start
        self.page = start
        self._loops = LoopDetector()

    def first(self) -> tuple[str, dict]:
        self.page = self.start
        self._loops.reset()
        return self.path, {**self.params, self.param: self.page}

    def advance(self, response_json: Any) -> tuple[str, dict] | None:
        if not isinstance(response_json, dict) or not response_json.get("next"):
            return None
        next_link = str(response_json["next"])
        if self._loops.seen_again(next_link):
            raise PaginationLoop(self.service, f"next repeats after page {self.page}")
        if not response_json.get("results"):
            raise PaginationLoop(self.service, f"empty page {self.page} claims a next page")
        self.page += 1
        return self.path, {**self.params, self.param: self.page}


def paginate(http: HttpClient, paginator: Paginator, items: Callable[[Any], Iterable]
             ) -> Iterator:
    """Yield ``items(page_json)`` of every page in turn, holding one page at a time.

    A relative next link is resolved against the URL of the page that named it.
    """
    step = paginator.first()
    while step is not None:
        target, params = step
        response = http.request("GET", target, params=params or None)
        page = response.json()
        page_url = response.url
        response.close()
        yield from items(page)
        step = paginator.advance(page)
        del page
        if step is not None and not step[0].startswith(("http://", "https://")) \
                and step[0].startswith(("?", "/")) and step[0] != target:
            step = (urljoin(page_url, step[0]), step[1])
