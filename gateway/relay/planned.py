"""What a route hands the outbox: :class:`PlannedDelivery`, and the priorities rows go out in.

Priorities (lower goes first). The worker sends a tenant's groups for one connector lowest
priority first, and holds a group back while a lower one of the same tenant and connector is
due or in flight, so, per destination:

========  ===================================================================
priority  what
========  ===================================================================
0         consent and erasure: unsubscribes, opt-ins, customer deletes
1         win-back (Rejoiner's ``gw:winback`` tag, journey cancels) and the
          catalogue (products go before the orders that name them)
2         orders and conversions
3         profile refreshes (customer upserts)
========  ===================================================================

When a service's rate budget is the bottleneck this is the order its requests go in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONSENT = 0
WINBACK = 1
CATALOGUE = 1
ORDERS = 2
PROFILE = 3

#: The priority of an operation when the route does not name one.
DEFAULT_PRIORITIES: dict[str, int] = {
    "consent.unsubscribe": CONSENT,
    "consent.opt_in": CONSENT,
    "customers.delete": CONSENT,
    "journeys.cancel": WINBACK,
    "products.upsert": CATALOGUE,
    "products.delete": CATALOGUE,
    "variants.delete": CATALOGUE,
    "orders.upsert": ORDERS,
    "orders.delete": ORDERS,
    "order_lines.delete": ORDERS,
    "carts.convert": ORDERS,
    "customers.upsert": PROFILE,
}

#: Operations an erasure leaves queued (they remove or silence the customer); every other
#: pending row about the erased customer is cancelled.
SURVIVE_ERASURE = frozenset({"customers.delete", "consent.unsubscribe", "journeys.cancel"})

#: Writes that are not idempotent at the service: a resend would act twice, so the worker
#: sends them one at a time and records each success before anything else (``sent_at``).
NOT_IDEMPOTENT = frozenset({("rejoiner", "carts.convert")})


#: Writes that are events, not the state of a record: two of them for one key are two things
#: that happened (two purchases of one customer), so they are never coalesced.
NEVER_COALESCED = NOT_IDEMPOTENT


def default_priority(operation: str) -> int:
    return DEFAULT_PRIORITIES.get(operation, PROFILE)


@dataclass(frozen=True)
class PlannedDelivery:
    """One record a route wants written to one destination.

    ``record`` is the canonical record the operation takes (a ``Customer``, ``Order``,
    ``Product``, ``Cart``; or the plain JSON value a delete takes, e.g. ``{"customerId": ...}``
    or an email). ``record_key`` is its key at the service (``Operation.key(record)`` when
    omitted): a still-pending row with the same tenant, connector, operation and key is
    replaced by this one (newest wins, sent once). ``version`` names this version of the record
    (the event id it came from, normally): the idempotency key is built from it, so the same
    event planned twice queues one row while a later change always queues (A -> B -> A sends
    three times). Without one, every plan is a new version.

    ``subject_id`` is the gateway's customer the row is about (erasure cancels by it);
    ``erases`` marks an erasure of that customer: every other pending row about them is
    cancelled (see :data:`SURVIVE_ERASURE`) and this one goes first.
    """

    connector: str
    operation: str
    record: Any
    version: str | None = None
    subject_id: str | None = None
    record_key: str | None = None
    priority: int | None = None
    erases: bool = False

    @property
    def effective_priority(self) -> int:
        if self.priority is not None:
            return self.priority
        return default_priority(self.operation)
