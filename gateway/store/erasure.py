"""Erasure of a customer, as far as the store goes, in the caller's (one) transaction.

:func:`erase_customer` wipes the customer's personal data from its row (email, names, phone,
language, timezone, address, birthdate, gender, tags, metadata, consent times; the row's id,
its aggregates and scores stay, and ``redacted_at`` is set), deletes its external ids, nulls
the personal fields of the items of every event about it (found by the indexed
``events.customer_id``, order events included), scrubs stored idempotent answers that hold its
email, phone, names, ids or external ids, writes tombstones, and writes a ``customer.redacted``
event whose item holds no personal data. Its orders stay (they hold no personal data: the
email lives on the customer row only).

A tombstone is a SHA-256 hash, never the plain value: of the tenant and the normalised email,
and of the tenant, a service and that service's external id. :func:`is_erased` checks them, so
:func:`gateway.ingest.ingest` skips (and counts) every later record of that customer.

On SQLite the engine runs with ``PRAGMA secure_delete`` (gateway/store/db.py), so the old
bytes of what is overwritten or deleted do not linger in the file's free space.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import Connection, bindparam, delete, or_, select, update

from gateway.model import Event, normalise_email, utc
from gateway.store import lookahead
from gateway.store.events import append_event, lock_tenant_events
from gateway.store.tables import (
    acknowledged_payloads,
    customer_external_ids,
    customers,
    events,
    idempotency_keys,
    tombstones,
    webhook_inbox,
)
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for
from gateway.triggers import PII_ITEM_FIELDS, redacted_item, scrub_item

#: The customer columns that hold personal data, and what each becomes.
WIPED_COLUMNS: dict[str, Any] = {
    "email": None, "first_name": None, "last_name": None, "phone": None, "language": None,
    "timezone": None, "address": None, "birthdate": None, "gender": None, "tags": [],
    "metadata": {}, "opted_in_at": None, "unsubscribed_at": None,
    # No more marketing or processing: the customer asked to be forgotten.
    "consent_email": False, "consent_sms": False, "consent_whatsapp": False,
    "consent_push": False, "consent_gdpr": False,
}


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What :func:`erase_customer` did: the customer erased, the ``customer.redacted`` event's
    id (``""`` when the customer was erased before), how many event items and stored answers
    were scrubbed, how many tombstones exist for it, and the external ids it had (service ->
    id; for the delivery issue, which queues the destinations' deletes: they are gone from the
    store once this transaction commits)."""

    customer_id: str
    event_id: str
    events_scrubbed: int
    answers_scrubbed: int
    tombstones: int
    redacted_at: datetime
    external_ids: Mapping[str, str] = field(default_factory=dict)
    already_redacted: bool = False
    event: Event | None = None  # the customer.redacted event (None when already redacted)
    #: The customer's email(s) before the wipe, for the relay's erasure route (Rejoiner's
    #: unsubscribe, Replenit's delete) in this same transaction; never stored.
    emails: tuple[str, ...] = ()


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def email_hash(tenant_id: str, email: str) -> str:
    """The tombstone hash of an email (normalised first)."""
    return _hash(tenant_id, "email", normalise_email(email) or "")


def external_hash(tenant_id: str, service: str, external_id: str) -> str:
    """The tombstone hash of one service's external id."""
    return _hash(tenant_id, "external", service, str(external_id))


