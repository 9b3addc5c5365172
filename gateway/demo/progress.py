"""Progress of a long step: a bar redrawn in place on a terminal, plain lines (at most one a
second, and the last) when the output is a file or a pipe.

:class:`Progress` is the object :func:`gateway.pulls.sync.run_sync` reports to
(``update(read=, sent=, total_hint=)``; any of them may be left out), and the demo's own waits
report to it the same way.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_WIDTH = 24
PLAIN_EVERY_SECONDS = 1.0


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None, tty: bool | None = None,
                 rate: bool = True) -> None:
        self.label = label
        self.rate = rate  # show records sent a second (not for a wait on others' work)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.read = 0
        self.sent = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self._last_line = self.started  # plain lines: the first after a second, if still busy
        self._last_text = ""
        self._lock = threading.Lock()

    def update(self, read: int | None = None, sent: int | None = None,
               total_hint: int | None = None, **_: object) -> None:
        with self._lock:
            if read is not None:
                self.read = int(read)
            if sent is not None:
                self.sent = int(sent)
            if total_hint is not None:
                self.total = int(total_hint)
            self._show(final=False)

    def done(self) -> None:
        """The step is over: the last state, on a line of its own."""
        with self._lock:
            self._show(final=True)

    def _text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        parts = [f"{self.label:<26}"]
        if self.total:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * self.sent / self.total))
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        if self.rate:
            parts.append(f"read {self.read}")
        parts.append(f"sent {self.sent}" + (f"/{self.total}" if self.total else ""))
        if self.rate:
            parts.append(f"{self.sent / elapsed:6.1f}/s")
        parts.append(f"{elapsed:5.1f}s")
        return "  ".join(parts)

    def _show(self, *, final: bool) -> None:
        text = self._text()
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self._last_text)) + ("\n" if final else ""))
            self.stream.flush()
            self._last_text = text
            return
        if final or now - self._last_line >= PLAIN_EVERY_SECONDS:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_line = now
