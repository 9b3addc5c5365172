"""API keys on the gateway's own API: Bearer, or HTTP Basic with the key as the username
(Zapier's built-in auth), a scope per key, and a per-key rate limit.

Views declare what they need with ``@requires("zapier")`` or ``@requires("admin")``; an
``admin`` key may do everything a ``zapier`` key may.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import time
from typing import Callable, TypeVar

from flask import g, request
from flask_smorest import abort
from limits import RateLimitItemPerMinute

from gateway.runtime import runtime
from gateway.store import keys as key_store
from gateway.store import tenants as tenant_store

F = TypeVar("F", bound=Callable)

SCOPE_RANK = {"zapier": 0, "admin": 1}
SECURITY = [{"bearerAuth": []}, {"basicAuth": []}]


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, _password = decoded.partition(":")
        return username.strip() or None
    return None


def _unauthorised(message: str) -> None:
    abort(401, message=message, headers={"WWW-Authenticate": 'Bearer realm="gateway"'})


def _rate_limit(key_id: str, tenant_id: str) -> None:
    rt = runtime()
    per_minute = rt.cached_settings(tenant_id).api_rate_limit_per_minute
    item = RateLimitItemPerMinute(per_minute)
    if rt.api_limiter.hit(item, "api-key", key_id):
        return
    reset, _remaining = rt.api_limiter.get_window_stats(item, "api-key", key_id)
    retry_after = max(1, math.ceil(reset - time.time()))
    abort(429, message=f"rate limit of {per_minute} requests per minute exceeded for this key",
          headers={"Retry-After": str(retry_after)})


def authenticate() -> key_store.KeyInfo:
    """The request's live key (also on ``g.api_key``), or a 401."""
    if "api_key" in g:
        return g.api_key
    presented = _presented_key()
    if presented is None:
        _unauthorised("missing API key: send 'Authorization: Bearer <key>'")
    with runtime().engine.begin() as conn:
        info = key_store.authenticate(conn, presented)
        if info is not None:
            g.tenant = tenant_store.get_tenant(conn, info.tenant_id)
    if info is None:
        _unauthorised("invalid or revoked API key")
    g.api_key = info
    _rate_limit(info.id, info.tenant_id)
    return info


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


