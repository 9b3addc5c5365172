"""The gateway's background loops, started together by ``python app.py worker`` and the
embedded ``python app.py serve``: the delivery worker, the REST-hook sender, the webhook inbox
drainer and the schedule ticker.

Each loop runs in a thread of its own and stops when one event is set; :meth:`Background.stop`
sets it and waits for the loops to finish what they are doing (the delivery worker finishes its
sends in flight and releases the leases of anything it did not send). A gunicorn worker never
starts them (the ticker refuses to, and ``gunicorn app:app`` builds only the API).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from gateway.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class Background:
    """The four loops of one process, over one :class:`~gateway.runtime.Runtime`."""

    runtime: Runtime
    worker_threads: int | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> "Background":
        from gateway.hooks.sender import HookSender
        from gateway.pulls import register_jobs
        from gateway.relay.worker import Worker
        from gateway.schedule.ticker import run_ticker
        from gateway.webhooks import drain

        register_jobs()  # the pulls' schedules (rci-customers, rekindle-poll) for the ticker
        self.worker = Worker(self.runtime, threads=self.worker_threads)
        self.hook_sender = HookSender(self.runtime)
        loops = {
            "delivery-worker": lambda: self.worker.run_forever(self.stop_event),
            "hook-sender": lambda: self.hook_sender.run_forever(self.stop_event),
            "webhook-drainer": lambda: drain.run_forever(self.runtime, self.stop_event),
            "schedule-ticker": lambda: run_ticker(self.runtime, self.stop_event),
        }
        for name, loop in loops.items():
            thread = threading.Thread(target=self._guarded(name, loop), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _guarded(self, name: str, loop):  # noqa: ANN001, ANN202 - a thread target
        def run() -> None:
            try:
                loop()
            except Exception:  # a loop that dies is said once; the others go on
                log.exception("%s stopped by an error", name)

        return run

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every loop and wait up to ``timeout`` seconds for them to finish."""
        self.stop_event.set()
        if getattr(self, "worker", None) is not None:
            self.worker.stop()
        if getattr(self, "hook_sender", None) is not None:
            self.hook_sender.stop()
        for thread in self._threads:
            thread.join(timeout)

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler, say)."""
        while not self.stop_event.wait(0.5):
            pass
