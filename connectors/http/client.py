"""The client every connector's service client is built on: :class:`HttpClient`.

One pooled ``requests.Session`` per (service, base URL, credential hash); every attempt goes
through the credential's :class:`~.budget.RateBudget`; answers become typed errors through
:func:`~.errors.error_for_response` (never carrying the secret); what the table says to retry is
retried with exponential backoff, full jitter and ``Retry-After`` honoured, within the caller's
:class:`~.retry.Deadline`. The credential goes only to the connection's own origin: an absolute
URL on another origin is refused before anything is sent, and no redirect is followed.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Collection, ContextManager, Sequence

import requests
from requests.auth import AuthBase

from connectors import jsontext
from connectors.base import Limit

from .auth import is_absolute, origin_of, same_origin
from .budget import Held, RateBudget, credential_hash
from .errors import (
    ConnectorError,
    DeadlineExceeded,
    ForeignOrigin,
    RateLimited,
    RetriableError,
    TransportError,
    error_for_response,
    scrub,
    scrub_error,
)
from .retry import Deadline, RetryPolicy, as_deadline, current_deadline, deadline_scope, earliest

#: Below this many seconds left, an attempt is not started: it could not get an answer back.
MIN_ATTEMPT_SECONDS = 0.01


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


class HttpClient:
    """A service's HTTP client: pooled session, auth, rate budget, error table, retries.

    ``time_scale`` divides the budget's windows and every ``Retry-After`` wait (a client with
    ``time_scale=X`` keeps in step with a sandbox whose clock runs ``X`` times faster); ``margin``
    is passed to the :class:`RateBudget`. ``clock`` (epoch seconds) and ``sleep`` are injectable
    and drive the budget, the retries and the deadlines alike. ``deadline_seconds``, if set, is
    the default deadline of every :meth:`request`: that many seconds after it starts.
    """

    def __init__(self, service: str, base_url: str, auth: AuthBase, credential: str,
                 limits: Sequence[Limit], *, timeout: tuple[float, float] = (5.0, 30.0),
                 retry: RetryPolicy | None = None, storage_uri: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, time_scale: float = 1.0,
                 margin: float | None = None, key_prefix: str | None = None,
                 headers: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time,
                 deadline_seconds: float | None = None) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.origin = origin_of(self.base_url)
        self.auth = auth
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.deadline_seconds = deadline_seconds
        self.time_scale = float(time_scale)
        self._secret = credential
        self.budget = RateBudget(service, credential, limits, storage_uri, clock=clock,
                                 sleep=sleep, time_scale=time_scale, margin=margin,
                                 key_prefix=key_prefix)
        self._pool_key = (service, self.base_url, credential_hash(credential))
        self.session = _POOL.take(self._pool_key)
        self._closed = False
        self.headers = {"Accept": "application/json", **(headers or {})}

    def url(self, path_or_url: str) -> str:
        """An absolute URL as is; anything else appended to the base URL."""
        if is_absolute(path_or_url):
            return path_or_url.strip()
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def deadline(self, deadline: Deadline | float | None) -> ContextManager[Deadline | None]:
        """``with client.deadline(at): ...``: every request in the block (on any client of this
        thread) ends by ``at`` (a :class:`Deadline`, or epoch seconds on this client's clock)."""
        return deadline_scope(deadline, self.clock)

    def request(self, method: str, path_or_url: str, *, params: Any = None, json: Any = None,
                ok: Collection[int] = (200,), headers: dict[str, str] | None = None,
                deadline: Deadline | float | None = None) -> requests.Response:
        """Send with budget, error table and retries; the response if its status is in ``ok``.

        Raises the typed :class:`ConnectorError` once the table says stop or the policy's
        attempts or time run out; :class:`ForeignOrigin` (sending nothing) for an absolute URL
        on another origin than the base URL's; :class:`~.errors.Redirected` for a 3xx not in
        ``ok`` (no redirect is followed). ``deadline`` (a :class:`Deadline`, or epoch seconds
        on the client's clock) bounds the whole call, budget waits and retries included, along
        with any :meth:`deadline` scope and ``deadline_seconds``: the earliest wins. Each
        attempt's connect and read timeouts are capped by the time left; a wait or an attempt
        that cannot end in time raises :class:`DeadlineExceeded` (retriable) instead.
        """
        url = self.url(path_or_url)
        if not same_origin(url, self.base_url):
            raise ForeignOrigin(
                self.service, f"{method} refused: {scrub(str(origin_of(url)), self._secret)} "
                f"is not the connection's origin {self.origin}; the credential goes only there")
        limit = earliest(as_deadline(deadline, self.clock), current_deadline(),
                         Deadline.after(self.deadline_seconds, self.clock)
                         if self.deadline_seconds is not None else None)
        send_headers = {**self.headers, **(headers or {})}
        data = None
        if json is not None:  # exact decimals: the standard encoder cannot write a Decimal
            data = jsontext.dumps(json).encode()
            send_headers.setdefault("Content-Type", "application/json")
        started = self.clock()
        attempt = 0
        last: ConnectorError | None = None
        while True:
            attempt += 1
            held = self._acquire(method, url, limit, last)
            timeout = self._timeout_within(method, url, limit, last)
            try:
                try:
                    response = self.session.request(
                        method, url, params=params, data=data, auth=self.auth,
                        timeout=timeout, headers=send_headers, allow_redirects=False,
                    )
                finally:
                    # The attempt is over (answered, timed out or reset): whenever the service
                    # counted it, that was before now, so it leaves its windows a length later.
                    held.release()
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
                error = scrub_error(error_for_response(self.service, response), self._secret)
                response.close()
            wait = self._after_failure(error)
            if wait is None or attempt >= self.retry.max_attempts:
                raise error
            delay = self.retry.delay(attempt, wait)
            if self.clock() - started + delay > self.retry.max_elapsed:
                raise error
            if limit is not None and delay + MIN_ATTEMPT_SECONDS >= limit.remaining():
                raise self._deadline_exceeded(method, url, error, retry_after=delay) from error
            last = error
            self.sleep(delay)

    def _acquire(self, method: str, url: str, limit: Deadline | None,
                 last: ConnectorError | None) -> Held:
        """The budget's slot, held until the attempt is answered, or :class:`DeadlineExceeded`
        when waiting for it would pass ``limit`` (taking nothing)."""
        longest = sum(self.timeout)
        if limit is None:
            return self.budget.hold(longest=longest)  # type: ignore[return-value]
        within = limit.remaining() - MIN_ATTEMPT_SECONDS
        held = self.budget.hold(within=within, longest=longest) if within > 0 else None
        if held is None:
            raise self._deadline_exceeded(method, url, last, retry_after=self.budget.wait() or None,
                                          waiting="for the rate budget")
        return held

    def _timeout_within(self, method: str, url: str, limit: Deadline | None,
                        last: ConnectorError | None) -> tuple[float, float]:
        """The configured (connect, read) timeouts, each capped by the time left."""
        if limit is None:
            return self.timeout
        left = limit.remaining()
        if left < MIN_ATTEMPT_SECONDS:
            raise self._deadline_exceeded(method, url, last)
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def _deadline_exceeded(self, method: str, url: str, last: ConnectorError | None, *,
                           retry_after: float | None = None,
                           waiting: str = "") -> DeadlineExceeded:
        what = f"{method} {self._path(url)}: the deadline came "
        what += f"before the wait {waiting} was over" if waiting else "before the send could end"
        if last is not None:
            what += f" (last answer: {last.message})"
        error = DeadlineExceeded(self.service, what, status=last.status if last else None,
                                 body=last.body if last else None, retry_after=retry_after)
        if last is not None:
            error.__cause__ = last
        return error

    def _after_failure(self, error: ConnectorError) -> float | None:
        """Seconds the service asked us to wait (0.0 if none); None when not to retry."""
        if not isinstance(error, RetriableError):
            return None
        retry_after = error.retry_after
        wait = retry_after / self.time_scale if retry_after is not None else 0.0
        if isinstance(error, RateLimited) and retry_after is not None:
            self.budget.pause_until(self.clock() + wait)
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
        return scrub(url.split("?", 1)[0], self._secret)

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
    """For a service client that owns an :class:`HttpClient` as ``self.http``: closing it,
    ``with`` support, and :meth:`deadline` scopes."""

    http: HttpClient

    def deadline(self, deadline: Deadline | float | None) -> ContextManager[Deadline | None]:
        """``with client.deadline(at): ...``: every request the block makes ends by ``at``."""
        return self.http.deadline(deadline)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):  # noqa: ANN204 - returns the concrete client
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
