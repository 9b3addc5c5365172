"""A hard limit on request bodies, chunked or not, enforced before the app sees the request.

Werkzeug checks ``max_content_length`` against ``Content-Length`` only. A chunked body has no
``Content-Length``; werkzeug (3.x) then reads it through a stream that silently *stops* at the
limit, so the first megabyte of a 10 MB body was parsed as if it were the whole body.

:class:`BodyLimit` wraps the WSGI app: a declared length over the limit is refused at once; a
body of unknown length (chunked) is read up to one byte past the limit, and either refused or
handed on as an ordinary body with its real ``Content-Length``. A refusal is a JSON 413 built
here, so nothing of the request (auth, parsing, views) runs.

Before answering a refusal the rest of the body is read and dropped, up to
:data:`DRAIN_BYTES`: a client that sends its whole body before it reads the answer (most do)
then sees the 413, where a server that closed a socket with unread data would reset the
connection and lose the answer. A body larger still is cut off (a reset, as werkzeug's and
gunicorn's own limits do).
"""

from __future__ import annotations

import io
import json
from http import HTTPStatus
from typing import Any, Callable, Iterable

from werkzeug.wsgi import get_content_length

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

_READ_SIZE = 64 * 1024
#: How much of a refused body is read and dropped so that the client sees the 413.
DRAIN_BYTES = 16 * 1024 * 1024


class BodyLimit:
    """WSGI middleware: any request body over ``max_bytes`` is a JSON 413."""

    def __init__(self, app: WSGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        declared = get_content_length(environ)  # None when chunked or not given
        if declared is not None:
            if declared > self.max_bytes:
                self._drain(environ["wsgi.input"], min(declared, DRAIN_BYTES))
                return self._refuse(start_response, 413, self._too_large())
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            # No length and a server that does not end the stream: werkzeug reads no body at
            # all (it cannot know where it ends), so there is nothing to bound.
            return self.app(environ, start_response)
        try:
            body = self._read_at_most(environ["wsgi.input"], self.max_bytes + 1)
        except (OSError, ValueError):
            return self._refuse(start_response, 400, "the request body could not be read")
        if len(body) > self.max_bytes:
            self._drain(environ["wsgi.input"], DRAIN_BYTES)
            return self._refuse(start_response, 413, self._too_large())
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # the body is now a plain, measured one
        return self.app(environ, start_response)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    @staticmethod
    def _read_at_most(stream: Any, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = stream.read(min(_READ_SIZE, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    @staticmethod
    def _drain(stream: Any, limit: int) -> None:
        """Read and drop up to ``limit`` bytes (fewer when the body ends first)."""
        left = limit
        try:
            while left > 0:
                chunk = stream.read(min(_READ_SIZE, left))
                if not chunk:
                    return
                left -= len(chunk)
        except (OSError, ValueError):
            return  # the client went away or sent garbage: nothing more to read

    @staticmethod
    def _refuse(start_response: Callable, status: int, message: str) -> list[bytes]:
        body = json.dumps({"error": message}).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
