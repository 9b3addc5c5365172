"""Which due group a worker claims next: fair across tenants, ordered within one.

- **Across tenants**: round robin. The worker remembers the last tenant it served and tries
  the tenants with claimable work in id order from the one after it, wrapping around, so one
  tenant's backlog of thousands of rows delays another tenant's single order by at most a
  batch per tenant ahead of it in the round.
- **Within a tenant and destination**: the lowest priority first (:mod:`gateway.relay.planned`),
  and a group waits while a lower priority of the same tenant and connector is due or in
  flight: products before the orders that name them, an unsubscribe or an erasure before any
  upsert of that customer, consent before win-back before orders before profile refreshes.
- **Linger**: a partial batch (fewer rows than the operation takes at once) is claimable only
  once its oldest row has been due for ``linger_seconds``, so rows queued close together leave
  together, while a small shop waits no longer than that.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Callable, Mapping, Sequence

from gateway.relay.claim import Group

Destination = tuple[str, str]


def candidates(groups: Sequence[Group], *, now: datetime, linger_seconds: float,
               batch_size: Callable[[Group], int], live: Mapping[Destination, int],
               blocked: Callable[[Destination], bool], after_tenant: str | None
               ) -> tuple[list[Group], datetime | None]:
    """The groups to try, in order, and when the first lingering one becomes claimable (None
    when none is lingering)."""
    floor: dict[Destination, float] = {}
    for group in groups:
        floor[group.destination] = min(floor.get(group.destination, math.inf), group.priority)
    for destination, priority in live.items():
        floor[destination] = min(floor.get(destination, math.inf), priority)
    linger = timedelta(seconds=linger_seconds)
    ready: dict[str, list[Group]] = {}
    wake: datetime | None = None
    for group in groups:
        if group.priority > floor[group.destination] or blocked(group.destination):
            continue
        if group.count < batch_size(group) and group.due_since + linger > now:
            ready_at = group.due_since + linger
            wake = ready_at if wake is None else min(wake, ready_at)
            continue
        ready.setdefault(group.tenant_id, []).append(group)
    tenants = sorted(ready)
    if after_tenant is not None:
        later = [t for t in tenants if t > after_tenant]
        tenants = later + [t for t in tenants if t <= after_tenant]
    ordered = [group for tenant in tenants
               for group in sorted(ready[tenant], key=lambda g: (g.priority, g.due_since))]
    return ordered, wake
