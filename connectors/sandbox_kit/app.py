"""The common Flask app every sandbox is built on.

:func:`build_sandbox` returns an app that, before every service request (any path outside
``/_sandbox/``), logs its arrival on the service clock, applies the fault knobs and the rate
limiter, and counts the answer's status. The connector's sandbox registers its own blueprint on
the returned app. The kit's own endpoints:

``GET /_sandbox/stats``
    ``{"records": {kind: n}, "requests": {"200": n, "429": n, ...}}`` (dropped connections are
    not answered, so not counted).
``GET /_sandbox/requests-log``
    ``{"timestamps": [service-clock seconds of every service request that arrived, oldest
    first], "dropped": n older ones no longer held, "rate_scale": x, "limits": [{"requests",
    "seconds"}]}``: what a test holds a client's pacing against.
``GET``/``POST /_sandbox/faults``
    the :class:`FaultSettings`; ``POST`` merges a JSON object onto them (400 for a bad field).
``POST /_sandbox/reset``
    fault defaults, counters, the request log and the rate windows back to empty (and the
    connector's ``on_reset`` hook, which usually drops its records).
``GET /_sandbox/records/<kind>/<path:key>``
    the stored record in wire shape via ``record_lookup``; 404 when it returns None.
``GET /_sandbox/clock``, ``POST /_sandbox/clock`` ``{"advance": seconds}``
    read or jump the service clock.

Rate limits are per credential, as the service itself reads it: the connector declares a
:class:`~connectors.sandbox_kit.credentials.HeaderCredential` (``credential=``, Bearer by
default) and the limiter keys a request on the key it presents when that is the configured key,
and on nothing else (not the header's spelling, not any other header). A request that presents
no key, or another one, cannot be told apart from any other unauthenticated request: all of
those from one client address share one budget (``client:<address>``), so varying a bad key
cannot buy more requests either.

Injected 429s (``burst_429``) are answered through the connector's ``rate_limited`` with a
decision whose ``retry_after`` is ``faults.retry_after`` if set, else the shortest enforced
window's length (1 without limits), in service seconds; a connector whose service names a fixed
Retry-After may answer with its own.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import math
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from flask import Flask, Request, Response, g, jsonify, request

from connectors.base import Limit

from .clock import SandboxClock
from .credentials import BEARER, HeaderCredential
from .faults import FaultPlan
from .jsonbody import BodyError, parse_json_body
from .ratelimit import RateDecision, RateLimiter
from .stats import Stats

KIT_PREFIX = "/_sandbox/"


@dataclass
class SandboxConfig:
    api_key: str
    site_id: str | None = None  # Rejoiner
    tenant_id: str | None = None  # Replenit
    seed_customers: int = 0
    rate_scale: float = 1.0
    no_api_plan: bool = False  # Rekindle: 403 for a plan without API access
    rate_limits: bool = True  # off for throughput benchmarks
    clock: SandboxClock | None = None
    limits: tuple[Limit, ...] | None = None  # overrides the service's documented limits


@dataclass(frozen=True)
class SandboxSpec:
    """How the CLI and the tests find a connector's sandbox (``SANDBOX`` in its sandbox.py)."""

    name: str
    base_path: str
    create: Callable[[SandboxConfig], Flask]
    limits: tuple[Limit, ...] = ()
    description: str = ""
    credential: HeaderCredential = BEARER  # how the service reads its key


class SandboxState:
    """The kit's objects for one app, kept on ``app.extensions["sandbox"]``.

    Attributes ``name``, ``config``, ``clock``, ``limiter``, ``faults``, ``stats``, ``limits``,
    ``credential``; ``state["faults"]`` works too.
    """

    def __init__(self, name: str, config: SandboxConfig, clock: SandboxClock,
                 limiter: RateLimiter, faults: FaultPlan, stats: Stats,
                 limits: tuple[Limit, ...], credential: HeaderCredential = BEARER) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.limits = limits
        self.credential = credential

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def limit_key(self, req: Request) -> str:
        """What the limiter counts ``req`` against (see the module docstring): the service's
        credential when ``req`` presents the configured key, else the client's address."""
        presented = self.credential.read(req)
        if presented is not None and hmac.compare_digest(
                presented.encode("utf-8", "surrogateescape"),
                self.config.api_key.encode("utf-8", "surrogateescape")):
            return "credential:" + hashlib.sha256(presented.encode()).hexdigest()[:24]
        return "client:" + (req.remote_addr or "unknown")


def kit_state(app: Flask) -> SandboxState:
    """The :class:`SandboxState` of a sandbox app."""
    return app.extensions["sandbox"]


def documented_limits(name: str) -> tuple[Limit, ...]:
    """The limits ``connectors.<name>.CONNECTOR`` documents (empty if it cannot be loaded)."""
    try:
        return tuple(importlib.import_module(f"connectors.{name}").CONNECTOR.limits)
    except (ImportError, AttributeError):
        return ()