def tombstone_hashes(tenant_id: str, email: str | None,
                     external_ids: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The ``(kind, hash)`` tombstones an email (normalised) and external ids would have."""
    hashes = []
    if email:
        hashes.append(("email", email_hash(tenant_id, email)))
    for service, external_id in (external_ids or {}).items():
        if service and external_id:
            hashes.append(("external", external_hash(tenant_id, service, external_id)))
    return hashes


def add_tombstones(conn: Connection, tenant_id: str, *, email: str | None = None,
                   external_ids: Mapping[str, str] | None = None,
                   now: datetime | None = None) -> int:
    """Tombstone an email and external ids (e.g. for an erasure request about a customer the
    gateway never held). Returns how many of them were new."""
    hashes = tombstone_hashes(tenant_id, email, external_ids)
    if not hashes:
        return 0
    when = utc(now) or utcnow()
    stmt = insert_for(conn, tombstones).values([
        {"tenant_id": tenant_id, "kind": kind, "hash": digest, "created_at": when}
        for kind, digest in hashes])
    return len(conn.execute(stmt.on_conflict_do_nothing(
        index_elements=["tenant_id", "kind", "hash"]).returning(tombstones.c.hash)).all())


def is_erased(conn: Connection, tenant_id: str, *, email: str | None = None,
              external_ids: Mapping[str, str] | None = None) -> bool:
    """Whether the email or any of the external ids (service -> id) belongs to a customer this
    tenant erased. A malformed email is not anyone's (False for it)."""
    hashes = tombstone_hashes(tenant_id, normal_email(email), external_ids)
    if not hashes or lookahead.tombstones_clear(conn, tenant_id, hashes):
        return False
    found = conn.execute(_TOMBSTONES_OF, {"tenant": tenant_id,
                                          "kinds": sorted({kind for kind, _ in hashes}),
                                          "hashes": [digest for _, digest in hashes]})
    return not set(hashes).isdisjoint((row.kind, row.hash) for row in found)


#: The tombstones among some hashes (built once: it is asked for every record ingested).
_TOMBSTONES_OF = select(tombstones.c.kind, tombstones.c.hash).where(
    tombstones.c.tenant_id == bindparam("tenant"),
    tombstones.c.kind.in_(bindparam("kinds", expanding=True)),  # the index's order
    tombstones.c.hash.in_(bindparam("hashes", expanding=True)))


def normal_email(email: str | None) -> str | None:
    """The email normalised, ``None`` for a malformed one (it is nobody's)."""
    try:
        return normalise_email(email)
    except ValueError:
        return None


def _find(conn: Connection, tenant_id: str, *, email: str | None, customer_id: str | None,
          external_ids: Mapping[str, str] | None) -> Any:
    where = [customers.c.tenant_id == tenant_id]
    if customer_id:
        return conn.execute(select(customers).where(*where, customers.c.id == customer_id)
                            .with_for_update()).first()
    normal = normal_email(email)
    if normal:
        row = conn.execute(select(customers).where(*where, customers.c.email == normal)
                           .with_for_update()).first()
        if row is not None:
            return row
    for service, external_id in (external_ids or {}).items():
        found = conn.execute(select(customer_external_ids.c.customer_id).where(
            customer_external_ids.c.tenant_id == tenant_id,
            customer_external_ids.c.service == service,
            customer_external_ids.c.external_id == str(external_id))).scalar()
        if found:
            return conn.execute(select(customers).where(*where, customers.c.id == found)
                                .with_for_update()).first()
    return None


def erase_customer(conn: Connection, tenant_id: str, *, email: str | None = None,
                   customer_id: str | None = None,
                   external_ids: Mapping[str, str] | None = None,
                   now: datetime | None = None) -> ErasureResult | None:
    """Erase the tenant's customer with this gateway id, else this email, else any of these
    external ids (service -> id). ``None`` when the tenant holds no such customer (another
    tenant's id or email finds nothing). Erasing an erased customer again scrubs and
    tombstones again (harmless) and writes no second ``customer.redacted`` event
    (``already_redacted``). See the module docstring for what goes."""
    if not (email or customer_id or external_ids):
        raise ValueError("an erasure names the customer by email, customer id or external id")
    lock_tenant_events(conn, tenant_id)
    row = _find(conn, tenant_id, email=email, customer_id=customer_id,
                external_ids=external_ids)
    if row is None:
        return None
    when = utc(now) or utcnow()
    held = dict(conn.execute(select(customer_external_ids.c.service,
                                    customer_external_ids.c.external_id).where(
        customer_external_ids.c.tenant_id == tenant_id,
        customer_external_ids.c.customer_id == row.id)).all())
    emails = {e for e in (row.email, normal_email(email)) if e}
    for address in emails:
        add_tombstones(conn, tenant_id, email=address, now=when)
    add_tombstones(conn, tenant_id, external_ids={**(external_ids or {}), **held}, now=when)
    personal = _Personal([*emails, row.phone or "", *held.values(),
                          *(external_ids or {}).values()],
                         [row.first_name or "", row.last_name or ""])
    conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                         customers.c.id == row.id)
                 .values(**WIPED_COLUMNS, redacted_at=row.redacted_at or when, updated_at=when))
    conn.execute(delete(customer_external_ids).where(
        customer_external_ids.c.tenant_id == tenant_id,
        customer_external_ids.c.customer_id == row.id))
    # The pulls' per-destination diff forgets what the services acknowledged of the customer.
    conn.execute(delete(acknowledged_payloads).where(
        acknowledged_payloads.c.tenant_id == tenant_id,
        acknowledged_payloads.c.customer_id == row.id))
    scrubbed = _scrub_events(conn, tenant_id, row.id)
    answers = _scrub_answers(conn, tenant_id, row.id, personal)
    _scrub_dead_posts(conn, tenant_id, personal, when)
    count = len(tombstone_hashes(tenant_id, None, {**(external_ids or {}), **held})) + len(
        emails)
    if row.redacted_at is not None:
        return ErasureResult(customer_id=row.id, event_id="", events_scrubbed=scrubbed,
                             answers_scrubbed=answers, tombstones=count,
                             redacted_at=row.redacted_at, external_ids=held,
                             already_redacted=True, emails=tuple(sorted(emails)))
    event = append_event(conn, tenant_id, "customer.redacted", row.id,
                         redacted_item(customer_id=row.id, redacted_at=when), occurred_at=when,
                         source="gateway")
    return ErasureResult(customer_id=row.id, event_id=event.id, events_scrubbed=scrubbed,
                         answers_scrubbed=answers, tombstones=count, redacted_at=when,
                         external_ids=held, event=event, emails=tuple(sorted(emails)))


