"""The drainer: ingests the inbox's pending posts, oldest first, each exactly once.

Each post is ingested in one transaction that also marks its row done, so a crash at any
point leaves it either pending (and ingested by the next drain) or done with its records
stored, never both or neither. Two drainers (the serving process's thread and a worker
process) never take the same row (see :func:`gateway.webhooks.inbox.next_pending`).

A post that cannot be ingested (a record that contradicts what is stored, a format that is no
longer accepted) is dead-lettered with its reason at once; an unexpected failure (a database
error) leaves it pending for :data:`MAX_ATTEMPTS` tries, then dead-letters it too.

The lead wires :func:`run_forever` into the serving process (a thread) and the worker loop;
the API calls :func:`wake` after each commit so a drainer waiting for work starts at once.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from connectors.jsontext import loads_bounded
from gateway import ingest as core
from gateway.runtime import Runtime
from gateway.store.db import write_transaction
from gateway.store.types import utcnow
from gateway.webhooks import inbox

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
IDLE_SECONDS = 1.0


@dataclass
class DrainReport:
    done: int = 0
    dead: int = 0
    retried: int = 0

    @property
    def handled(self) -> int:
        return self.done + self.dead + self.retried


def _stored(result: core.IngestResult) -> dict:
    return {"records": [{"kind": r.kind, "id": r.id, "outcome": r.outcome,
                         "customer_id": r.customer_id} for r in result.records],
            "event_ids": list(result.events), "skipped_erased": result.skipped_erased}


def _refusal(exc: Exception) -> str:
    if isinstance(exc, core.PayloadInvalid):
        return json.dumps({"error": exc.message, "errors": exc.errors}, sort_keys=True)
    if isinstance(exc, core.UnsupportedFormat):
        return json.dumps({"error": exc.message}, sort_keys=True)
    return json.dumps({"error": "the stored body is not valid JSON"})


def drain_one(runtime: Runtime) -> str | None:
    """Ingest the oldest pending post: ``"done"``, ``"dead"``, ``"retried"``, or None when
    nothing is pending."""
    picked = None
    try:
        with write_transaction(runtime.engine) as conn:
            picked = inbox.next_pending(conn)
            if picked is None:
                return None
            entry_id, tenant_id = picked
            entry = inbox.get_entry(conn, tenant_id, entry_id)
            result = core.ingest(conn, tenant_id, entry.topic, entry.format,
                                 loads_bounded(entry.body), now=entry.received_at)
            inbox.mark_done(conn, tenant_id, entry_id, _stored(result))
        return "done"
    except (core.PayloadInvalid, core.UnsupportedFormat, ValueError) as exc:
        if picked is None:
            raise
        reason, dead = _refusal(exc), True
    except Exception as exc:  # a database error, a bug: retried, then dead-lettered
        if picked is None:
            raise
        log.exception("ingesting webhook inbox entry %s failed", picked[0])
        reason, dead = json.dumps({"error": f"ingest failed: {type(exc).__name__}"}), False
    entry_id, tenant_id = picked
    with write_transaction(runtime.engine) as conn:
        entry = inbox.get_entry(conn, tenant_id, entry_id)
        if entry is None or entry.state != "pending":
            return "retried"
        dead = dead or entry.attempts + 1 >= MAX_ATTEMPTS
        inbox.mark_failed(conn, tenant_id, entry_id, reason, dead=dead, now=utcnow())
    return "dead" if dead else "retried"


def drain_inbox(runtime: Runtime, limit: int = 100) -> DrainReport:
    """Ingest up to ``limit`` pending posts (of every tenant); what became of them."""
    report = DrainReport()
    with runtime.engine.connect() as conn:  # a read first: an idle poll takes no write lock
        if not inbox.has_pending(conn):
            return report
    for _ in range(limit):
        outcome = drain_one(runtime)
        if outcome is None:
            break
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


_WAKERS_LOCK = threading.Lock()


def _waker(runtime: Runtime) -> threading.Event:
    """The runtime's wake-up event (one per runtime, kept on it)."""
    with _WAKERS_LOCK:
        return vars(runtime).setdefault("_webhook_drain_waker", threading.Event())


def wake(runtime: Runtime) -> None:
    """Tell this process's drainer that a post was just committed."""
    _waker(runtime).set()


def run_forever(runtime: Runtime, stop: threading.Event, *, limit: int = 100,
                idle_seconds: float = IDLE_SECONDS) -> None:
    """Drain until ``stop`` is set: at once after :func:`wake`, else every ``idle_seconds``
    (which also picks up posts accepted by other processes)."""
    waker = _waker(runtime)
    while not stop.is_set():
        try:
            report = drain_inbox(runtime, limit)
        except Exception:  # the database is away: try again after a pause
            log.exception("draining the webhook inbox failed")
            report = DrainReport()
        if report.handled < limit:
            waker.wait(idle_seconds)
            waker.clear()


def start_drainer(runtime: Runtime) -> tuple[threading.Thread, threading.Event]:
    """:func:`run_forever` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(runtime, stop),
                              name="webhook-drainer", daemon=True)
    thread.start()
    return thread, stop
