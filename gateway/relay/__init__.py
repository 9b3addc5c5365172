"""The relay: outbox, routes (which event goes where), retry policy, schedules.

:func:`plan_deliveries` is where every event-writing transaction (ingest, the scoring passes,
the services' answers) writes the delivery rows its events call for: the routes
(:mod:`gateway.relay.routes`) decide, the outbox (:mod:`gateway.relay.outbox`) queues, in the
caller's transaction. :func:`plan_journey_cancel` is the cancel-journeys action's entry.
Importing this package registers the routes' answer handlers (:mod:`.routes_answers`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import Connection

from gateway.model import Event, normalise_email
from gateway.relay import routes_answers


def plan_deliveries(conn: Connection, tenant_id: str, events: Sequence[Event], *,
                    erased: Mapping[str, Any] | None = None) -> None:
    """Write, in the caller's transaction, the delivery rows the tenant's routes plan from
    ``events`` (a transactional outbox: a record is sent only if it was stored, and a stored
    record is never lost).

    :func:`gateway.ingest.ingest` calls this once, last, with every event it wrote (record
    events and re-score events alike). Only routes the tenant has on, to services it has
    connected, plan anything (:class:`~gateway.relay.routes_planning.RoutePlanner`); the
    tenant's switches and connections are read in one query, and not at all when ``events``
    is empty. ``erased`` maps each customer erased in this transaction to its identity before
    the wipe (e.g. the :class:`gateway.store.erasure.ErasureResult`, with ``emails`` and
    ``external_ids``): the erasure route needs it for the services' deletes.
    """
    if not events:
        return
    from gateway.hooks.planning import plan_hook_deliveries
    from gateway.relay.routes_planning import RoutePlanner

    RoutePlanner.open(conn, tenant_id, erased=erased).plan(events)
    plan_hook_deliveries(conn, tenant_id, events)  # REST-hook subscribers of these events


def plan_journey_cancel(conn: Connection, tenant_id: str, email: str, *,
                        customer_id: str | None = None) -> bool:
    """Queue Rejoiner's ``journeys.cancel`` for ``email`` in the caller's transaction (priority
    win-back: before the customer's other queued Rejoiner writes). ``customer_id`` (looked up
    by email when not given) is the row's subject, so an erasure of that customer keeps it.
    False, and nothing queued, when the tenant has no Rejoiner connection. A bad email is a
    ``ValueError``."""
    from gateway.relay.outbox import enqueue
    from gateway.relay.planned import WINBACK, PlannedDelivery
    from gateway.relay.routes_context import open_context
    from gateway.store.records import customer_id_for

    address = normalise_email(email)
    if not address:
        raise ValueError("a journey cancel needs the customer's email")
    if not open_context(conn, tenant_id).is_connected("rejoiner"):
        return False
    subject = customer_id or customer_id_for(conn, tenant_id, email=address)
    enqueue(conn, tenant_id, [PlannedDelivery("rejoiner", "journeys.cancel", address,
                                              subject_id=subject, priority=WINBACK)])
    return True


routes_answers.install()

__all__ = ["plan_deliveries", "plan_journey_cancel"]