def _scrub_events(conn: Connection, tenant_id: str, customer_id: str) -> int:
    """Null the personal fields of the items of every event about the customer."""
    rows = conn.execute(select(events.c.seq, events.c.item).where(
        events.c.tenant_id == tenant_id, events.c.customer_id == customer_id)).all()
    changed = 0
    for seq, item in rows:
        if any(item.get(k) is not None for k in PII_ITEM_FIELDS):
            conn.execute(update(events).where(events.c.tenant_id == tenant_id,
                                              events.c.seq == seq)
                         .values(item=scrub_item(item)))
            changed += 1
    return changed


class _Personal:
    """What counts as the customer's personal data in a stored answer: any string holding its
    email, phone or an external id, or holding one of its names as a whole word."""

    def __init__(self, substrings: Iterable[str], names: Iterable[str]) -> None:
        self.substrings = [v.lower() for v in substrings if v]
        words = [re.escape(n) for n in names if n and n.strip()]
        self.names = re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE) \
            if words else None

    def held_by(self, value: str) -> bool:
        lowered = value.lower()
        if any(s in lowered for s in self.substrings):
            return True
        return bool(self.names and self.names.search(value))

    def scrub(self, value: Any) -> Any:
        """``value`` (parsed JSON) with every string holding personal data nulled."""
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, str) and self.held_by(value):
            return None
        return value


def _scrub_answers(conn: Connection, tenant_id: str, customer_id: str,
                   personal: _Personal) -> int:
    """Forget the tenant's stored idempotent answers that mention the customer (its id, email,
    phone or external ids): the rows go, so no personal data stays in them and no replay can
    serve an answer whose fields were blanked (a retry with that key now runs again and is
    refused, the customer being erased). Returns how many were forgotten."""
    needles = [customer_id, *personal.substrings]
    body = idempotency_keys.c.response_body
    return conn.execute(delete(idempotency_keys).where(
        idempotency_keys.c.tenant_id == tenant_id, body.is_not(None),
        or_(*[body.ilike(f"%{_like_escape(n)}%", escape="\\") for n in needles]))).rowcount


def _scrub_dead_posts(conn: Connection, tenant_id: str, personal: _Personal,
                      when: datetime) -> int:
    """Empty the bodies of dead-lettered webhook posts that name the customer (they are kept
    for listing and replay; once erased there is nothing to replay). Pending posts keep theirs
    until the drainer ingests them, which skips the erased customer and clears the body."""
    body = webhook_inbox.c.body
    needles = personal.substrings
    if not needles:
        return 0
    return conn.execute(update(webhook_inbox).where(
        webhook_inbox.c.tenant_id == tenant_id, webhook_inbox.c.state == "dead",
        or_(*[body.ilike(f"%{_like_escape(n)}%", escape="\\") for n in needles]))
        .values(body="", reason="emptied: it named a customer erased at their request",
                finished_at=when)).rowcount


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
