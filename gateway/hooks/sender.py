"""The hook sender: claims due hook deliveries under leases and POSTs them to their targets.

It reuses the delivery engine's claiming (:mod:`gateway.relay.claim`: the same leases, fencing
and ``FOR UPDATE SKIP LOCKED``) on the ``deliveries`` rows whose connector is ``hooks``; the
relay worker does not send those (they are no connector of the registry). One claim is one
subscription's due rows, at most what the target's throttle has room for now
(:mod:`.throttle`). Each post is signed afresh with the time of its attempt (:mod:`.signing`)
and goes through :func:`gateway.netguard.guarded_session`: the target's address is checked
when each connection is opened (a fresh session per claim, so no connection opened under
another allowance is reused) and a redirect is never followed.

==========================  ===============================================================
the target answers          what happens
==========================  ===============================================================
2xx                         done; the subscription's failure run ends
410 Gone                    the subscription is deleted and its queued rows cancelled
429 with ``Retry-After``    back in the queue at that time, the attempt not counted; the
                            target is held until then
anything else, a 3xx, no    a failed attempt: retried after the schedule's next wait (with
answer, a refused address   jitter), dead after the last; the rest of the claim waits too
==========================  ===============================================================

A failure starts (or continues) the subscription's failure run; a subscription whose run has
lasted ``disable_after_seconds`` is disabled, its queued rows cancelled, and a
``hook.disabled`` event written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets as _secrets
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from sqlalchemy import and_, update

from gateway import netguard
from gateway.crypto import CredentialsError
from gateway.hooks import HOOKS
from gateway.hooks import store as hook_store
from gateway.hooks.config import HookSettings
from gateway.hooks.planning import plan_hook_deliveries
from gateway.hooks.signing import signed_headers
from gateway.hooks.throttle import TargetThrottle
from gateway.model import Event
from gateway.relay import claim, notify
from gateway.runtime import Runtime
from gateway.store import tenants as tenant_store
from gateway.store.events import append_events
from gateway.store.tables import deliveries

log = logging.getLogger("gateway.hooks")

USER_AGENT = "retention-gateway-hooks/1"
#: The most rows one claim takes.
MAX_CLAIM = 50
_LONG_AGO = datetime(1970, 1, 2, tzinfo=timezone.utc)


@dataclass
class Attempt:
    """What one post came to: ``ok``, ``gone`` (410), ``wait`` (429 with a Retry-After of
    ``retry_after`` seconds) or ``failed`` (``error`` says why)."""

    kind: str
    error: str = ""
    retry_after: float | None = None


@dataclass
class _Job:
    batch: claim.Batch
    subscription: hook_store.Subscription
    target: str


@dataclass
class SendReport:
    """What a pass did, by row id."""

    done: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # subscriptions (a 410)
    disabled: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return any((self.done, self.retried, self.dead, self.waiting, self.cancelled))


def target_key(url: str) -> str:
    """What the throttle counts per: the target's host and port."""
    parts = urlsplit(url)
    return (parts.netloc or url).lower()


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (delta seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - now)


def _refusal(exc: BaseException) -> netguard.TargetRefused | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, netguard.TargetRefused):
            return current
        seen.add(id(current))
        for arg in getattr(current, "args", ()):
            if isinstance(arg, netguard.TargetRefused):
                return arg
        reason = getattr(current, "reason", None)
        if isinstance(reason, netguard.TargetRefused):
            return reason
        current = current.__cause__ or current.__context__ or (
            reason if isinstance(reason, BaseException) else None)
    return None


