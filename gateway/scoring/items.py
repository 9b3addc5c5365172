"""The flat trigger item of a customer event, with Rekindle's field names.

``id`` is not here: :func:`gateway.store.events.append_event` (or the bulk writer of the
tenant pass) adds the event's id.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from gateway.money import Money, exponent
from gateway.scoring.rules import from_epoch


@lru_cache(maxsize=4096)  # a pass writes the same few times (now) into many items
def iso_time(moment: datetime | None) -> str | None:
    """``2025-03-15T10:22:00Z`` (UTC, whole seconds), as Rekindle writes its times."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_EXACT_BELOW = 10**15


def json_amount(minor: int | None, currency: str) -> int | float | str | None:
    """A base-currency amount as an exact JSON number.

    A currency without minor units gives an int; otherwise a float whose shortest decimal form
    (what ``json.dumps`` writes) is exactly the amount, e.g. ``4200.1`` for 4200.10. A float
    holds every amount of up to 15 significant digits exactly in that sense; beyond that (over
    ten trillion dollars) the decimal is given as a string rather than rounded.
    """
    if minor is None:
        return None
    minor = int(minor)
    places = exponent(currency)
    if places == 0:
        return minor
    if -_EXACT_BELOW < minor < _EXACT_BELOW:
        # At most 15 significant digits: int / int is the correctly rounded float, and a float
        # of that many digits prints back as exactly that decimal.
        return minor / 10**places
    amount = Money(minor, currency).to_decimal()
    as_float = float(amount)
    if Decimal(repr(as_float)) == amount:
        return as_float
    return str(amount)


def customer_item(*, customer_id: str, first_name: str | None, last_name: str | None,
                  email: str | None, phone: str | None, status: str | None,
                  previous_status: str | None, engagement_score: int | None,
                  last_order_at: datetime | date | None, ltv_minor: int | None,
                  currency: str, purchase_count: int | None, returned_at: datetime | None,
                  updated_at: datetime | None, changed_at: datetime | None) -> dict[str, Any]:
    """The item of ``customer.status_changed`` and ``customer.returned`` events."""
    parts = [p.strip() for p in (first_name, last_name) if p and p.strip()]
    if isinstance(last_order_at, datetime):
        last_order_at = last_order_at.date()
    return {
        "customer_id": customer_id,
        "name": " ".join(parts) or None,
        "email": email,
        "phone": phone,
        "status": status,
        "previous_status": previous_status,
        "engagement_score": engagement_score,
        "last_purchase_date": last_order_at.isoformat() if last_order_at else None,
        "total_spent": json_amount(ltv_minor, currency),
        "purchase_count": int(purchase_count) if purchase_count is not None else None,
        "returned_at": iso_time(returned_at),
        "updated_at": iso_time(updated_at),
        "changed_at": iso_time(changed_at),
    }


def item_from_facts(row: Any, *, status: str | None, previous_status: str | None,
                    engagement_score: int | None, currency: str, returned_at: datetime | None,
                    updated_at: datetime, changed_at: datetime | None) -> dict[str, Any]:
    """An item from a row of :func:`gateway.scoring.sql.facts_sql` joined with the profile."""
    return customer_item(
        customer_id=row.customer_id, first_name=row.first_name, last_name=row.last_name,
        email=row.email, phone=row.phone, status=status, previous_status=previous_status,
        engagement_score=engagement_score, last_order_at=from_epoch(row.last_epoch),
        ltv_minor=row.eff_ltv, currency=currency, purchase_count=row.eff_count,
        returned_at=returned_at, updated_at=updated_at, changed_at=changed_at,
    )


#: First statuses that are worth an event: a new customer who is merely ``active`` is not news.
FIRST_STATUS_EVENTS = ("at_risk", "lapsed", "lost")


def planned_events(row: Any, *, now: datetime, currency: str) -> list[tuple[str, dict[str, Any]]]:
    """The events one re-scored customer gives, as ``(type, item)``, in the order to write them.

    ``row`` has the facts columns (``status``, ``old_status``, ``score``, ``returned_at`` ...)
    and the profile (names, email, phone, ``old_returned_at``, ``status_changed_at``). A status
    change gives ``customer.status_changed`` (a first status only when it is not ``active``; a
    status that disappears, e.g. every order cancelled, gives nothing); a newly attributed
    return gives ``customer.returned``.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    new, old = row.status, row.old_status
    changed = new is not None and new != old
    returned_at = row.returned_at or row.old_returned_at
    if changed and (old is not None or new in FIRST_STATUS_EVENTS):
        out.append(("customer.status_changed", item_from_facts(
            row, status=new, previous_status=old, engagement_score=row.score, currency=currency,
            returned_at=returned_at, updated_at=now, changed_at=now)))
    if row.returned_at is not None:
        out.append(("customer.returned", item_from_facts(
            row, status=new, previous_status=old, engagement_score=row.score, currency=currency,
            returned_at=row.returned_at, updated_at=now,
            changed_at=now if changed else row.status_changed_at)))
    return out
