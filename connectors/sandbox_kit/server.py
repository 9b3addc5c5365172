"""Serving a sandbox app over real HTTP on 127.0.0.1, in a background thread."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (tests and benchmarks make thousands)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class RunningSandbox:
    """A sandbox served by a threaded werkzeug server; ``url`` is e.g. http://127.0.0.1:54321.

    Usable as a context manager; :meth:`stop` shuts the server down and closes its socket.
    """

    def __init__(self, app: Flask, server: BaseWSGIServer, thread: threading.Thread) -> None:
        self.app = app
        self.server = server
        self.thread = thread
        self.port: int = server.server_port
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "RunningSandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningSandbox({self.app.name}, {self.url})"


def start_sandbox(app: Flask, port: int = 0) -> RunningSandbox:
    """Serve ``app`` on 127.0.0.1 (``port`` 0 picks a free one) until ``stop()``."""
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05},
        name=f"sandbox-{app.name}", daemon=True,
    )
    thread.start()
    return RunningSandbox(app, server, thread)
