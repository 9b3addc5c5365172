"""One batch's lookups answered ahead, in a few queries (the webhook drainer's batches).

Ingesting a record looks up, a query each, whether its email is tombstoned, whether a customer
holds its email and whether its order is stored already. :func:`gateway.ingest.ingest_batch`
asks these for all the records of its batch at once (:func:`lookahead`), and the per-record
lookups (:func:`email_absent`, :func:`order_absent`, :func:`tombstones_clear`) take the answer
from here only where it is certain:

- an email or an order id that occurs in exactly one record of the batch, and that no row
  held when the batch began: no other record of the batch can have written it, so it is still
  absent when its record asks. The answer is given once (then the lookup queries again).
- tombstones: only when no record of the batch erases anyone; a record whose every tombstone
  hash was asked for, and none found, is clear.

A writer outside the tenant's event lock may insert one of those keys meanwhile: what follows
an "absent" answer is an upsert on the same key, as without the lookahead.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, bindparam, select

from gateway.store.tables import customers, orders, tombstones

#: Where a connection keeps the answers of the batch it is ingesting.
_KEY = "gateway.lookahead"

#: Keys asked for in one query at most (well under SQLite's bound-parameter limit).
_CHUNK = 500

_EMAILS_HELD = select(customers.c.email).where(
    customers.c.tenant_id == bindparam("tenant"),
    customers.c.email.in_(bindparam("keys", expanding=True)))
_ORDERS_HELD = select(orders.c.external_id).where(
    orders.c.tenant_id == bindparam("tenant"),
    orders.c.external_id.in_(bindparam("keys", expanding=True)))
_TOMBSTONES_HELD = select(tombstones.c.kind, tombstones.c.hash).where(
    tombstones.c.tenant_id == bindparam("tenant"),
    tombstones.c.kind.in_(bindparam("kinds", expanding=True)),  # the index's order
    tombstones.c.hash.in_(bindparam("keys", expanding=True)))


@dataclass
class _Answers:
    transaction: Any
    tenant_id: str
    absent_emails: set[str]
    absent_orders: set[str]
    clear_hashes: set[tuple[str, str]] | None  # None: not asked (the batch erases)


def _held(conn: Connection, statement: Any, tenant_id: str, keys: list[Any],
          **params: Any) -> set[Any]:
    """The rows ``statement`` finds among ``keys`` (a value, or a tuple for several columns)."""
    found: set[Any] = set()
    for start in range(0, len(keys), _CHUNK):
        rows = conn.execute(statement, {"tenant": tenant_id,
                                        "keys": keys[start:start + _CHUNK], **params})
        found.update(tuple(row) if len(row) > 1 else row[0] for row in rows)
    return found


def _once(keys: Iterable[str | None]) -> list[str]:
    counts = Counter(key for key in keys if key)
    return sorted(key for key, n in counts.items() if n == 1)


@contextmanager
def lookahead(conn: Connection, tenant_id: str, *, emails: Iterable[str | None],
              order_ids: Iterable[str | None],
              tombstone_hashes: Iterable[tuple[str, str]] | None) -> Iterator[None]:
    """Answer ahead, for the block (in ``conn``'s transaction), the lookups of a batch whose
    records name ``emails`` (normalised; every email of every record, repeats included) and
    ``order_ids`` (every order's); ``tombstone_hashes``: those of its records, or ``None``
    when a record of the batch erases."""
    emails, order_ids = _once(emails), _once(order_ids)
    hashes = sorted(set(tombstone_hashes)) if tombstone_hashes is not None else None
    answers = _Answers(
        conn.get_transaction(), tenant_id,
        set(emails) - _held(conn, _EMAILS_HELD, tenant_id, emails),
        set(order_ids) - _held(conn, _ORDERS_HELD, tenant_id, order_ids),
        None if hashes is None else set(hashes) - _held(
            conn, _TOMBSTONES_HELD, tenant_id, [digest for _, digest in hashes],
            kinds=sorted({kind for kind, _ in hashes}) or ["email"]))
    conn.info[_KEY] = answers
    try:
        yield
    finally:
        conn.info.pop(_KEY, None)


def _answers(conn: Connection, tenant_id: str) -> _Answers | None:
    found = conn.info.get(_KEY)
    if found is None or found.tenant_id != tenant_id \
            or found.transaction is not conn.get_transaction():
        return None
    return found


def email_absent(conn: Connection, tenant_id: str, email: str) -> bool:
    """True when it is certain that no customer of the tenant holds ``email`` (normalised);
    False when the caller must look."""
    found = _answers(conn, tenant_id)
    if found is None or email not in found.absent_emails:
        return False
    found.absent_emails.discard(email)
    return True


def order_absent(conn: Connection, tenant_id: str, order_id: str) -> bool:
    """True when it is certain that the tenant holds no order ``order_id``; False when the
    caller must look."""
    found = _answers(conn, tenant_id)
    if found is None or order_id not in found.absent_orders:
        return False
    found.absent_orders.discard(order_id)
    return True


def tombstones_clear(conn: Connection, tenant_id: str, hashes: list[tuple[str, str]]) -> bool:
    """True when it is certain that none of ``hashes`` is a tombstone of the tenant's; False
    when the caller must look."""
    found = _answers(conn, tenant_id)
    return (found is not None and found.clear_hashes is not None
            and all(h in found.clear_hashes for h in hashes))
