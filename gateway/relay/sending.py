"""Sending one claimed batch and saying what became of each row (:class:`Outcome`).

The records are rebuilt from their payloads and handed to the connector operation's
``send(client, records, context)`` inside a deadline (the HTTP core's
:func:`~connectors.http.deadline_scope`) that ends before the lease does, rate-budget waits and
the core's retries included, so a live worker never loses a row it is still sending. Then the
connectors' error table (:func:`connectors.http.decide`) decides:

=====================================  ===================================================
what happened                          the rows
=====================================  ===================================================
``WriteResult``                        done, except those in ``rejected``: dead, each
                                       with the service's field errors
retriable (5xx, timeouts, resets,      retried later with backoff (an attempt counted);
429 after the core's own retries)      5xx and transport failures also feed the breaker
the deadline came while waiting for    back in the queue, no attempt counted, due when the
the rate budget (nothing was sent)     budget has room
a validation error naming records      those dead; the rest back in the queue at once
                                       without an attempt counted (resent)
another record refusal                 dead, with the service's answer
the connection failed (auth, a bad     back in the queue, no attempt counted; the worker
setting, no connection)                pauses that connection and reports it once
a payload that does not read back      that row dead
=====================================  ===================================================

Writes that are not idempotent at the service (Rejoiner's convert) go one record at a time,
and each success is recorded (``sent_at``, its own small transaction) before the next is sent:
a row the service already accepted is completed without sending it again, whether its worker
died, stalled past its lease or lost the database before completing it. What this cannot
close: a process killed in the milliseconds between Rejoiner's 200 and that commit resends the
convert, which converts twice. Rejoiner takes no idempotency key and lists no conversions (the
sandbox's activity record is the sandbox's own), so the gateway cannot ask; recording before
sending instead would make a crash lose the purchase (at most once), which is worse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from connectors.base import Operation, WriteResult
from connectors.http import (
    DeadlineExceeded,
    Decision,
    RateLimited,
    RetriableError,
    ServerError,
    TransportError,
    ValidationError,
    deadline_scope,
    decide,
)
from gateway.relay import payloads
from gateway.relay.claim import Batch, ClaimedRow
from gateway.relay.planned import NEVER_COALESCED, NOT_IDEMPOTENT


@dataclass
class Outcome:
    """What became of a batch's rows (by row id)."""

    done: list[int] = field(default_factory=list)
    dead: dict[int, str] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)
    retry_error: str = ""
    retry_after: float | None = None  # seconds the service asked for (wall clock)
    release: list[int] = field(default_factory=list)
    release_error: str | None = None
    release_after: float = 0.0  # seconds from now
    superseded: dict[int, int] = field(default_factory=dict)  # row -> the row sent instead
    connection_error: str | None = None
    service_down: bool = False  # a 5xx or transport failure: feeds the breaker
    answered: bool = False  # the service answered something: closes a breaker
    answers: dict[int, Any] = field(default_factory=dict)


def error_text(error: BaseException, **extra: Any) -> str:
    """A delivery's ``last_error``: JSON with the message, and the service's status and answer
    where there was one."""
    body: dict[str, Any] = {"error": str(error) or type(error).__name__}
    status = getattr(error, "status", None)
    if status is not None:
        body["status"] = status
    answer = getattr(error, "body", None)
    if answer is not None:
        body["answer"] = answer
    field_errors = getattr(error, "field_errors", None)
    if field_errors:
        body["errors"] = field_errors
    body.update(extra)
    return json.dumps(body, default=str)


def rejection_text(connector: str, errors: Mapping[str, Any]) -> str:
    return json.dumps({"error": f"{connector} refused the record", "errors": errors},
                      default=str)


def send_batch(batch: Batch, operation: Operation, client: Any, context: Mapping[str, Any],
               *, deadline: float, mark_sent: Callable[[list[int]], None],
               time_scale: float = 1.0) -> Outcome:
    """Send ``batch`` and classify every row (see the module docstring). ``deadline`` is in
    epoch seconds; ``mark_sent(ids)`` records accepted rows of non-idempotent writes at once.
    """
    outcome = Outcome()
    rows, records = _decode(batch.rows, outcome)
    if (batch.connector, batch.operation) not in NEVER_COALESCED:
        rows, records = _newest_per_record(rows, records, outcome)
    if not rows:
        return outcome
    with deadline_scope(deadline):
        if (batch.connector, batch.operation) in NOT_IDEMPOTENT:
            _send_one_by_one(batch, operation, client, context, rows, records, outcome,
                             mark_sent, time_scale)
        else:
            _send_together(batch, operation, client, context, rows, records, outcome,
                           time_scale)
    return outcome


