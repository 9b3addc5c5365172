"""The drainer: ingests the inbox's pending posts, oldest first, each exactly once.

Each post is ingested in the transaction that also marks its row done (up to :data:`BATCH`
posts of one tenant a transaction, a refused one storing nothing), so a crash at any point leaves it
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
#: The most posts ingested in one transaction: together they cost a fraction of what they
#: cost one by one (:func:`gateway.ingest.ingest_batch`), and share a commit.
BATCH = 200
#: A drain's first transaction takes this many, until it knows how long a post takes.
FIRST_BATCH = 20
#: A drain transaction takes about as many posts as fit in this long (it holds the tenant's
#: event lock, and on SQLite the database's write lock, that long); on SQLite, while posts
#: are arriving (their commits wait for that lock), the shorter one.
SLICE_SECONDS = 0.25
SQLITE_SLICE_SECONDS = 0.02
#: How much lower than the process's the drainer thread's CPU priority is (Linux ``nice``
#: steps; 0 leaves it), so that under a burst the accept path gets the CPU first and the
#: inbox is ingested with what is left (see :func:`run_forever`).
NICE = 10
#: On SQLite, the shortest pause between two drain transactions when no posts are arriving:
#: long enough for a writer asleep in SQLite's busy handler (up to 100 ms between tries; the
#: relay worker) to find the write lock free (the pause is a quarter of the transaction, at
#: least this).
SQLITE_PAUSE_SECONDS = 0.003
#: While posts keep arriving faster than the drainer could ingest them in half its time (a
#: burst), it takes this share of the time and pauses for the rest: accepting a post is what
#: the sender waits for, ingesting it is several times the work and nobody waits for it, so
#: under a burst the inbox grows and is ingested once the burst is over (the CPU priority,
#: :data:`NICE`, does not reach the database's work, nor SQLite's one write lock).
BURST_SHARE = 0.2
#: Below a burst, while posts arrive, it takes enough of the time to ingest them this many
#: times over (and at least :data:`BURST_SHARE`), so that the inbox does not grow.
KEEP_UP_MARGIN = 1.5
#: The longest of those pauses (a slow transaction does not put the drainer to sleep for long).
MAX_PAUSE_SECONDS = 1.0


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


def _slice_seconds(runtime: Runtime, arriving: bool) -> float:
    """How long one drain transaction may run: short on SQLite while posts keep arriving (it
    holds the write lock their commits need), else :data:`SLICE_SECONDS`."""
    sqlite = runtime.engine.dialect.name == "sqlite"
    return SQLITE_SLICE_SECONDS if sqlite and arriving else SLICE_SECONDS


class _Pace:
    """How many posts fit in a drain transaction's time slice, from how long the last ones
    took (a moving average of the seconds a post; :data:`FIRST_BATCH` to start with), and
    what share of the time the drainer takes while posts arrive (:meth:`share`)."""

    def __init__(self) -> None:
        self.seconds_a_post: float | None = None

    def size(self, budget: float, most: int) -> int:
        if self.seconds_a_post is None:
            return min(most, FIRST_BATCH)
        return max(1, min(most, int(budget / self.seconds_a_post)))

    def share(self, arrivals_a_second: float) -> float:
        """The share of the time to drain in while posts arrive at this rate: enough to keep
        up with them (:data:`KEEP_UP_MARGIN`), unless they need more than half of the
        drainer's time (a burst: :data:`BURST_SHARE`)."""
        if arrivals_a_second <= 0:
            return 1.0
        need = arrivals_a_second * (self.seconds_a_post or 0.0)
        if need > 0.5:
            return BURST_SHARE
        return min(1.0, max(BURST_SHARE, KEEP_UP_MARGIN * need))

    def took(self, seconds: float, posts: int) -> None:
        if posts:
            each = seconds / posts
            self.seconds_a_post = each if self.seconds_a_post is None else \
                0.7 * self.seconds_a_post + 0.3 * each


def _ingest_entries(conn: Connection, tenant_id: str, entries: list[inbox.InboxEntry],
                    report: DrainReport, until: float) -> None:
    """Ingest the picked entries in the caller's transaction, together
    (:func:`gateway.ingest.ingest_batch`: a refused one stores nothing), and mark each done
    or, refused, dead with its reason; those not started by ``until`` (monotonic) stay
    pending. Any other error propagates (the caller's transaction is then abandoned)."""
    now = utcnow()
    loaded: list[inbox.InboxEntry] = []
    submissions: list[core.Submission] = []
    for entry in entries:
        try:
            payload = loads_bounded(entry.body)
        except ValueError as exc:
            inbox.mark_failed(conn, tenant_id, entry.id, _refusal(exc), dead=True, now=now)
            report.dead += 1
            continue
        loaded.append(entry)
        submissions.append(core.Submission(entry.topic, entry.format, payload,
                                           entry.received_at))
    done: list[tuple[int, dict]] = []
    outcomes = core.ingest_batch(conn, tenant_id, submissions, until=until)
    for entry, outcome in zip(loaded, outcomes):
        if isinstance(outcome, core.IngestResult):
            done.append((entry.id, _stored(outcome)))
        else:
            inbox.mark_failed(conn, tenant_id, entry.id, _refusal(outcome), dead=True, now=now)
            report.dead += 1
    inbox.mark_done_many(conn, tenant_id, done, now=now)
    report.done += len(done)


