"""What the routes do with the services' answers (registered in :mod:`gateway.relay.answers`).

The worker calls these inside the transaction that marks the delivered row done, so what they
record commits with the row or not at all; a resend gives them the same answer again, and both
are idempotent.

- **Rekindle's update-customer** answers with its re-scored customer (status, engagement score)
  and ``returned``: :func:`gateway.scoring.apply_rekindle_answer` keeps it, and where Rekindle
  is the tenant's scoring authority turns a new status into ``customer.status_changed`` and
  ``returned: true`` into ``customer.returned``. Those events are planned at once, in the same
  transaction, like any other (the win-back route takes them). No route sends a status or a
  return back to Rekindle, so this never loops. The status and the return the answer reports
  are recorded as seen in the ``rekindle-poll`` dedupe scopes
  (:func:`gateway.pulls.echo.record_answer`), whatever the scoring authority, so the poll that
  reads them back from Rekindle's triggers takes them for the gateway's own echo.
- **Rejoiner's profile write** answers with the stored profile. When it holds ``gw:winback``
  and the customer is still in a win-back journey whose message start is not recorded yet,
  :func:`gateway.scoring.record_winback` records it now: the tag reaching Rejoiner *is* the
  win-back message start that attribution counts (the design's choice), so it is recorded
  when delivered, not when planned - a Rejoiner outage does not open a window for a message
  that has not started. Later profile writes that still carry the tag record nothing more;
  a new lapse (``lapsed`` -> ``lost``) starts a new message.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from sqlalchemy import Connection, select

from gateway.pulls.echo import record_answer
from gateway.relay import answers
from gateway.relay.routes_context import WinbackState
from gateway.relay.routes_planners import WINBACK_TAG
from gateway.scoring.customer import apply_rekindle_answer, record_winback
from gateway.store.tables import customers

log = logging.getLogger("gateway.relay")


def rekindle_answered(conn: Connection, tenant_id: str, subject_id: str | None,
                      record_key: str | None, answer: Any) -> None:
    """Record Rekindle's answer about the customer, and plan the events it gives."""
    from gateway.relay import plan_deliveries  # the package's entry (it imports this module)

    if not subject_id:
        return
    try:
        customer, returned = answer
        status, score = customer.status, customer.engagement_score
    except (TypeError, ValueError, AttributeError):
        log.warning("rekindle: an answer that is not (customer, returned) was ignored")
        return
    try:
        written = apply_rekindle_answer(conn, tenant_id, subject_id, status=status,
                                        engagement_score=score, returned=returned is True)
    except ValueError as exc:  # a status the gateway does not know
        log.warning("rekindle: answer for customer %s not recorded: %s", subject_id, exc)
        return
    returned_at = getattr(customer, "returned_at", None) if returned is True else None
    record_answer(conn, tenant_id, subject_id, status=status, returned_at=returned_at)
    if written:
        plan_deliveries(conn, tenant_id, written)


def rejoiner_profile_written(conn: Connection, tenant_id: str, subject_id: str | None,
                             record_key: str | None, answer: Any) -> None:
    """Record the win-back message start when Rejoiner took the ``gw:winback`` tag."""
    if not subject_id or not isinstance(answer, Mapping):
        return
    tags = answer.get("tags")
    if not isinstance(tags, list) or WINBACK_TAG not in tags:
        return
    row = conn.execute(select(
        customers.c.status, customers.c.status_changed_at, customers.c.returned_at,
        customers.c.winback_started_at, customers.c.redacted_at).where(
        customers.c.tenant_id == tenant_id, customers.c.id == subject_id)).first()
    if row is None or row.redacted_at is not None:
        return
    state = WinbackState(row.status, row.status_changed_at, row.returned_at,
                         row.winback_started_at)
    if state.in_winback and not state.message_recorded:
        record_winback(conn, tenant_id, subject_id)


#: The handlers the routes register: (connector, operation) -> handler.
HANDLERS: dict[tuple[str, str], answers.AnswerHandler] = {
    ("rekindle", "customers.upsert"): rekindle_answered,
    ("rejoiner", "customers.upsert"): rejoiner_profile_written,
}


def install() -> None:
    """Register the routes' answer handlers (idempotent; done when :mod:`gateway.relay` is
    imported, so every worker process has them)."""
    for (connector, operation), handler in HANDLERS.items():
        answers.register(connector, operation, handler)
