"""The relay's routes: which canonical event goes to which service, declared as data.

A :class:`Route` names the event types it takes, the services it writes to, and its planner
(``plan(conn, tenant_id, event, context) -> [PlannedDelivery]``, in
:mod:`gateway.relay.routes_planners`); ``accepts`` narrows the event types further where a
route takes only some events of a type. Routes react to canonical events whatever their source
(an action, a webhook, a pull, a re-score, a service's answer).

=========  =====================================  ==========================================
route      events                                 to
=========  =====================================  ==========================================
orders     order.placed, order.cancelled          Replenit orders, Rekindle update-customer,
                                                  Rejoiner convert
products   product.updated                        Replenit products
consent    customer.unsubscribed,                 Rejoiner unsubscribe / opt_in, Replenit's
           customer.opted_in                      flags
customers  customer.created, customer.updated     Replenit, Rekindle and Rejoiner profiles
winback    customer.status_changed into or out    Rejoiner ``gw:winback`` tag (and the
           of lapsed/lost; customer.returned      message start recorded); on return,
                                                  Rejoiner cancel and the tag removed
erasure    customer.redacted                      Replenit delete, Rejoiner unsubscribe, a
                                                  manual item for Rekindle
=========  =====================================  ==========================================

Each route is on or off per tenant (the ``routes`` tenant setting; all on by default:
:mod:`gateway.relay.routes_switches`), and plans only to services the tenant has connected. An
event no enabled route with a connected service takes costs nothing beyond that check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Connection

from gateway.model import Event
from gateway.relay import routes_planners as planners
from gateway.relay.planned import PlannedDelivery
from gateway.relay.routes_context import PlanContext
from gateway.tenant_settings import SWITCHABLE_ROUTES

Planner = Callable[[Connection, str, Event, PlanContext], list[PlannedDelivery]]


def _every(event: Event) -> bool:
    return True


#: Event sources whose customer events the ``customers`` route leaves alone: the scheduled
#: pulls plan those customers' profile writes themselves, diffed per destination
#: (:mod:`gateway.pulls.acknowledged`), under their own route switch.
PULL_SOURCES = frozenset({"rci-customers"})


def _not_pulled(event: Event) -> bool:
    return event.source not in PULL_SOURCES


@dataclass(frozen=True)
class Route:
    name: str
    events: frozenset[str]
    destinations: tuple[str, ...]
    plan: Planner
    description: str
    accepts: Callable[[Event], bool] = _every

    def active(self, context: PlanContext) -> bool:
        """On for the tenant, with at least one of its services connected."""
        return context.route_on(self.name) and any(
            context.is_connected(c) for c in self.destinations)

    def takes(self, event: Event) -> bool:
        return event.type in self.events and self.accepts(event)


ROUTES: tuple[Route, ...] = (
    Route("orders", frozenset({"order.placed", "order.cancelled"}),
          ("replenit", "rekindle", "rejoiner"), planners.plan_orders,
          "purchases: Replenit orders, Rekindle update-customer (its answer is recorded), "
          "Rejoiner convert (a purchase ends abandonment journeys)"),
    Route("products", frozenset({"product.updated"}), ("replenit",), planners.plan_products,
          "the catalogue: Replenit products"),
    Route("consent", frozenset({"customer.unsubscribed", "customer.opted_in"}),
          ("rejoiner", "replenit"), planners.plan_consent,
          "consent follows the customer: Rejoiner unsubscribe / opt_in, Replenit's flags"),
    Route("customers", frozenset({"customer.created", "customer.updated"}),
          ("replenit", "rekindle", "rejoiner"), planners.plan_customers,
          "profiles, consent, value; RFM as gw: tags at Rejoiner", accepts=_not_pulled),
    Route("winback", frozenset({"customer.status_changed", "customer.returned"}),
          ("rejoiner",), planners.plan_winback,
          "lapsed or lost: Rejoiner tag gw:winback (the win-back message start); on return, "
          "Rejoiner cancel and the tag removed", accepts=planners.winback_takes),
    Route("erasure", frozenset({"customer.redacted"}), ("replenit", "rejoiner", "rekindle"),
          planners.plan_erasure,
          "GDPR erasure: Replenit delete, Rejoiner unsubscribe, a manual item for Rekindle"),
)

BY_NAME: dict[str, Route] = {route.name: route for route in ROUTES}

#: Every event type some route takes.
ROUTED_TYPES = frozenset(t for route in ROUTES for t in route.events)

_unknown = set(BY_NAME) - set(SWITCHABLE_ROUTES)
if _unknown:  # a route without a switch could never be turned off
    raise RuntimeError(f"routes without a tenant switch: {sorted(_unknown)}")


def routes_for(event_type: str) -> list[Route]:
    """The routes that take events of this type."""
    return [route for route in ROUTES if event_type in route.events]