def _decode(rows: Sequence[ClaimedRow], outcome: Outcome
            ) -> tuple[list[ClaimedRow], list[Any]]:
    kept, records = [], []
    for row in rows:
        try:
            records.append(payloads.load(row.payload))
        except payloads.PayloadError as exc:
            outcome.dead[row.id] = json.dumps({"error": str(exc)})
            continue
        kept.append(row)
    return kept, records


def _newest_per_record(rows: list[ClaimedRow], records: list[Any], outcome: Outcome
                       ) -> tuple[list[ClaimedRow], list[Any]]:
    """One row per record key (the newest: the highest id); the others are superseded."""
    newest: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.record_key is None:
            continue
        previous = newest.get(row.record_key)
        if previous is None or rows[previous].id < row.id:
            newest[row.record_key] = index
    keep = []
    for index, row in enumerate(rows):
        winner = newest.get(row.record_key) if row.record_key is not None else index
        if winner == index:
            keep.append(index)
        else:
            outcome.superseded[row.id] = rows[winner].id
    return [rows[i] for i in keep], [records[i] for i in keep]


def _send_together(batch: Batch, operation: Operation, client: Any,
                   context: Mapping[str, Any], rows: list[ClaimedRow], records: list[Any],
                   outcome: Outcome, time_scale: float) -> None:
    try:
        result = operation.send(client, records, context)
    except Exception as exc:  # classified by the error table, never raised further
        _failed(batch, rows, exc, outcome, time_scale)
        return
    _settle_result(batch, rows, result, outcome)


def _send_one_by_one(batch: Batch, operation: Operation, client: Any,
                     context: Mapping[str, Any], rows: list[ClaimedRow], records: list[Any],
                     outcome: Outcome, mark_sent: Callable[[list[int]], None],
                     time_scale: float) -> None:
    for position, (row, record) in enumerate(zip(rows, records)):
        if row.sent_at is not None:  # accepted before a crash: do not send it again
            outcome.done.append(row.id)
            continue
        try:
            result = operation.send(client, [record], context)
        except Exception as exc:
            _failed(batch, rows[position:], exc, outcome, time_scale)
            return
        if not result.rejected:
            mark_sent([row.id])
        _settle_result(batch, [row], result, outcome)


def _settle_result(batch: Batch, rows: list[ClaimedRow], result: WriteResult,
                   outcome: Outcome) -> None:
    outcome.answered = True
    for index, row in enumerate(rows):
        if index in result.rejected:
            outcome.dead[row.id] = rejection_text(batch.connector, result.rejected[index])
            continue
        outcome.done.append(row.id)
        if index in result.answers:
            outcome.answers[row.id] = result.answers[index]


def _failed(batch: Batch, rows: list[ClaimedRow], error: BaseException, outcome: Outcome,
            time_scale: float) -> None:
    ids = [row.id for row in rows]
    decision = decide(error)
    if decision is Decision.RETRY:
        cause = error.__cause__ if isinstance(error, DeadlineExceeded) else error
        if isinstance(error, DeadlineExceeded) and cause is None:
            # Nothing was sent: the time ran out waiting (for the rate budget, or a pause).
            outcome.release.extend(ids)
            outcome.release_after = max(outcome.release_after, error.retry_after or 0.0)
            return
        outcome.retry.extend(ids)
        outcome.retry_error = error_text(error)
        if isinstance(cause, RateLimited):
            outcome.answered = True  # the service is up; it asked us to slow down
        elif isinstance(cause, (ServerError, TransportError)) or not isinstance(
                cause, RetriableError):
            outcome.service_down = True
        if isinstance(error, DeadlineExceeded):
            outcome.retry_after = error.retry_after  # wall seconds already
        elif isinstance(error, RetriableError) and error.retry_after is not None:
            outcome.retry_after = error.retry_after / time_scale
        return
    if decision is Decision.FAIL:
        outcome.release.extend(ids)
        outcome.connection_error = str(error) or type(error).__name__
        outcome.release_error = error_text(error)
        return
    outcome.answered = True
    named = error.by_record if isinstance(error, ValidationError) else {}
    named = {i: errors for i, errors in named.items() if 0 <= i < len(rows)}
    if not named:
        for row_id in ids:
            outcome.dead[row_id] = error_text(error)
        return
    for index, row in enumerate(rows):
        if index in named:
            outcome.dead[row.id] = rejection_text(batch.connector, named[index])
        else:
            outcome.release.append(row.id)  # resent at once: nothing was wrong with it
