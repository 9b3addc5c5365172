"""The routes' planners: what each canonical event becomes at each connected destination.

A planner is ``plan(conn, tenant_id, event, context) -> [PlannedDelivery]``; the table that
names which planner takes which events is :data:`gateway.relay.routes.ROUTES`. Planners read
the records as stored now (after every write of the transaction), so a delivery always carries
the newest state; each delivery's ``version`` is the event's id (the same event planned twice
queues once) and its ``subject_id`` the customer it is about (an erasure cancels by it).

Rules every planner follows:

- **Connected only**: nothing is planned for a service the tenant has no connection to.
- **Consent basis** (Replenit): a customer, and that customer's orders, go to Replenit only
  when the tenant's ``consent_basis`` is ``lawful_basis`` or the customer's
  ``consent.gdpr_processing`` is ``True`` (:func:`replenit_allows`); Replenit's mapping then
  says ``GdprOptin`` from the same basis, so it is never ``true`` without one.
- **Keys**: Rekindle and Rejoiner key customers by email (a customer without one is not sent
  there); Rekindle also requires a name (a customer without one waits until it has one,
  rather than dead-lettering every write).
- **Rejoiner's profile** is the stored customer with the gateway's own ``gw:`` tags: the
  derived ones (status, grade, RFM, segments: the connector's mapping) and ``gw:winback`` while
  the customer is in a win-back journey (lapsed or lost, not returned since:
  :attr:`~gateway.relay.routes_context.WinbackState.in_winback`) and the ``winback`` route is
  on. Every Rejoiner profile write says the tag, so a profile refresh never drops it early
  nor keeps it late; the shop's own tags and metadata keys are kept by the connector's
  read-merge-write.
- **Redacted customers** get nothing but the erasure route's deletes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection

from gateway.model import Customer, Event, Order
from gateway.relay import erasures
from gateway.relay.planned import CONSENT, ORDERS, WINBACK, PlannedDelivery
from gateway.relay.routes_context import PlanContext
from gateway.scoring.rules import WINBACK_STATUSES

#: The tag that puts a customer in Rejoiner's win-back journey (the gateway owns it).
WINBACK_TAG = "gw:winback"
#: How many of a customer's orders are sent to Replenit when they consent to processing.
BACKFILL_ORDERS = 1000


def replenit_allows(customer: Customer, context: PlanContext) -> bool:
    """May Replenit receive this customer (and their orders) under the consent basis?"""
    if customer.redacted_at is not None:
        return False
    if context.settings.consent_basis == "lawful_basis":
        return True
    return customer.consent.gdpr_processing is True


def rejoiner_profile(conn: Connection, customer: Customer, context: PlanContext) -> Customer:
    """The customer as Rejoiner's profile write takes it: ``gw:winback`` said (see above)."""
    tags = [t for t in customer.tags if t != WINBACK_TAG]
    state = context.winback(conn, customer.id) if customer.id else None
    if context.route_on("winback") and state is not None and state.in_winback:
        tags.append(WINBACK_TAG)
    return dataclasses.replace(customer, tags=tags)


def replenit_order(order: Order, customer: Customer) -> Order:
    """The order as Replenit takes it: its ``CustomerId`` the one the customer is sent under
    (the shop's Replenit id, else the gateway's id)."""
    return dataclasses.replace(
        order, customer_external_id=customer.external_ids.get("replenit") or customer.id)


def _live(customer: Customer | None) -> bool:
    return customer is not None and customer.redacted_at is None


def _rekindle_takes(customer: Customer) -> bool:
    return bool(customer.email and customer.name)


def _delivery(connector: str, operation: str, record: Any, event: Event, subject: str | None,
              **kwargs: Any) -> PlannedDelivery:
    return PlannedDelivery(connector, operation, record, version=event.id, subject_id=subject,
                           **kwargs)


def profile_writes(conn: Connection, event: Event, customer: Customer, context: PlanContext,
                   *, priority: int | None = None) -> list[PlannedDelivery]:
    """The customer's profile at every connected destination that may hold it."""
    planned = []
    if context.is_connected("replenit") and replenit_allows(customer, context):
        planned.append(_delivery("replenit", "customers.upsert", customer, event, customer.id,
                                 priority=priority))
    if context.is_connected("rekindle") and _rekindle_takes(customer):
        planned.append(_delivery("rekindle", "customers.upsert", customer, event, customer.id,
                                 priority=priority))
    if context.is_connected("rejoiner") and customer.email:
        planned.append(_delivery("rejoiner", "customers.upsert",
                                 rejoiner_profile(conn, customer, context), event, customer.id,
                                 priority=priority))
    return planned


# --------------------------------------------------------------------------- the planners


