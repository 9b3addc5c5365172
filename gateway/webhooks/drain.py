"""The drainer: ingests the inbox's pending posts, oldest first, each exactly once.

Each post is ingested in the transaction that also marks its row done (up to :data:`BATCH`
posts of one tenant a transaction, each in a savepoint), so a crash at any point leaves it
either pending (and ingested by the next drain) or done with its records stored, never both
or neither. Two drainers (the serving process's thread and a worker
process) never take the same row (see :func:`gateway.webhooks.inbox.next_pending`).

A post that cannot be ingested (a record that contradicts what is stored, a format that is no
longer accepted) is dead-lettered with its reason at once; an unexpected failure (a database
error) leaves it pending for :data:`MAX_ATTEMPTS` tries, then dead-letters it too.

:class:`gateway.background.Background` runs :func:`run_forever` in a thread of ``serve`` and of
``worker``;
the API calls :func:`wake` after each commit so a drainer waiting for work starts at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection

from connectors.jsontext import loads_bounded
from gateway import ingest as core
from gateway.runtime import Runtime
from gateway.store.db import write_transaction
from gateway.store.types import utcnow
from gateway.webhooks import inbox

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
IDLE_SECONDS = 1.0
#: Posts ingested in one transaction (fewer commits: on PostgreSQL each is a WAL flush).
BATCH = 20
#: A drain transaction takes no more posts once it has run this long (it holds the tenant's
#: event lock, and on SQLite the database's write lock, that long).
SLICE_SECONDS = 0.25
SQLITE_SLICE_SECONDS = 0.02
#: How much lower than the process's the drainer thread's CPU priority is (Linux ``nice``
#: steps; 0 leaves it), so that under a burst the accept path gets the CPU first and the
#: inbox is ingested with what is left (see :func:`run_forever`).
NICE = 10
#: On SQLite, the pause between two drain transactions: the accept path's writers, waiting
#: for the one write lock (see :mod:`gateway.webhooks.commit`), take it in that gap. While
#: posts keep arriving the pause is as long as the transaction was (the lock is the accept
#: path's half the time).
SQLITE_PAUSE_SECONDS = 0.003


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


def _ingest_entry(conn: Connection, entry: inbox.InboxEntry) -> str:
    """Ingest one picked entry inside the caller's transaction, in a savepoint of its own:
    ``"done"``, or ``"dead"`` (refused: dead-lettered at once, its savepoint rolled back).
    Any other error propagates (the caller's transaction is then abandoned)."""
    try:
        with conn.begin_nested():
            result = core.ingest(conn, entry.tenant_id, entry.topic, entry.format,
                                 loads_bounded(entry.body), now=entry.received_at)
            inbox.mark_done(conn, entry.tenant_id, entry.id, _stored(result))
        return "done"
    except (core.PayloadInvalid, core.UnsupportedFormat, ValueError) as exc:
        inbox.mark_failed(conn, entry.tenant_id, entry.id, _refusal(exc), dead=True,
                          now=utcnow())
        return "dead"


def _slice_seconds(runtime: Runtime) -> float:
    return SQLITE_SLICE_SECONDS if runtime.engine.dialect.name == "sqlite" else SLICE_SECONDS


def drain_batch(runtime: Runtime, size: int = BATCH) -> DrainReport | None:
    """Ingest up to ``size`` pending posts of one tenant (the oldest pending post's) in one
    transaction, each in a savepoint, so a refused one is dead-lettered without undoing the
    others; None when nothing is pending. The transaction stops taking posts once it has run
    for :data:`SLICE_SECONDS` (:data:`SQLITE_SLICE_SECONDS` on SQLite, where it holds the one
    write lock the accept path needs). When the transaction itself fails (a database
    error), its posts are retried one a transaction by :func:`drain_one`, which counts the
    failed attempts."""
    report = DrainReport()
    try:
        with write_transaction(runtime.engine) as conn:
            picked = inbox.next_pending_batch(conn, size)
            if picked is None:
                return None
            started, budget = time.monotonic(), _slice_seconds(runtime)
            for entry in picked[1]:
                outcome = _ingest_entry(conn, entry)
                setattr(report, outcome, getattr(report, outcome) + 1)
                if time.monotonic() - started >= budget:
                    break  # the rest stay pending (and locked only until this commit)
        return report
    except Exception:
        log.warning("a batch of webhook inbox entries failed; retrying them one by one",
                    exc_info=True)
    report = DrainReport()
    for _ in range(size):
        outcome = drain_one(runtime)
        if outcome is None:
            break
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def drain_inbox(runtime: Runtime, limit: int = 100, *, batch: int = BATCH) -> DrainReport:
    """Ingest up to about ``limit`` pending posts (of every tenant), ``batch`` a transaction;
    what became of them."""
    report = DrainReport()
    with runtime.engine.connect() as conn:  # a read first: an idle poll takes no write lock
        if not inbox.has_pending(conn):
            return report
    sqlite, newest = runtime.engine.dialect.name == "sqlite", None
    while report.handled < limit:
        started = time.monotonic()
        done = drain_batch(runtime, min(batch, limit - report.handled))
        if done is None:
            break
        if sqlite:  # leave the write lock to the accept path for a while
            with runtime.engine.connect() as conn:
                latest = inbox.newest_id(conn)
            arriving = newest is not None and latest != newest
            newest = latest
            time.sleep(time.monotonic() - started if arriving else SQLITE_PAUSE_SECONDS)
        report.done, report.dead = report.done + done.done, report.dead + done.dead
        report.retried += done.retried
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
    (which also picks up posts accepted by other processes). The calling thread's CPU priority
    is lowered by :data:`NICE` first: accepting a post is a small commit the sender waits for,
    ingesting it is ~20 times the work and nobody waits for it, so under a burst the inbox
    grows and is ingested as the CPU frees (an idle machine ingests at full speed)."""
    _lower_priority(NICE)
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


def _lower_priority(steps: int) -> None:
    """Lower this thread's scheduling priority (Linux: a thread is a task with its own nice
    value); elsewhere, or when not allowed, nothing."""
    if steps <= 0 or not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + steps)
    except OSError:
        log.debug("could not lower the webhook drainer's priority", exc_info=True)


def start_drainer(runtime: Runtime) -> tuple[threading.Thread, threading.Event]:
    """:func:`run_forever` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(runtime, stop),
                              name="webhook-drainer", daemon=True)
    thread.start()
    return thread, stop
