"""API keys on the gateway's own API: Bearer, or HTTP Basic with the key as the username
(Zapier's built-in auth), a scope per key, and a per-key rate limit.

Views declare what they need with ``@requires("zapier")`` or ``@requires("admin")``; an
``admin`` key may do everything a ``zapier`` key may.

* An ``Authorization`` header that is absent, malformed (not Bearer or Basic, not base64, not
  UTF-8, no username, longer than :data:`MAX_CREDENTIAL_CHARS`) or names no live key is a JSON
  401 with ``WWW-Authenticate``.
* Failed authentications are limited per client address (``Runtime.failed_auth_per_minute``,
  by default :data:`gateway.runtime.FAILED_AUTH_PER_MINUTE`, 20 a minute): a request
  that presents a credential and fails counts; once an address is over the limit, every request
  from it that does not carry a valid key answers 429 with ``Retry-After`` instead of 401. A
  valid key is never refused by this throttle, so a shop that shares an address with a scanner
  (Zapier's pool of addresses, a reverse proxy) keeps working; the price is that a right guess
  still answers 200, so what makes a key unguessable remains its 192 random bits, and the
  throttle turns a wrong guess's answer into a 429 after the first few. The address is the TCP
  peer (``request.remote_addr``); ``X-Forwarded-For`` is not trusted (behind a reverse proxy
  every client shares the proxy's budget of failures, which costs a client with a valid key
  nothing).
* Verified keys (with their tenant) are cached per process for
  :data:`gateway.runtime.KEY_CACHE_SECONDS` (see :class:`gateway.runtime.KeyCache`).
* Every authenticated answer, errors and the 429 included, carries ``X-RateLimit-Limit`` (the
  key's requests per minute), ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (whole
  seconds until the budget next grows back; on a 429 the same as ``Retry-After``).
"""

from __future__ import annotations

import base64
import functools
import logging
import math
import time
from typing import Callable, TypeVar

from flask import Response, after_this_request, g, request
from flask_smorest import abort
from limits import RateLimitItemPerMinute
from sqlalchemy.exc import SQLAlchemyError

from gateway.runtime import Runtime, VerifiedKey, runtime
from gateway.store import keys as key_store
from gateway.store import tenants as tenant_store

F = TypeVar("F", bound=Callable)

log = logging.getLogger(__name__)

SCOPE_RANK = {"zapier": 0, "admin": 1}
SECURITY = [{"bearerAuth": []}, {"basicAuth": []}]

#: A credential longer than this is refused unread (keys are about 50 characters).
MAX_CREDENTIAL_CHARS = 1024
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gateway"'}


def _basic_username(value: str) -> str | None:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except ValueError:  # not ASCII, not base64 (binascii.Error), not UTF-8: all ValueErrors
        return None
    username = decoded.partition(":")[0].strip()
    return username or None


def _presented_key(header: str) -> str | None:
    """The key in an ``Authorization`` value, or None when there is no usable one."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value or len(value) > MAX_CREDENTIAL_CHARS:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        return _basic_username(value)
    return None


def _seconds_until(moment: float) -> int:
    return max(1, math.ceil(moment - time.time()))


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _refuse(rt: Runtime, presented_something: bool, message: str) -> None:
    """401, or 429 when the client's address has failed too often (see the module's text)."""
    address = _client_address()
    limiter, item = rt.api_limiter, RateLimitItemPerMinute(rt.failed_auth_per_minute)
    if presented_something:
        allowed = limiter.hit(item, "auth-failures", address)
    else:  # no credential at all is not an attempt, but a throttled address stays throttled
        allowed = limiter.test(item, "auth-failures", address)
    if not allowed:
        reset, _ = limiter.get_window_stats(item, "auth-failures", address)
        abort(429, message="too many failed authentications from this address; "
                           "try again later", headers={"Retry-After": str(_seconds_until(reset))})
    abort(401, message=message, headers=_CHALLENGE)


def _touch_last_used(rt: Runtime, key_id: str) -> None:
    """Record the key's use; at most once a minute (see :func:`key_store.touch`), and never
    a reason to fail the request."""
    try:
        with rt.engine.begin() as conn:
            key_store.touch(conn, key_id)
    except SQLAlchemyError as exc:
        log.warning("could not record the use of key %s: %s", key_id, type(exc).__name__)


def _verified(rt: Runtime, presented: str) -> VerifiedKey | None:
    """The live key ``presented`` names, from this process's cache or the database."""
    if key_store.parse_prefix(presented) is None:
        return None
    digest = key_store.digest(presented)
    cache = rt.key_cache
    found, value = cache.get(digest)
    if found:
        return value
    read_started = cache.clock()
    with rt.engine.connect() as conn:
        info = key_store.verify(conn, presented)
        value = VerifiedKey(info, tenant_store.get_tenant(conn, info.tenant_id)) if info else None
    cache.put(digest, value, read_started)
    if info is not None and key_store.needs_touch(info):
        _touch_last_used(rt, info.id)
    return value


def _rate_limit(rt: Runtime, key_id: str, tenant_id: str) -> None:
    """Count this request against the key's limit; the X-RateLimit-* headers go on whatever
    the answer turns out to be, a 429 here included."""
    per_minute = rt.cached_settings(tenant_id).api_rate_limit_per_minute
    item = RateLimitItemPerMinute(per_minute)
    allowed = rt.api_limiter.hit(item, "api-key", key_id)
    reset, remaining = rt.api_limiter.get_window_stats(item, "api-key", key_id)
    reset_in = _seconds_until(reset)
    headers = {"X-RateLimit-Limit": str(per_minute), "X-RateLimit-Remaining": str(remaining),
               "X-RateLimit-Reset": str(reset_in)}

    @after_this_request
    def add_headers(response: Response) -> Response:
        response.headers.update(headers)
        return response

    if not allowed:
        abort(429, message=f"rate limit of {per_minute} requests per minute exceeded for this key",
              headers={"Retry-After": str(reset_in)})


def authenticate() -> key_store.KeyInfo:
    """The request's live key (also on ``g.api_key``, its tenant on ``g.tenant``), or a 401
    (429 when this address failed too often, or the key is over its limit)."""
    if "api_key" in g:
        return g.api_key
    rt = runtime()
    header = request.headers.get("Authorization", "")
    if not header.strip():
        _refuse(rt, False, "missing API key: send 'Authorization: Bearer <key>'")
    presented = _presented_key(header)
    verified = _verified(rt, presented) if presented is not None else None
    if verified is None:
        _refuse(rt, True, "invalid or revoked API key" if presented is not None else
                "malformed Authorization header: send 'Authorization: Bearer <key>', or Basic "
                "with the key as the username")
    g.api_key, g.tenant = verified.info, verified.tenant
    _rate_limit(rt, verified.info.id, verified.info.tenant_id)
    return verified.info


def requires(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a key with at least ``scope``."""
    needed = SCOPE_RANK[scope]

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            info = authenticate()
            if SCOPE_RANK.get(info.scope, -1) < needed:
                abort(403, message=f"this key's scope ({info.scope}) does not allow this; "
                                   f"it needs an {scope} key")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def tenant_id() -> str:
    return g.api_key.tenant_id