def plan_orders(conn: Connection, tenant_id: str, event: Event,
                context: PlanContext) -> list[PlannedDelivery]:
    """``order.placed`` / ``order.cancelled``: Replenit's order (the cancelled flag with it),
    Rekindle's update-customer (the purchase moves its aggregates: Rekindle re-scores and may
    say the customer returned), and, for a placed order, Rejoiner's convert (a purchase ends
    the customer's abandonment journeys) when the order is in the connection's currency."""
    order = context.order(conn, event.subject_id)
    if order is None:
        return []
    customer = context.customer(conn, order.customer_id)
    if not _live(customer):
        return []
    planned = []
    if context.is_connected("replenit") and replenit_allows(customer, context):
        planned.append(_delivery("replenit", "orders.upsert", replenit_order(order, customer),
                                 event, customer.id))
    if context.is_connected("rekindle") and _rekindle_takes(customer):
        planned.append(_delivery("rekindle", "customers.upsert", customer, event, customer.id,
                                 priority=ORDERS))
    currency = context.option("rejoiner", "currency") or "USD"
    if (event.type == "order.placed" and context.is_connected("rejoiner")
            and order.customer_email and order.total.currency == str(currency).upper()):
        planned.append(_delivery("rejoiner", "carts.convert", order, event, customer.id))
    return planned


def plan_products(conn: Connection, tenant_id: str, event: Event,
                  context: PlanContext) -> list[PlannedDelivery]:
    """``product.updated``: Replenit's catalogue."""
    product = context.product(conn, event.subject_id)
    if product is None or not context.is_connected("replenit"):
        return []
    return [_delivery("replenit", "products.upsert", product, event, None)]


def plan_consent(conn: Connection, tenant_id: str, event: Event,
                 context: PlanContext) -> list[PlannedDelivery]:
    """``customer.unsubscribed`` / ``customer.opted_in``: consent follows the customer.

    Rejoiner records email consent only: an email unsubscribe or opt-in goes to its
    ``unsubscribe`` / ``opt_in``. Replenit holds every channel's flag: a customer it may hold
    gets their profile again (the flags in it). Under the ``consent`` basis a customer who
    withdraws processing consent may no longer be held there: Replenit's delete is queued and
    their Replenit writes still queued are cancelled; one who gives it is sent, with their
    orders (at most :data:`BACKFILL_ORDERS`, newest first).
    """
    customer = context.customer(conn, event.subject_id)
    if not _live(customer):
        return []
    channel, given = event.item.get("channel"), event.item.get("consent") is True
    planned = []
    if context.is_connected("rejoiner") and channel == "email" and customer.email:
        if given:
            planned.append(_delivery("rejoiner", "consent.opt_in", customer, event, customer.id))
        else:
            planned.append(_delivery("rejoiner", "consent.unsubscribe", customer.email, event,
                                     customer.id))
    if context.is_connected("replenit"):
        if replenit_allows(customer, context):
            planned.append(_delivery("replenit", "customers.upsert", customer, event,
                                     customer.id, priority=CONSENT))
            if channel == "gdpr_processing" and given \
                    and context.settings.consent_basis == "consent":
                planned.extend(
                    _delivery("replenit", "orders.upsert", replenit_order(order, customer),
                              event, customer.id)
                    for order in context.customer_orders(conn, customer.id, BACKFILL_ORDERS))
        elif channel == "gdpr_processing" and not given:
            erasures.cancel_pending(conn, tenant_id, customer.id, connector="replenit",
                                    reason="cancelled: the customer withdrew processing consent")
            planned.append(_delivery(
                "replenit", "customers.delete",
                {"customerId": customer.external_ids.get("replenit") or customer.id,
                 "email": customer.email}, event, customer.id, priority=CONSENT,
                record_key=f"withdrawn:{customer.id}"))
    return planned


def plan_customers(conn: Connection, tenant_id: str, event: Event,
                   context: PlanContext) -> list[PlannedDelivery]:
    """``customer.created`` / ``customer.updated`` (from the API, webhooks or pulls): the
    profile at Replenit (under the consent basis), Rekindle and Rejoiner."""
    customer = context.customer(conn, event.subject_id)
    if not _live(customer):
        return []
    return profile_writes(conn, event, customer, context)


def winback_takes(event: Event) -> bool:
    """The win-back route's events: a status change into or out of ``lapsed``/``lost``, and a
    return."""
    if event.type == "customer.returned":
        return True
    return (event.item.get("status") in WINBACK_STATUSES
            or event.item.get("previous_status") in WINBACK_STATUSES)


def plan_winback(conn: Connection, tenant_id: str, event: Event,
                 context: PlanContext) -> list[PlannedDelivery]:
    """Into ``lapsed``/``lost``: Rejoiner's profile with ``gw:winback`` (the journey starts;
    the message start is recorded when Rejoiner has taken the tag: see
    :mod:`gateway.relay.routes_answers`). Out of them, and on ``customer.returned``: the
    profile without it, and on a return Rejoiner's cancel first, so a won-back customer leaves
    the journey at once."""
    if not context.is_connected("rejoiner") or not winback_takes(event):
        return []
    customer = context.customer(conn, event.subject_id)
    if not _live(customer) or not customer.email:
        return []
    planned = []
    if event.type == "customer.returned":
        planned.append(_delivery("rejoiner", "journeys.cancel", customer.email, event,
                                 customer.id, priority=WINBACK))
    planned.append(_delivery("rejoiner", "customers.upsert",
                             rejoiner_profile(conn, customer, context), event, customer.id,
                             priority=WINBACK))
    return planned


def plan_erasure(conn: Connection, tenant_id: str, event: Event,
                 context: PlanContext) -> list[PlannedDelivery]:
    """``customer.redacted``: see :func:`gateway.relay.erasures.plan_erasure`."""
    return erasures.plan_erasure(conn, tenant_id, event, context)
