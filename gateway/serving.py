"""The production HTTP server of ``python app.py serve``: waitress, with bounded resources.

waitress is pure Python (it installs from a wheel everywhere) and does not hold a thread per
connection: one thread multiplexes every socket and a fixed pool of ``serve_threads`` runs the
app, so idle keep-alive connections cost a socket, not a thread. The limits, from
:class:`gateway.settings.Settings`:

- ``idle_timeout_seconds`` (waitress ``channel_timeout``): a connection with no request in
  progress and no bytes received for this long is closed; this bounds idle keep-alive
  connections and clients that stall while sending a request line, headers or a body (a
  ``cleanup_interval`` of at most half of it makes the check frequent enough);
- ``max_header_bytes`` (``max_request_header_size``): the request line and headers together;
  above it the answer is 431 (an over-long URL counts here, so it is a 431, not a 414);
- ``max_body_bytes`` + :data:`BODY_MARGIN` (``max_request_body_size``): a body declared bigger
  is refused by the server before the app runs; up to it, the app itself answers 413 above
  ``max_body_bytes``;
- ``serve_threads`` (``threads``) and ``connection_limit`` (``connection_limit``).

waitress has no deadline for a whole request: a client that trickles a byte more often than the
idle timeout keeps its connection, bounded by the header and body limits and by the connection
limit (put a reverse proxy with request deadlines in front where that matters).

waitress answers the requests it refuses itself (431, 413, 400 for a malformed request, and 500
if the app fails before starting its response) with plain-text bodies; :class:`JsonErrorTask`
replaces those with the gateway's ``{"error": ...}`` shape, so every answer is JSON.

SIGTERM and SIGINT stop the server gracefully: it stops accepting connections, lets requests
already in progress finish and their answers be sent (for at most :data:`DRAIN_SECONDS`), then
closes every connection.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from gateway.settings import Settings

log = logging.getLogger(__name__)

#: What the server accepts beyond the app's own body limit, so the app's JSON 413 answers
#: moderately oversized bodies and the server refuses absurd ones before reading them.
BODY_MARGIN = 64 * 1024
#: How long a stopping server waits for requests in progress.
DRAIN_SECONDS = 10.0
#: How often the event loop wakes without traffic (to notice a stop request).
LOOP_SECONDS = 0.5


class JsonErrorTask(ErrorTask):
    """waitress's answer to a request it refuses, as the gateway's JSON error shape."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"error": f"{error.reason}: {error.body}"}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def server_options(settings: Settings) -> dict[str, Any]:
    """waitress's adjustments for ``settings`` (see the module docstring)."""
    idle = settings.idle_timeout_seconds
    return {
        "threads": settings.serve_threads,
        "connection_limit": settings.connection_limit,
        "channel_timeout": idle,
        "cleanup_interval": max(1, min(30, idle // 2)),
        "max_request_header_size": settings.max_header_bytes,
        "max_request_body_size": settings.max_body_bytes + BODY_MARGIN,
        "asyncore_loop_timeout": LOOP_SECONDS,
        "expose_tracebacks": False,
        "ident": "gateway",
    }


@dataclass
class Server:
    """A bound, not yet running, waitress server."""

    host: str
    port: int
    _server: Any
    _map: dict
    _stop: threading.Event

    def listeners(self) -> list[BaseWSGIServer]:
        return [d for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)]

    def stop(self) -> None:
        """Ask a running :meth:`serve_until_stopped` to drain and return (any thread)."""
        self._stop.set()

    def serve_until_stopped(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT, see :func:`install_stop_signals`)."""
        while not self._stop.is_set():
            wasyncore.loop(timeout=LOOP_SECONDS, map=self._map, use_poll=True, count=1)
        self._drain()

    def _drain(self) -> None:
        for listener in self.listeners():
            listener.accepting = False  # readable() is now False: no new connections
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._busy() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
        self._server.task_dispatcher.shutdown(timeout=max(0.0, deadline - time.monotonic()))
        wasyncore.close_all(self._map)

    def _busy(self) -> bool:
        """True while some connection has a request in progress or an answer to send."""
        return any(isinstance(c, HTTPChannel) and (c.requests or c.total_outbufs_len)
                   for c in list(self._map.values()))


def make_server(app: Callable, host: str, port: int, settings: Settings) -> Server:
    """Bind ``host:port`` for ``app`` (raises OSError when it cannot)."""
    socket_map: dict = {}
    server = create_server(app, map=socket_map, host=host, port=port,
                           **server_options(settings))
    for listener in (d for d in socket_map.values() if isinstance(d, BaseWSGIServer)):
        listener.channel_class = JsonErrorChannel
    effective = getattr(server, "effective_port", port)
    return Server(host=host, port=effective, _server=server, _map=socket_map,
                  _stop=threading.Event())


def install_stop_signals(server: Server) -> None:
    """SIGTERM and SIGINT stop ``server`` gracefully (main thread only)."""

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        server.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