def build_sandbox(
    name: str,
    config: SandboxConfig,
    *,
    record_counts: Callable[[], dict],
    record_lookup: Callable[[str, str], dict | None],
    rate_limited: Callable[[RateDecision], Response],
    rate_headers: bool = False,
    limits: Sequence[Limit] | None = None,
    on_reset: Callable[[], None] | None = None,
    credential: HeaderCredential = BEARER,
) -> Flask:
    """The common sandbox app (see the module docstring for what it serves).

    Limits: ``config.limits`` if set, else ``limits``, else the connector's documented
    ``CONNECTOR.limits``; none at all when ``config.rate_limits`` is False. ``credential`` is
    how the service reads its key; the limiter keys on it (:meth:`SandboxState.limit_key`).
    """
    chosen = tuple(config.limits if config.limits is not None
                   else limits if limits is not None else documented_limits(name))
    enforced = chosen if config.rate_limits else ()
    clock = config.clock or SandboxClock(config.rate_scale)
    state = SandboxState(name, config, clock, RateLimiter(enforced, clock), FaultPlan(),
                         Stats(), enforced, credential)
    limit_key = state.limit_key

    app = Flask(f"sandbox_{name}")
    app.extensions["sandbox"] = state
    app.json.sort_keys = False
    app.wsgi_app = _StatusCounter(app.wsgi_app, state.stats)

    @app.before_request
    def _faults_and_limits() -> Response | None:
        if request.path.startswith(KIT_PREFIX):
            return None
        state.stats.log_arrival(clock.now())
        faults = state.faults
        settings = faults.settings
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000.0)
        if faults.draw(settings.hang_rate):
            time.sleep(settings.hang_seconds)
        if faults.draw(settings.reset_rate):
            _drop_connection()
            return Response(status=500)  # never reaches the client
        if faults.take_burst():
            g.sandbox_rate = _injected_decision(state, limit_key(request))
            return rate_limited(g.sandbox_rate)
        if faults.draw(settings.error_rate):
            response = jsonify({"error": "injected fault", "message": "injected fault"})
            response.status_code = settings.error_status
            return response
        decision = state.limiter.hit(limit_key(request))
        g.sandbox_rate = decision
        if not decision.allowed:
            return rate_limited(decision)
        return None

    if rate_headers:
        @app.after_request
        def _rate_headers(response: Response) -> Response:
            if request.path.startswith(KIT_PREFIX):
                return response
            decision = g.get("sandbox_rate") or state.limiter.peek(limit_key(request))
            if decision.limit:
                response.headers["X-RateLimit-Limit"] = str(decision.limit)
                response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
                response.headers["X-RateLimit-Reset"] = str(decision.reset_epoch)
            return response

    @app.get("/_sandbox/stats")
    def _stats() -> Response:
        return jsonify(state.stats.snapshot(record_counts()))

    @app.get("/_sandbox/requests-log")
    def _requests_log() -> Response:
        timestamps, dropped = state.stats.arrivals()
        return jsonify({
            "timestamps": timestamps,
            "dropped": dropped,
            "rate_scale": clock.rate_scale,
            "limits": [{"requests": lim.requests, "seconds": lim.seconds} for lim in chosen],
        })

    @app.route("/_sandbox/faults", methods=["GET", "POST"])
    def _faults() -> Response | tuple[Response, int]:
        if request.method == "POST":
            body = _json_object()
            if not isinstance(body, dict):
                return jsonify({"error": "expected a JSON object of fault settings"}), 400
            try:
                state.faults.update(body)
            except ValueError as exc:
                return jsonify({"error": "invalid fault settings", "errors": exc.args[0]}), 400
        return jsonify(state.faults.settings.to_json())

    @app.post("/_sandbox/reset")
    def _reset() -> Response:
        state.faults.reset()
        state.stats.reset()
        state.limiter.reset()
        if on_reset is not None:
            on_reset()
        return jsonify({"reset": True})

    @app.get("/_sandbox/records/<kind>/<path:key>")
    def _record(kind: str, key: str) -> Response | tuple[Response, int]:
        record = record_lookup(kind, key)
        if record is None:
            return jsonify({"error": f"no {kind} record {key!r}"}), 404
        return jsonify(record)

    @app.route("/_sandbox/clock", methods=["GET", "POST"])
    def _clock() -> Response | tuple[Response, int]:
        if request.method == "POST":
            body = _json_object() or {}
            seconds = body.get("advance")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                return jsonify({"error": "advance must be a non-negative number"}), 400
            clock.advance(float(seconds))
        return jsonify({"now": clock.now(), "rate_scale": clock.rate_scale})

    return app


def _json_object() -> dict | None:
    """The request's JSON object body for a kit route; None when it is not one."""
    try:
        body = parse_json_body(request.get_data())
    except BodyError:
        return None
    return body if isinstance(body, dict) else None


def _injected_decision(state: SandboxState, key: str) -> RateDecision:
    current = state.limiter.peek(key)
    retry_after = state.faults.settings.retry_after
    if retry_after is None:
        retry_after = min((lim.seconds for lim in state.limits), default=1)
    now = state.clock.now()
    return RateDecision(False, current.limit, 0, math.ceil(now + retry_after), int(retry_after))


def _drop_connection() -> None:
    """Close the request's connection without an answer (the client sees a reset)."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        raise ConnectionResetError("injected reset")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    request.environ["sandbox.dropped"] = True


class _StatusCounter:
    """WSGI middleware: counts the status of every answered service request."""

    def __init__(self, wsgi_app: Callable, stats: Stats) -> None:
        self.wsgi_app = wsgi_app
        self.stats = stats

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if environ.get("PATH_INFO", "").startswith(KIT_PREFIX):
            return self.wsgi_app(environ, start_response)

        def counting_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            if not environ.get("sandbox.dropped"):
                self.stats.count_request(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, counting_start_response)