def drain_batch(runtime: Runtime, size: int = BATCH, *, arriving: bool = False,
                pace: _Pace | None = None) -> DrainReport | None:
    """Ingest up to ``size`` pending posts of one tenant (the oldest pending post's) in one
    transaction, so a refused one is dead-lettered without undoing the others; None when
    nothing is pending. ``pace`` (kept by the caller across batches) sizes the batch to about
    :func:`_slice_seconds` of work, and the transaction takes no more posts once it has run
    that long (on SQLite it holds the one write lock the accept path needs, and the drainer,
    at a low CPU priority, may be slowed by the very posts it makes wait). When the
    transaction itself fails (a database error), its posts are retried one a transaction by
    :func:`drain_one`, which counts the failed attempts."""
    pace = pace or _Pace()
    report = DrainReport()
    try:
        started, budget = time.monotonic(), _slice_seconds(runtime, arriving)
        with write_transaction(runtime.engine) as conn:
            picked = inbox.next_pending_batch(conn, pace.size(budget, size))
            if picked is None:
                return None
            _ingest_entries(conn, picked[0], picked[1], report, started + budget)
        pace.took(time.monotonic() - started, report.handled)
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


def drain_inbox(runtime: Runtime, limit: int = 100, *, batch: int = BATCH,
                pace: _Pace | None = None) -> DrainReport:
    """Ingest up to about ``limit`` pending posts (of every tenant), at most ``batch`` a
    transaction; what became of them. Between two transactions, while posts keep arriving,
    the drainer pauses so that it takes :meth:`_Pace.share` of the time (on SQLite the
    transactions are then kept to :data:`SQLITE_SLICE_SECONDS`: they hold the write lock the
    accept path's commits need); on SQLite, when none arrive, it still pauses for a quarter of
    each transaction (at least :data:`SQLITE_PAUSE_SECONDS`) for the other writers."""
    report = DrainReport()
    with runtime.engine.connect() as conn:  # a read first: an idle poll takes no write lock
        if not inbox.has_pending(conn):
            return report
        newest = inbox.newest_id(conn)
    sqlite, pace = runtime.engine.dialect.name == "sqlite", pace or _Pace()
    arriving, seen = sqlite, time.monotonic()  # on SQLite, until seen otherwise
    while report.handled < limit:
        started = time.monotonic()
        done = drain_batch(runtime, min(batch, limit - report.handled), arriving=arriving,
                           pace=pace)
        if done is None:
            break
        report.done, report.dead = report.done + done.done, report.dead + done.dead
        report.retried += done.retried
        with runtime.engine.connect() as conn:
            latest = inbox.newest_id(conn)
        now = time.monotonic()
        took = now - started
        rate = ((latest or 0) - (newest or 0)) / max(now - seen, 1e-6)  # posts/s since last look
        arriving, newest, seen = latest != newest, latest, now
        if arriving:
            time.sleep(min(MAX_PAUSE_SECONDS, took * (1 / pace.share(rate) - 1)))
        elif sqlite:
            time.sleep(max(SQLITE_PAUSE_SECONDS, took / 4))
    return report


_WAKERS_LOCK = threading.Lock()


def _waker(runtime: Runtime) -> threading.Event:
    """The runtime's wake-up event (one per runtime, kept on it)."""
    with _WAKERS_LOCK:
        return vars(runtime).setdefault("_webhook_drain_waker", threading.Event())


def wake(runtime: Runtime) -> None:
    """Tell this process's drainer that a post was just committed."""
    _waker(runtime).set()


def run_forever(runtime: Runtime, stop: threading.Event, *, limit: int = 1000,
                idle_seconds: float = IDLE_SECONDS) -> None:
    """Drain until ``stop`` is set: at once after :func:`wake`, else every ``idle_seconds``
    (which also picks up posts accepted by other processes). The calling thread's CPU priority
    is lowered by :data:`NICE` first: accepting a post is a small commit the sender waits for,
    ingesting it is several times the work and nobody waits for it, so under a burst the inbox
    grows and is ingested as the CPU frees (an idle machine ingests at full speed)."""
    _lower_priority(NICE)
    waker, pace = _waker(runtime), _Pace()
    while not stop.is_set():
        try:
            report = drain_inbox(runtime, limit, pace=pace)
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
