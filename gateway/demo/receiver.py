"""The demo's REST-hook subscriber: a small HTTP server on 127.0.0.1 in the demo's process
that takes the gateway's signed posts, verifies each signature (Standard Webhooks, with the
secret the subscription answered) and counts what it received. A redelivery of an event (the
same ``webhook-id``) is counted once, as a receiver that dedupes would."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1_048_576


@dataclass
class HookReceiver:
    server: ThreadingHTTPServer
    secret: str | None = field(default=None, repr=False)
    verified: dict[str, dict[str, Any]] = field(default_factory=dict)  # webhook-id -> body
    refused: int = 0
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/status"

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        """Verify and count one post; the HTTP status to answer."""
        with self.lock:
            self.posts += 1
            secret = self.secret
        try:
            if secret is None:
                raise WebhookVerificationError("no subscription yet")
            item = Webhook(secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            with self.lock:
                self.refused += 1
            return 400
        with self.lock:
            self.verified[headers.get("webhook-id", "")] = item if isinstance(item, dict) else {}
        return 200

    def counts(self) -> dict[str, Any]:
        """Posts received, verified events (distinct ids), refused posts, and the verified
        status changes by new status."""
        with self.lock:
            statuses = Counter(str(item.get("status")) for item in self.verified.values())
            return {"posts": self.posts, "events": len(self.verified), "refused": self.refused,
                    "by_status": dict(sorted(statuses.items()))}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


def _handler(receiver: HookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # no access log on the demo's terminal
            pass

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                status = 413
            else:
                body = self.rfile.read(length)
                status = receiver.take(body, {k.lower(): v for k, v in self.headers.items()})
            answer = json.dumps({"ok": status == 200}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


def start_receiver() -> HookReceiver:
    """Listen on a free port of 127.0.0.1 (its :attr:`~HookReceiver.secret` is set once the
    subscription is made)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    # A sender that drops its keep-alive connection is no error worth a traceback here.
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    receiver = HookReceiver(server)
    server.RequestHandlerClass = _handler(receiver)
    receiver.thread = threading.Thread(target=server.serve_forever, name="demo-hook-receiver",
                                       kwargs={"poll_interval": 0.1}, daemon=True)
    receiver.thread.start()
    return receiver
