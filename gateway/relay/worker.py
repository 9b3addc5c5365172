"""The delivery loop: claim due rows, send them, settle them, record the drain.

A :class:`Worker` needs only a :class:`~gateway.runtime.Runtime` (settings, engine, vault): no
Flask app and no request context, so ``python app.py worker`` runs it on its own and the
embedded ``serve`` runs it in a thread (:func:`start_in_thread`). Several may run, in one
process or on many machines that reach the database; leases and fencing keep each row with one
of them at a time.

One pass (:meth:`Worker.run_once`): while there is a claimable group (:mod:`.choose`: fair
across tenants, by priority within one, partial batches after their linger), claim a batch of
it (:mod:`.claim`) and hand it to one of ``worker_threads`` sender threads; each destination
(tenant, connector) has at most one batch in flight in a process. A destination is skipped
while its rate budget has no room (claiming then would only hold rows while waiting), while
its breaker is open (:mod:`.breaker`), or while its connection is paused after failing. A
sender builds (or reuses) the tenant's client (:mod:`.clients`), sends within a deadline that
ends well inside the lease (:mod:`.sending`), and settles the rows with fencing in one
transaction: done, dead, back for a retry with exponential backoff and full jitter (never
sooner than the service's ``Retry-After``; an attempt counted; ``dead`` after
``max_attempts`` or ``max_age_seconds``), or back without an attempt counted.

:meth:`Worker.run_forever` repeats passes until its stop event is set: it wakes at once when
this process commits deliveries (:mod:`.notify`), when a lingering batch or a budget becomes
ready, and otherwise polls every ``worker_poll_seconds``. A lost database connection is
logged and retried; the engine's pre-ping reconnects. On stop it claims nothing more and
finishes the sends in flight; rows it never got to stay ``pending``, and a process killed
outright loses nothing either: its leases expire and another pass claims the rows again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy.exc import SQLAlchemyError

from connectors import base as registry
from connectors.http import RetryPolicy
from gateway import logs
from gateway.hooks import HOOKS
from gateway.pulls import acknowledged
from gateway.relay import answers, choose, claim, notify, runs
from gateway.relay.breaker import Breakers
from gateway.relay.clients import ClientCache, ConnectionUnavailable, Destination
from gateway.relay.sending import Outcome, send_batch
from gateway.runtime import Runtime

log = logging.getLogger("gateway.relay")

#: The share of its lease a batch may spend sending; the rest is for settling it.
SEND_SHARE = 0.75
#: Settling a batch is tried this many times when the database connection fails meanwhile.
SETTLE_TRIES = 3


@dataclass
class _Job:
    batch: claim.Batch
    destination: Destination
    probe: bool


class Worker:
    """One delivery worker. ``clock`` (epoch seconds) drives leases, due times, linger, backoff
    and the breaker, so tests can move time; the HTTP core keeps real time for its own waits.
    ``observer(batch, outcome)``, if given, is called after each batch is settled."""

    def __init__(self, runtime: Runtime, *, name: str | None = None,
                 threads: int | None = None, clock: Callable[[], float] = time.time,
                 observer: Callable[[claim.Batch, Outcome], None] | None = None,
                 tenant_id: str | None = None, **client_kwargs: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.threads = max(1, threads or self.settings.worker_threads)
        self.clock = clock
        self.observer = observer
        #: Claim only this tenant's rows (``python app.py sync``); None: every tenant's.
        self.tenant_id = tenant_id
        self.clients = ClientCache(runtime, **client_kwargs)
        self.breakers = Breakers(self.settings.breaker_failures,
                                 self.settings.breaker_cooldown_seconds, clock)
        self.backoff = RetryPolicy(backoff_base=self.settings.backoff_base_seconds,
                                   backoff_cap=self.settings.backoff_cap_seconds)
        self.wakeup = notify.Wakeup()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[tuple[str, str]] = set()
        self._paused: dict[tuple[str, str], float] = {}  # failed connections: until when
        self._not_before: dict[tuple[str, str], float] = {}  # budgets without room
        self._reported: set[tuple[str, str]] = set()  # failed connections said once
        self._cursor: str | None = None
        self._next_wake: float | None = None
        self._external_stop: threading.Event | None = None

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def seconds_until_ready(self) -> float | None:
        """Seconds until a lingering batch or a waiting budget becomes claimable, if any."""
        with self._lock:
            moments = [m for m in (self._next_wake, *self._not_before.values()) if m]
        return max(0.0, min(moments) - self.clock()) if moments else None

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Claim nothing more; sends in flight finish."""
        self._stopping.set()
        self.wakeup.set()

    def stopping(self) -> bool:
        external = self._external_stop
        return self._stopping.is_set() or (external is not None and external.is_set())

    def run_once(self) -> runs.Drain:
        """One drain pass: claim and send until nothing is claimable now; the drain's counts
        (also recorded in ``sync_runs`` when it did anything)."""
        drain = runs.Drain(worker=self.name, started_at=self.now())
        with ThreadPoolExecutor(self.threads, thread_name_prefix="relay-send") as pool:
            running: set[Future] = set()
            while True:
                while len(running) < self.threads and not self.stopping():
                    job = self._claim_next(drain)
                    if job is None:
                        break
                    running.add(pool.submit(self._deliver, job, drain))
                if not running:
                    break
                _, running = wait(running, return_when=FIRST_COMPLETED)
        if drain.busy:
            try:
                runs.record(self.runtime.engine, drain, self.now())
            except SQLAlchemyError:
                log.warning("could not record the drain (the database failed)", exc_info=True)
            self._log_drain(drain)
        return drain

    def _log_drain(self, drain: runs.Drain) -> None:
        """The drain's one structured line (``relay.drain``)."""
        totals = {name: drain.total(name) for name in runs.COUNTERS}
        logs.event(log, "relay.drain",
                   "drain: {sent} sent, {failed} to retry, {dead} dead".format(**totals),
                   worker=self.name, **totals,
                   seconds=round((self.now() - drain.started_at).total_seconds(), 3),
                   destinations=drain.counts, errors=drain.errors or None)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Drain passes until ``stop`` is set (or :meth:`stop` is called)."""
        stop = stop or self._stopping
        self._external_stop = stop
        failures = 0
        log.info("delivery worker %s started (%d sender threads, lease %gs)", self.name,
                 self.threads, self.settings.lease_seconds)
        while not self.stopping():
            try:
                self.run_once()
                failures = 0
            except Exception as exc:  # the database went away, or a bug: keep the loop alive
                failures += 1
                pause = min(10.0, 0.2 * 2 ** min(failures, 6))
                if isinstance(exc, SQLAlchemyError):
                    log.warning("delivery worker: the database failed (%s); again in %.1fs",
                                type(exc).__name__, pause)
                else:
                    log.exception("delivery worker: a drain failed; again in %.1fs", pause)
                stop.wait(pause)
                continue
            if self.stopping():
                break
            idle = self.settings.worker_poll_seconds
            ready = self.seconds_until_ready()
            if ready is not None:
                idle = min(idle, max(ready, 0.01))
            if self.wakeup.wait(idle):
                self.wakeup.clear()
                stop.wait(0.01)  # the waking transaction finishes its commit meanwhile
        self._stopping.set()
        self.clients.close()
        log.info("delivery worker %s stopped", self.name)

    # ------------------------------------------------------------------ claiming

    def _batch_size(self, group: claim.Group) -> int:
        return registry.get(group.connector).operations[group.operation].max_batch

    def _blocked(self, destination: tuple[str, str]) -> bool:
        now = self.clock()
        with self._lock:
            if destination in self._busy:
                return True
            if self._paused.get(destination, 0.0) > now:
                return True
            if self._not_before.get(destination, 0.0) > now:
                return True
            self._not_before.pop(destination, None)
        return self.breakers.blocked(destination)

    def _claim_next(self, drain: runs.Drain) -> _Job | None:
        now = self.now()
        with self.runtime.engine.connect() as conn:
            groups = claim.due_groups(conn, now)
            live = claim.live_priorities(conn, now) if groups else {}
        ordered, wake = choose.candidates(
            [g for g in groups if self._known(g)
             and (self.tenant_id is None or g.tenant_id == self.tenant_id)], now=now,
            linger_seconds=self.settings.batch_linger_seconds, batch_size=self._batch_size,
            live=live, blocked=self._blocked, after_tenant=self._cursor)
        with self._lock:
            self._next_wake = wake.timestamp() if wake else None
        for group in ordered:
            job = self._try_claim(group, now, drain)
            if job is not None:
                return job
        return None

    def _known(self, group: claim.Group) -> bool:
        """A group of an operation this release does not have stays queued (logged once).
        REST-hook rows are the hook sender's (:mod:`gateway.hooks.sender`), not this loop's."""
        if group.connector == HOOKS:
            return False
        try:
            registry.get(group.connector).operations[group.operation]
        except KeyError:
            self._report_once((group.tenant_id, group.connector),
                              f"no operation {group.connector} {group.operation}")
            return False
        return True

    def _try_claim(self, group: claim.Group, now: datetime, drain: runs.Drain
                   ) -> _Job | None:
        destination_key = group.destination
        try:
            destination = self.clients.get(*destination_key)
        except ConnectionUnavailable as exc:
            self._connection_failed(destination_key, str(exc), drain)
            return None
        budget = destination.budget
        if budget is not None:
            wait_for = budget.wait()
            if wait_for > 0:
                with self._lock:
                    self._not_before[destination_key] = self.clock() + wait_for
                return None
        probe = self.breakers.begin(destination_key)
        limit = 1 if probe else self._batch_size(group)
        with self._lock:
            if destination_key in self._busy:
                self.breakers.abandon(destination_key, probe)
                return None
            self._busy.add(destination_key)
        try:
            batch = claim.claim(self.runtime.engine, group, owner=self.name,
                                lease_seconds=self.settings.lease_seconds, now=now,
                                limit=limit)
        except BaseException:
            self._free(destination_key)
            self.breakers.abandon(destination_key, probe)
            raise
        if batch is None:
            self._free(destination_key)
            self.breakers.abandon(destination_key, probe)
            return None
        self._cursor = group.tenant_id
        return _Job(batch, destination, probe)

    def _free(self, destination: tuple[str, str]) -> None:
        with self._lock:
            self._busy.discard(destination)

    # ------------------------------------------------------------------ sending

    def _deliver(self, job: _Job, drain: runs.Drain) -> None:
        batch = job.batch
        try:
            operation = registry.get(batch.connector).operations[batch.operation]
            context = self._context(batch.tenant_id, job.destination)
            send_seconds = (batch.expires_at - self.now()).total_seconds() \
                - (1 - SEND_SHARE) * self.settings.lease_seconds
            outcome = send_batch(
                batch, operation, job.destination.client, context,
                deadline=time.time() + max(0.0, send_seconds),
                mark_sent=lambda ids: self._mark_sent(batch, ids),
                time_scale=self.settings.rate_time_scale)
            self._settle(job, outcome, drain)
            if self.observer is not None:
                self.observer(batch, outcome)
        except Exception:  # a bug or a lost database: the lease expires, the rows come back
            log.exception("delivery worker: batch of %d %s %s rows failed; they are claimed "
                          "again when the lease ends", len(batch.rows), batch.connector,
                          batch.operation)
            self.breakers.neutral(batch.destination, job.probe)
        finally:
            self._free(batch.destination)

    def _context(self, tenant_id: str, destination: Destination) -> dict[str, Any]:
        context: dict[str, Any] = {
            "consent_basis": self.runtime.cached_settings(tenant_id).consent_basis}
        currency = destination.options.get("currency")
        if currency:
            context["currency"] = currency
        return context

    def _mark_sent(self, batch: claim.Batch, ids: list[int]) -> None:
        for attempt in range(SETTLE_TRIES):
            try:
                with self.runtime.engine.begin() as conn:
                    claim.mark_sent(conn, batch, ids, self.now())
                return
            except SQLAlchemyError:
                if attempt == SETTLE_TRIES - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))

    # ------------------------------------------------------------------ settling

    def _settle(self, job: _Job, outcome: Outcome, drain: runs.Drain) -> None:
        for attempt in range(SETTLE_TRIES):
            try:
                counts = self._settle_once(job, outcome)
                break
            except SQLAlchemyError:
                if attempt == SETTLE_TRIES - 1:
                    raise
                log.warning("settling a batch failed (the database); trying again")
                time.sleep(0.1 * (attempt + 1))
        batch = job.batch
        key = batch.destination
        if outcome.service_down:
            self.breakers.failed(key, job.probe)  # logs relay.breaker_open when it opens
        elif outcome.answered:
            self.breakers.succeeded(key)
        else:
            self.breakers.neutral(key, job.probe)
        if outcome.connection_error:
            self._connection_failed(key, outcome.connection_error, drain)
        else:
            with self._lock:
                self._paused.pop(key, None)
                self._reported.discard(key)
        if outcome.release and outcome.release_after > 0:
            with self._lock:
                self._not_before[key] = self.clock() + outcome.release_after
        owned, sent, failed, dead = counts
        drain.add(batch.tenant_id, batch.connector, sent=sent, failed=failed, dead=dead)
        if dead:
            logs.event(log, "relay.dead_letter",
                       f"{dead} {batch.connector} {batch.operation} deliveries of tenant "
                       f"{batch.tenant_id} dead-lettered (python app.py deliveries list "
                       "--status dead)", level=logging.WARNING, tenant_id=batch.tenant_id,
                       connector=batch.connector, operation=batch.operation, count=dead,
                       refused_ids=sorted(outcome.dead)[:50] or None)
        if owned < len(batch.rows):
            log.warning("lease lost: %d of %d rows of a %s %s batch now belong to another "
                        "worker; this worker's outcome for them is dropped",
                        len(batch.rows) - owned, len(batch.rows), batch.connector,
                        batch.operation)

    def _settle_once(self, job: _Job, outcome: Outcome) -> tuple[int, int, int, int]:
        """Apply ``outcome`` with fencing; (rows still owned, sent, failed, dead)."""
        batch = job.batch
        now = self.now()
        owned = sent = failed = dead = 0
        with self.runtime.engine.begin() as conn:
            # Per-destination diff of the pulls (gateway.pulls.acknowledged): remember the
            # payload each service acknowledged, for rows still ours, before completing them.
            acknowledged.remember(conn, batch, outcome.done,
                                  self._context(batch.tenant_id, job.destination), now)
            sent = claim.complete(conn, batch, outcome.done, now)
            owned += sent
            if sent and outcome.answers:
                self._record_answers(conn, batch, outcome)
            dead = claim.dead(conn, batch, outcome.dead, now)
            owned += dead
            winners: dict[int, list[int]] = {}
            for row_id, winner in outcome.superseded.items():
                winners.setdefault(winner, []).append(row_id)
            for winner, ids in winners.items():
                owned += claim.cancel_superseded(conn, batch, ids, now, winner)
            if outcome.retry:
                attempt = 1 + max(row.attempt for row in batch.rows if row.id in outcome.retry)
                delay = self.backoff.delay(attempt, outcome.retry_after)
                next_at = now + timedelta(seconds=delay)
                if job.probe:  # the breaker is open: an outage costs no attempts
                    owned += claim.release(conn, batch, outcome.retry, now=now,
                                           next_attempt_at=next_at, error=outcome.retry_error)
                else:
                    retried, exhausted = claim.retry(
                        conn, batch, outcome.retry, error=outcome.retry_error, now=now,
                        next_attempt_at=next_at, max_attempts=self.settings.max_attempts,
                        oldest=now - timedelta(seconds=self.settings.max_age_seconds))
                    owned += retried + exhausted
                    failed += retried
                    dead += exhausted
            if outcome.release:
                after = outcome.release_after
                if outcome.connection_error:
                    after = self.settings.connection_pause_seconds
                owned += claim.release(conn, batch, outcome.release, now=now,
                                       next_attempt_at=now + timedelta(seconds=after),
                                       error=outcome.release_error)
        return owned, sent, failed, dead

    def _record_answers(self, conn: Any, batch: claim.Batch, outcome: Outcome) -> None:
        handler = answers.handler_for(batch.connector, batch.operation)
        if handler is None:
            return
        rows = {row.id: row for row in batch.rows}
        for row_id, answer in outcome.answers.items():
            row = rows[row_id]
            handler(conn, batch.tenant_id, row.subject_id, row.record_key, answer)

    # ------------------------------------------------------------------ failed connections

    def _connection_failed(self, destination: tuple[str, str], message: str,
                           drain: runs.Drain | None = None) -> None:
        """Pause the destination; say so once per failure (log, and the drain's error)."""
        with self._lock:
            self._paused[destination] = self.clock() + self.settings.connection_pause_seconds
        first = self._report_once(destination, message)
        if first and drain is not None:
            drain.error(destination[0], f"{destination[1]}: {message}")

    def _report_once(self, destination: tuple[str, str], message: str) -> bool:
        with self._lock:
            if destination in self._reported:
                return False
            self._reported.add(destination)
        log.warning("deliveries to %s for tenant %s wait: %s", destination[1], destination[0],
                    message)
        return True


def start_in_thread(runtime: Runtime, **kwargs: Any) -> tuple[Worker, threading.Thread]:
    """A worker running in a daemon thread of this process (the embedded ``serve``); stop it
    with ``worker.stop()`` then ``thread.join()``."""
    worker = Worker(runtime, **kwargs)
    thread = threading.Thread(target=worker.run_forever, name="relay-worker", daemon=True)
    thread.start()
    return worker, thread
