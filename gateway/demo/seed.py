"""Repeat Customer Insights' customers for the demo: the kit's synthetic people, with their
order histories moved in time so that the last order falls a chosen while before today.

The kit's people are dated against a fixed day (so tests and benchmarks are repeatable); for
the demo their histories are shifted, whole, so that about half are active and the rest at
risk, lapsed or lost by the gateway's own rules (each customer's silence is a multiple of the
gap between their own orders, or of the tenant's default gap for one order). The customers
without orders and the redacted ones (about 1 in 8 and 1 in 50) stay as the kit makes them:
the first are scored nothing, the second are erased, never sent.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta
from typing import Iterator

from connectors.rci import mapping
from connectors.rci.sandbox import synthetic_to_customer
from connectors.sandbox_kit import Synthetic, synthetic_customers
from gateway.scoring.rules import typical_gap_days
from gateway.tenant_settings import DEFAULTS

from .sandboxes import DemoSandbox

#: (share of the customers, lowest and highest silence as a multiple of their gap): active,
#: at risk, lapsed, lost, with the default thresholds (1.5, 3 and 6 gaps) well clear.
SILENCES = ((0.50, 0.1, 1.3), (0.20, 1.7, 2.8), (0.15, 3.3, 5.5), (0.15, 6.5, 9.0))
#: RCI's recency score (1..5) by days since the last order.
_RECENCY_EDGES = (30, 90, 180, 365)
_GRADES = {5: "A", 4: "B", 3: "C", 2: "D", 1: "F"}


def _silence_factor(rng: random.Random) -> float:
    pick, total = rng.random(), 0.0
    for share, low, high in SILENCES:
        total += share
        if pick < total:
            return rng.uniform(low, high)
    return rng.uniform(*SILENCES[-1][1:])


def _shifted(person: Synthetic, now: datetime) -> Synthetic:
    """``person`` with every date moved by one offset, so the last order is the drawn silence
    before ``now``; RCI's recency score and grade follow the new dates."""
    if not person.orders or person.redacted_at is not None:
        return person
    rng = random.Random(f"demo-silence-{person.index}")
    first, last = person.orders[0].placed_at, person.orders[-1].placed_at
    gap = typical_gap_days(person.order_count, int(first.timestamp()), int(last.timestamp()),
                           DEFAULTS.default_gap_days)
    silence = timedelta(days=gap * _silence_factor(rng), minutes=rng.randint(0, 600))
    offset = (now - silence) - last
    orders = tuple(dataclasses.replace(o, placed_at=o.placed_at + offset) for o in person.orders)
    days_since = silence.days
    recency = 5 - sum(days_since >= edge for edge in _RECENCY_EDGES)
    grade = _GRADES[max(1, round((recency + person.frequency + person.monetary) / 3))]
    return dataclasses.replace(person, orders=orders, created_at=person.created_at + offset,
                               recency=recency, grade=grade)


def demo_customers(n: int, now: datetime) -> Iterator[Synthetic]:
    """The demo's ``n`` customers (deterministic for a given day)."""
    for person in synthetic_customers(n, seed=0, now=now):
        yield _shifted(person, now)


def seed_rci(sandbox: DemoSandbox, n: int, now: datetime) -> int:
    """Replace the RCI sandbox's customers with the demo's; how many it holds."""
    def resources() -> Iterator[tuple[str, dict]]:
        for person in demo_customers(n, now):
            customer, times = synthetic_to_customer(person)
            yield person.id, mapping.customer_attributes(customer, **times)

    store = sandbox.app.extensions["rci"].store
    store.replace(resources())
    return len(store)