class HookSender:
    """Sends due hook deliveries. ``clock`` (epoch seconds) drives due times, leases, the
    throttle, the signatures' timestamps and the failure runs, so tests can move time;
    ``resolver`` is the guard's resolver (the system's by default); ``rng`` the jitter;
    ``threads`` how many subscriptions' claims are sent at once."""

    def __init__(self, runtime: Runtime, *, config: HookSettings | None = None,
                 clock: Callable[[], float] = time.time, name: str | None = None,
                 resolver: netguard.Resolver | None = None,
                 rng: Callable[[], float] = random.random, threads: int = 4) -> None:
        self.runtime = runtime
        self.config = config or HookSettings.from_env()
        self.clock = clock
        self.name = name or f"hooks:{socket.gethostname()}:{os.getpid()}:" \
                            f"{_secrets.token_hex(3)}"
        self.resolver = resolver
        self.rng = rng
        self.threads = max(1, threads)
        self.throttle = TargetThrottle(self.config.rate_per_second, clock)
        self.wakeup = notify.Wakeup()
        self._stop = threading.Event()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    # ------------------------------------------------------------------ the loop

    def run_once(self) -> SendReport:
        """Send what is due now and the throttle allows, up to ``threads`` subscriptions at
        once (one claim per target host at a time); a subscription whose post failed is not
        tried again in this pass."""
        report = SendReport()
        failed: set[tuple[str, str]] = set()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="hook-send") as pool:
            running: dict[Future, _Job] = {}
            while True:
                while len(running) < self.threads:
                    job = self._claim_next(failed, {j.target for j in running.values()},
                                           report)
                    if job is None:
                        break
                    running[pool.submit(self._send_job, job, report)] = job
                if not running:
                    return report
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    if not future.result():
                        failed.add((job.batch.tenant_id, job.batch.operation))

    def run_forever(self, stop: threading.Event | None = None, poll_seconds: float = 0.5
                    ) -> None:
        """Passes until ``stop`` is set; woken when this process queues deliveries."""
        stop = stop or self._stop
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a lost database: the leases expire, the rows come back
                log.exception("hook sender: a pass failed; trying again")
            wait = poll_seconds
            ready = self.throttle.ready_in()
            if ready is not None:
                wait = min(wait, max(ready, 0.01))
            if self.wakeup.wait(wait):
                self.wakeup.clear()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()

    # ------------------------------------------------------------------ one subscription

    def _claim_next(self, failed: set[tuple[str, str]], busy: set[str],
                    report: SendReport) -> "_Job | None":
        """Claim the next subscription's due rows whose target has room and no claim in
        flight; rows of a deleted or disabled subscription are cancelled on the way."""
        engine = self.runtime.engine
        now = self.now()
        with engine.connect() as conn:
            groups = [g for g in claim.due_groups(conn, now)
                      if g.connector == HOOKS and (g.tenant_id, g.operation) not in failed]
        for group in sorted(groups, key=lambda g: g.due_since):
            with engine.connect() as conn:
                sub = hook_store.get_subscription(conn, group.tenant_id, group.operation)
            if sub is None or sub.status != "active":
                self._cancel_group(group, sub, report)
                continue
            target = target_key(sub.target_url)
            if target in busy:
                continue
            room = self.throttle.room(target)
            if room <= 0:
                continue
            batch = claim.claim(engine, group, owner=self.name,
                                lease_seconds=self.config.lease_seconds, now=self.now(),
                                limit=min(room, MAX_CLAIM))
            if batch is None:
                continue
            granted = self.throttle.reserve(target, len(batch.rows))
            if granted < len(batch.rows):  # another thread's sends took the room meanwhile
                with engine.begin() as conn:
                    claim.release(conn, batch, batch.ids[granted:], now=self.now(),
                                  next_attempt_at=self.now())
                batch.rows = batch.rows[:granted]
                if not batch.rows:
                    continue
            return _Job(batch, sub, target)
        return None

    def _cancel_group(self, group: claim.Group, sub: hook_store.Subscription | None,
                      report: SendReport) -> None:
        batch = claim.claim(self.runtime.engine, group, owner=self.name,
                            lease_seconds=self.config.lease_seconds, now=self.now(),
                            limit=MAX_CLAIM)
        if batch is None:
            return
        reason = "the subscription was deleted" if sub is None \
            else "the subscription is disabled"
        with self.runtime.engine.begin() as conn:
            self._cancel(conn, batch, batch.ids, reason)
        report.cancelled.extend(batch.ids)

    def _send_job(self, job: "_Job", report: SendReport) -> bool:
        """Send one claim; whether every post succeeded. A failure of the gateway itself (a
        lost database) is logged, and the lease's expiry brings the rows back."""
        sub, batch = job.subscription, job.batch
        try:
            with self.runtime.engine.connect() as conn:
                try:
                    secret = hook_store.secret_of(conn, self.runtime.vault, sub.tenant_id,
                                                  sub.id)
                except CredentialsError:  # GATEWAY_SECRET_KEY changed without the old key
                    secret = None
                allowed = self._private_allowed(conn, sub.tenant_id)
            if not secret:
                first, *rest = batch.rows
                self._settle_failure(batch, sub, first, [r.id for r in rest], Attempt(
                    "failed", "the signing secret cannot be decrypted with "
                              "GATEWAY_SECRET_KEY"), report)
                return False
            session = netguard.guarded_session(allow_private=allowed, resolver=self.resolver)
            try:
                return self._send_rows(batch, sub, secret, session, report)
            finally:
                session.close()
        except Exception:
            log.exception("hook sender: %d rows of hook %s failed; they come back when the "
                          "lease ends", len(batch.rows), sub.id)
            return False

    def _private_allowed(self, conn: Any, tenant_id: str) -> bool:
        """Read now, not cached: a changed setting applies to the next claim."""
        if self.runtime.settings.allow_private_targets:
            return True
        return bool(tenant_store.get_settings(conn, tenant_id).allow_private_targets)

    def _send_rows(self, batch: claim.Batch, sub: hook_store.Subscription, secret: str,
                   session: requests.Session, report: SendReport) -> bool:
        for position, row in enumerate(batch.rows):
            rest = [r.id for r in batch.rows[position + 1:]]
            payload = row.payload if isinstance(row.payload, dict) else {}
            body = json.dumps(payload.get("body", {}), separators=(",", ":"),
                              ensure_ascii=False)
            at = self.clock()
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       **signed_headers(secret, str(payload.get("event_id", row.record_key)),
                                        body, at)}
            attempt = self._post(session, sub.target_url, body, headers, at)
            if attempt.kind == "ok":
                with self.runtime.engine.begin() as conn:
                    if claim.complete(conn, batch, [row.id], self.now()):
                        report.done.append(row.id)
                    hook_store.record_success(conn, sub.tenant_id, sub.id, self.now())
                continue
            self._settle_failure(batch, sub, row, rest, attempt, report)
            return False
        return True

    def _post(self, session: requests.Session, url: str, body: str,
              headers: dict[str, str], at: float) -> Attempt:
        host = urlsplit(url).hostname or "?"
        try:
            response = session.post(url, data=body.encode(), headers=headers,
                                    timeout=self.config.timeout_seconds, allow_redirects=False,
                                    stream=True)
        except Exception as exc:  # refused, unreachable, timed out: a failed attempt
            refused = _refusal(exc)
            if refused is not None:
                return Attempt("failed", f"the target was refused: {refused.reason}")
            return Attempt("failed", f"could not post to {host}: {type(exc).__name__}")
        try:
            status = response.status_code
            if 200 <= status < 300:
                return Attempt("ok")
            if status == 410:
                return Attempt("gone", "the target answered 410 Gone")
            if status == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"), at)
                if wait is not None:
                    return Attempt("wait", "the target answered 429", wait)
                return Attempt("failed", "the target answered 429 without Retry-After")
            if 300 <= status < 400:
                return Attempt("failed", f"the target answered {status} (a redirect, which "
                                         "is not followed)")
            return Attempt("failed", f"the target answered {status}")
        finally:
            response.close()

    # ------------------------------------------------------------------ settling

    def _fenced(self, batch: claim.Batch, ids: list[int]) -> Any:
        d = deliveries.c
        return and_(d.tenant_id == batch.tenant_id, d.id.in_(ids), d.status == "in_flight",
                    d.lease_token == batch.token)

    def _cancel(self, conn: Any, batch: claim.Batch, ids: list[int], reason: str) -> int:
        if not ids:
            return 0
        return conn.execute(update(deliveries).where(self._fenced(batch, ids)).values(
            status="cancelled", last_error=json.dumps({"error": reason}),
            lease_expires_at=None, updated_at=self.now())).rowcount

    def _delay(self, attempt: int) -> float:
        schedule = self.config.retry_schedule
        base = schedule[min(attempt, len(schedule) - 1)] if schedule else 0.0
        jitter = self.config.jitter
        return max(0.0, base * (1 - jitter + 2 * jitter * self.rng()))

    def _settle_failure(self, batch: claim.Batch, sub: hook_store.Subscription,
                        row: claim.ClaimedRow, rest: list[int], attempt: Attempt,
                        report: SendReport) -> None:
        now = self.now()
        error = json.dumps({"error": attempt.error})
        with self.runtime.engine.begin() as conn:
            if attempt.kind == "gone":
                self._cancel(conn, batch, [row.id, *rest], attempt.error)
                hook_store.delete_subscription(conn, sub.tenant_id, sub.id,
                                               reason="the target answered 410 Gone: the "
                                                      "subscription was deleted", now=now)
                report.cancelled.extend([row.id, *rest])
                report.deleted.append(sub.id)
                return
            if attempt.kind == "wait":
                until = now + timedelta(seconds=attempt.retry_after or 0.0)
                self.throttle.hold(target_key(sub.target_url), until.timestamp())
                claim.release(conn, batch, [row.id, *rest], now=now, next_attempt_at=until,
                              error=error)
                report.waiting.extend([row.id, *rest])
            else:
                until = now + timedelta(seconds=self._delay(row.attempt))
                retried, dead = claim.retry(conn, batch, [row.id], error=error, now=now,
                                            next_attempt_at=until,
                                            max_attempts=self.config.max_attempts,
                                            oldest=_LONG_AGO)
                (report.retried if retried else report.dead).append(row.id)
                claim.release(conn, batch, rest, now=now, next_attempt_at=until)
                report.waiting.extend(rest)
            since = hook_store.record_failure(conn, sub.tenant_id, sub.id, attempt.error, now)
            if since is not None and (now - since).total_seconds() \
                    >= self.config.disable_after_seconds:
                self._disable(conn, sub, since, attempt.error, now, report)

    def _disable(self, conn: Any, sub: hook_store.Subscription, since: datetime, error: str,
                 now: datetime, report: SendReport) -> None:
        reason = (f"disabled: the target has failed since {since.isoformat()} "
                  f"(last: {error})")
        if not hook_store.disable(conn, sub.tenant_id, sub.id, reason, now):
            return
        report.disabled.append(sub.id)
        item = {"hook_id": sub.id, "event": sub.event,
                "target_host": urlsplit(sub.target_url).hostname,
                "failing_since": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason": error}
        [event_id] = append_events(conn, sub.tenant_id, [("hook.disabled", sub.id, item)],
                                   occurred_at=now, source="gateway")
        event = Event(id=event_id, tenant_id=sub.tenant_id, type="hook.disabled",
                      subject_id=sub.id, occurred_at=now, source="gateway",
                      item={"id": event_id, **item})
        from gateway.relay import plan_deliveries

        plan_deliveries(conn, sub.tenant_id, [event])
        plan_hook_deliveries(conn, sub.tenant_id, [event], now=now)
        log.warning("hook %s of tenant %s disabled: failing since %s", sub.id, sub.tenant_id,
                    since.isoformat())


def start_in_thread(runtime: Runtime, **kwargs: Any) -> tuple[HookSender, threading.Thread]:
    """A sender running in a daemon thread; stop it with ``sender.stop()`` then ``join()``."""
    sender = HookSender(runtime, **kwargs)
    thread = threading.Thread(target=sender.run_forever, name="hook-sender", daemon=True)
    thread.start()
    return sender, thread
