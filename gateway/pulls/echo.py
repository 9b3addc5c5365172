"""The dedupe keys of Rekindle's two triggers, and echo suppression: what the gateway itself
wrote to Rekindle is recorded under the same keys the poll reads back, so it is never news.

Scopes are per tenant and trigger (the dedupe table's ``tenant_id`` plus
``rekindle:customer-status`` / ``rekindle:customer-returned``). A key is what makes an
occurrence new, never Rekindle's ``updated_at`` (every re-score moves it):

- customer-status: the gateway's customer id and the status (``<id>|lapsed``);
- customer-returned: the gateway's customer id and ``returned_at`` to the second, in UTC
  (``<id>|2025-04-05T08:00:00Z``).

Keys hold the gateway's id, not an email or Rekindle's id (which Rekindle derives from the
email), so no key is personal data of its own.

**A customer holds one status key at a time.** When a new status is recorded for a customer
(by the poll or by an answer), the customer's keys for the other statuses are retired, and an
answer saying ``active`` retires them all: otherwise a customer who went ``at_risk``, back to
``active`` and ``at_risk`` again within the keys' age bound would never be news the second time.
Return keys are never retired (each return has its own ``returned_at``).

**Echoes.** :func:`record_answer` runs where Rekindle's answer to the gateway's own
update-customer is applied (:mod:`gateway.relay.routes_answers`), in that transaction: the
status and the return it reports are recorded, so a later poll that lists the customer with the
same values finds its keys seen and starts nothing. It records only in scopes a poll has already
seeded: a key in an unseeded scope would make the first poll think the scope was seeded before
(see :mod:`gateway.store.dedupe`), and that first poll records everything it lists anyway.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Connection, delete, select

from connectors.rekindle.wire import ATTENTION_STATUSES
from gateway.store import dedupe
from gateway.store.tables import dedupe_keys

SOURCE = "rekindle"
STATUS_TRIGGER = "customer-status"
RETURNED_TRIGGER = "customer-returned"
STATUS_SCOPE = f"{SOURCE}:{STATUS_TRIGGER}"
RETURNED_SCOPE = f"{SOURCE}:{RETURNED_TRIGGER}"


def status_key(customer_id: str, status: str) -> str:
    """The customer-status trigger's key for this customer in this status."""
    return f"{customer_id}|{status}"


def returned_key(customer_id: str, returned_at: datetime) -> str:
    """The customer-returned trigger's key for this return (``returned_at`` to the second)."""
    moment = returned_at if returned_at.tzinfo else returned_at.replace(tzinfo=timezone.utc)
    return f"{customer_id}|{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def is_seeded(conn: Connection, tenant_id: str, scope: str) -> bool:
    """Whether a poll has seeded the tenant's ``scope`` (its marker row exists)."""
    return conn.execute(select(dedupe_keys.c.key).where(
        dedupe_keys.c.tenant_id == tenant_id, dedupe_keys.c.scope == scope,
        dedupe_keys.c.key == dedupe.MARKER)).first() is not None


def retire_other_statuses(conn: Connection, tenant_id: str, customer_id: str,
                          status: str | None) -> int:
    """Drop the customer's status keys other than ``status`` (all of them for ``active`` or
    None); how many went."""
    others = [status_key(customer_id, s) for s in ATTENTION_STATUSES if s != status]
    return conn.execute(delete(dedupe_keys).where(
        dedupe_keys.c.tenant_id == tenant_id, dedupe_keys.c.scope == STATUS_SCOPE,
        dedupe_keys.c.key.in_(others))).rowcount


def record_answer(conn: Connection, tenant_id: str, customer_id: str, *,
                  status: str | None, returned_at: datetime | None) -> None:
    """Record what Rekindle answered to the gateway's own update-customer (its status, and the
    return when ``returned_at`` is given) as seen, in the caller's transaction, so the poll
    does not take it for news. Scopes no poll has seeded are left alone."""
    if status is not None and is_seeded(conn, tenant_id, STATUS_SCOPE):
        if status in ATTENTION_STATUSES:
            dedupe.unseen(conn, tenant_id, STATUS_SCOPE, [status_key(customer_id, status)])
        retire_other_statuses(conn, tenant_id, customer_id, status)
    if returned_at is not None and is_seeded(conn, tenant_id, RETURNED_SCOPE):
        dedupe.unseen(conn, tenant_id, RETURNED_SCOPE, [returned_key(customer_id, returned_at)])
