"""One entry for every inbound record: topic x format -> canonical -> store, in one transaction.

:func:`ingest` is what the actions (``/actions/...``) and the webhooks (``/webhooks/...``) call.
It parses the payload in the named format (the gateway's canonical schemas, or a connector's
own ``mapping.py`` parser found through the registry: nothing here knows a vendor field name),
then, in the caller's transaction: stores the records (upserts by natural key that say what
changed), writes events only for real changes (a retried webhook or action re-fires no
trigger), re-scores the customers it touched, skips (and counts) records of erased customers,
and hands the events to :func:`gateway.relay.plan_deliveries` - the one place the delivery
issue adds its outbox rows. It returns what it stored (:class:`IngestResult`).

Topics and formats (the design's table; any other pair is :class:`UnsupportedFormat`, a 415):

============  =========  =======================================================
topic         canonical  connector formats
============  =========  =======================================================
orders        yes        rejoiner (convert with ``cart_data.order_number``), replenit
customers     yes        rekindle (update-customer body), rejoiner (profile),
                         rci (customer resource), replenit
products      yes        replenit
conversions   yes        rejoiner (convert payload)
unsubscribes  yes        rejoiner (``{"email": ...}``)
opt-ins       yes        rejoiner (``{"email": ...}`` + extras)
erasures      yes        replenit (delete-customer query as JSON)
============  =========  =======================================================

Every pair takes one record (a JSON object) or an array of at most :data:`MAX_RECORDS` of
them. An array is all or nothing: one bad element stores nothing.

Errors (:class:`PayloadInvalid`, a 400) name each bad field: ``{"email": ["..."]}`` for one
record, and for an array the element's index as a string key around that:
``{"3": {"email": ["..."]}}``. Field names are the format's own (a Replenit record's errors say
``Email``, a canonical one's ``email``).

Transaction choreography: call :func:`ingest` first thing in a fresh transaction. It begins by
taking the tenant's event lock (:func:`gateway.store.events.lock_tenant_events`), so that on
PostgreSQL every event-writing transaction of a tenant takes its locks in one order (tenant
lock, then rows), and on SQLite the transaction holds the write lock before it reads.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar, Iterator, Mapping

from marshmallow import Schema, ValidationError
from sqlalchemy import Connection, select

from connectors.base import all_connectors
from gateway import schemas, triggers
from gateway.model import Cart, Customer, Event, Order, Product, utc
from gateway.relay import plan_deliveries
from gateway.scoring import record_winback
from gateway.scoring.customer import HELD_SCORES, rescore_customers
from gateway.scoring.known import KnownOrder
from gateway.store import erasure, records
from gateway.store.events import HELD_EVENTS, append_events, lock_tenant_events
from gateway.store.held import HeldWrites
from gateway.store.lookahead import lookahead
from gateway.store.tables import cart_conversions, customers
from gateway.store.tenants import get_settings
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for
from gateway.tenant_settings import TenantSettings

#: The ingest topics, in the design table's order.
TOPICS = ("orders", "customers", "products", "conversions", "unsubscribes", "opt-ins",
          "erasures")

#: The format name of the gateway's own schemas (accepted for every topic).
CANONICAL = "canonical"

#: The most records one call takes (an array longer than this is a PayloadInvalid).
MAX_RECORDS = 1000


class UnsupportedFormat(LookupError):
    """``topic`` has no parser for ``fmt`` (or ``topic`` is unknown). The API answers 415,
    naming ``accepted`` (the formats the topic takes; empty for an unknown topic)."""

    def __init__(self, topic: str, fmt: str, accepted: list[str]) -> None:
        self.topic, self.fmt, self.accepted = topic, fmt, list(accepted)
        if accepted:
            message = (f"the {topic} topic does not take the {fmt!r} format; accepted formats: "
                       f"{', '.join(accepted)}")
        else:
            message = f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}"
        super().__init__(message)
        self.message = message


class PayloadInvalid(ValueError):
    """The payload does not validate in its format. ``errors`` names each bad field (see the
    module docstring for the shape: by field, and by string index for arrays); the API
    answers 400 with ``{"error": message, "errors": errors}``."""

    def __init__(self, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors or {})


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What became of one inbound record.

    ``kind``: ``customer``, ``order``, ``product``, ``cart``, ``consent`` or ``erasure``.
    ``id``: the gateway's customer id for customers, consent changes and erasures; the shop's
    natural key for orders (order id) and products (product id); the cart's order number (or
    its content key) for carts; ``None`` for a skipped record.
    ``outcome``: ``created``, ``updated`` or ``unchanged`` for a write; ``skipped_erased`` for a
    record of an erased (tombstoned) customer, which stores nothing; ``erased`` for an erasure
    of a held customer, ``tombstoned`` for an erasure of one the gateway does not hold (only
    its tombstone is written, so a later import of it is refused too; ``unchanged`` when it
    was tombstoned already), ``not_found`` for an erasure by a gateway id the tenant does not
    hold (nothing to tombstone).
    ``customer_id``: the gateway id of the customer the record is about, when there is one.
    """

    kind: str
    id: str | None
    outcome: str
    customer_id: str | None = None


@dataclass(slots=True)
class IngestResult:
    """What :func:`ingest` stored: one summary per record (in payload order), the ids of the
    events it wrote (record events first, then the re-scores' status events), how many records
    were skipped because their customer is erased, and the customers it wrote or re-scored.
    ``emitted`` holds the events themselves (what :func:`gateway.relay.plan_deliveries` got)."""

    records: list[RecordSummary] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    skipped_erased: int = 0
    customers: list[str] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when anything was stored (some record was created, updated or erased)."""
        return any(r.outcome not in ("unchanged", "skipped_erased") for r in self.records)


@dataclass(slots=True)
class CustomerUpdate:
    """The answer of :func:`update_customer`: the ingest result, the customer as stored after
    its re-score (``None`` when it was skipped as erased), and whether this update was a
    win-back return (a ``customer.returned`` event was written)."""

    result: IngestResult
    customer: Customer | None
    returned: bool = False


@dataclass(frozen=True, slots=True)
class WinbackSent:
    """The answer of :func:`record_winback_sent`: the customer, its status when the message
    started, and whether a later order can count as a return (only ``lapsed`` / ``lost``)."""

    customer_id: str
    status: str | None
    attributable: bool
    started_at: datetime


Parser = Callable[[Any, Mapping[str, Any]], list[Any]]

#: The canonical schema of each topic.
CANONICAL_SCHEMAS: dict[str, type[Schema]] = {
    "orders": schemas.OrderSchema,
    "customers": schemas.CustomerSchema,
    "products": schemas.ProductSchema,
    "conversions": schemas.CartSchema,
    "unsubscribes": schemas.UnsubscribeSchema,
    "opt-ins": schemas.OptInSchema,
    "erasures": schemas.ErasureSchema,
}

#: Customer columns that are consent (a change of only these is a consent event, not an
#: update), by the channel a flag column stands for.
_CONSENT_FLAGS = {"consent_email": "email", "consent_sms": "sms",
                  "consent_whatsapp": "whatsapp", "consent_push": "push",
                  "consent_gdpr": "gdpr_processing"}
_CONSENT_COLUMNS = frozenset({*_CONSENT_FLAGS, "opted_in_at", "unsubscribed_at"})


def accepted_formats(topic: str) -> list[str]:
    """The formats ``topic`` takes, ``canonical`` first, then connectors in registry order;
    ``[]`` for an unknown topic."""
    if topic not in TOPICS:
        return []
    return [CANONICAL, *(spec.name for spec in all_connectors() if topic in spec.inbound)]


_SCHEMA_INSTANCES = threading.local()


def _schema_instance(schema: type) -> Any:
    """This thread's instance of ``schema``: building one (and its nested schemas) costs more
    than a load, so each thread keeps one per schema (thread-local: a load keeps no state on
    the instance, but nothing promises that instances are shared safely)."""
    cache = vars(_SCHEMA_INSTANCES)
    found = cache.get(schema)
    if found is None:
        found = cache[schema] = schema()
    return found


def _canonical_parser(topic: str) -> Parser:
    schema = CANONICAL_SCHEMAS[topic]

    def parse_canonical(record: Any, context: Mapping[str, Any]) -> list[Any]:
        return [_schema_instance(schema).load(record)]

    return parse_canonical


def parser_for(topic: str, fmt: str) -> Parser:
    """The parser of ``topic`` in ``fmt``: the canonical schema, or the connector's own
    function declared in its spec's ``inbound``. Raises :class:`UnsupportedFormat`."""
    if topic not in TOPICS:
        raise UnsupportedFormat(topic, fmt, [])
    if fmt == CANONICAL:
        return _canonical_parser(topic)
    for spec in all_connectors():
        if spec.name == fmt and topic in spec.inbound:
            return spec.inbound[topic]
    raise UnsupportedFormat(topic, fmt, accepted_formats(topic))


def _messages(messages: Any) -> dict[str, Any]:
    """Marshmallow's messages with string keys (indexes too), always a dict."""
    if isinstance(messages, dict):
        return {str(k): (_messages(v) if isinstance(v, dict) else v)
                for k, v in messages.items()}
    return {"_schema": messages if isinstance(messages, list) else [str(messages)]}


def _parse_one(parser: Parser, record: Any, context: Mapping[str, Any]) -> list[Any]:
    try:
        return parser(record, context)
    except ValidationError as exc:
        raise PayloadInvalid("the record is not valid; see errors",
                             _messages(exc.messages)) from None
    except (ValueError, TypeError, KeyError) as exc:  # a shape no schema caught
        raise PayloadInvalid("the record is not valid; see errors",
                             {"_schema": [str(exc) or type(exc).__name__]}) from None


def parse(topic: str, fmt: str, payload: Any, *, currency: str = "USD",
          now: datetime | None = None) -> list[Any]:
    """Parse ``payload`` (one record or an array) into canonical objects, without storing.

    Raises :class:`UnsupportedFormat` or :class:`PayloadInvalid`. ``currency`` is the business
    currency for formats whose amounts name none (Rekindle, Rejoiner); ``now`` is the receipt
    time for formats that carry none (a Rejoiner convert's ``placed_at``).
    """
    parser = parser_for(topic, fmt)
    context = {"currency": currency, "received_at": utc(now) or utcnow()}
    if not isinstance(payload, list):
        return _parse_one(parser, payload, context)
    if not payload:
        raise PayloadInvalid("the array holds no records",
                             {"_schema": ["Send one record or a non-empty array."]})
    if len(payload) > MAX_RECORDS:
        raise PayloadInvalid(f"at most {MAX_RECORDS} records a request",
                             {"_schema": [f"The array holds {len(payload)} records; at most "
                                          f"{MAX_RECORDS} are taken."]})
    parsed, errors = [], {}
    for index, record in enumerate(payload):
        try:
            parsed.append(_parse_one(parser, record, context))
        except PayloadInvalid as exc:
            errors[str(index)] = exc.errors
    if errors:
        raise PayloadInvalid(f"{len(errors)} of {len(payload)} records are not valid; nothing "
                             "was stored; see errors", errors)
    return [obj for objs in parsed for obj in objs]


# --- storing ------------------------------------------------------------------------------------


class _Run:
    """One ingest: the records' writes and the events they plan, in one transaction."""

    def __init__(self, conn: Connection, tenant_id: str, now: datetime,
                 source: str | None, settings: TenantSettings | None = None) -> None:
        self.conn, self.tenant_id, self.now, self.source = conn, tenant_id, now, source
        self.settings = settings  # the tenant's, when the caller read them already
        self.result = IngestResult()
        self.planned: list[tuple[str, str | None, dict[str, Any]]] = []
        self.touched: dict[str, None] = {}  # customers to re-score, in order
        #: Customers an order of this run created, as inserted, not written since.
        self.inserted: dict[str, Any] = {}
        #: Of those, the orders this run created for them (all they have), while that holds.
        self.known_orders: dict[str, list[KnownOrder]] = {}
        #: Customers erased by this run, with their identity before the wipe (for the relay).
        self.erasures: dict[str, erasure.ErasureResult] = {}

    # -- helpers --

    def record(self, kind: str, id: str | None, outcome: str,
               customer_id: str | None = None) -> None:
        self.result.records.append(RecordSummary(kind, id, outcome, customer_id))
        if customer_id and outcome not in ("unchanged", "skipped_erased"):
            self.result.customers.append(customer_id)

    def skip_erased(self, kind: str) -> None:
        self.result.skipped_erased += 1
        self.record(kind, None, "skipped_erased")

    def erased(self, *, email: str | None = None, customer_id: str | None = None,
               external_ids: Mapping[str, str] | None = None) -> bool:
        """Whether the record is about an erased customer (tombstoned, or a redacted row)."""
        if erasure.is_erased(self.conn, self.tenant_id, email=email,
                             external_ids=external_ids):
            return True
        if customer_id:
            redacted = self.conn.execute(select(customers.c.redacted_at).where(
                customers.c.tenant_id == self.tenant_id, customers.c.id == customer_id)
            ).first()
            return redacted is not None and redacted[0] is not None
        return False

    def plan(self, type_: str, subject_id: str | None, item: dict[str, Any]) -> None:
        self.planned.append((type_, subject_id, item))

    def flush(self) -> None:
        """Write the planned events (the record events so far)."""
        if not self.planned:
            return
        ids = append_events(self.conn, self.tenant_id, self.planned, occurred_at=self.now,
                            source=self.source)
        for event_id, (type_, subject_id, item) in zip(ids, self.planned):
            self.emit(Event(id=event_id, tenant_id=self.tenant_id, type=type_,
                            subject_id=subject_id, occurred_at=self.now, source=self.source,
                            item={"id": event_id, **item}))
        self.planned = []

    def emit(self, event: Event) -> None:
        self.result.events.append(event.id)
        self.result.emitted.append(event)

    def customer_events(self, written: records.CustomerWrite, *,
                        consent_change: bool = False) -> None:
        """``customer.created`` / ``customer.updated``, and one consent event per channel whose
        flag this write changed - or, for a consent change (the unsubscribes and opt-ins
        topics), set on a customer it created. A customer created with consent already known
        (an import) is news as a new customer, not as a consent change."""
        if written.outcome not in (records.CREATED, records.UPDATED):
            return
        stored = written.stored or records.get_customer(self.conn, self.tenant_id, written.id)
        if written.outcome == records.CREATED:
            self.plan("customer.created", written.id, triggers.new_customer_item(stored))
            flags = [c for c in _CONSENT_FLAGS if consent_change
                     and getattr(stored.consent, _CONSENT_FLAGS[c]) is not None]
        elif written.outcome == records.UPDATED:
            if written.changed - _CONSENT_COLUMNS:
                self.plan("customer.updated", written.id, triggers.new_customer_item(stored))
            flags = [c for c in _CONSENT_FLAGS if c in written.changed]
        else:
            return
        for column in flags:
            channel = _CONSENT_FLAGS[column]
            given = bool(getattr(stored.consent, channel))
            at = (stored.consent.opted_in_at if given else stored.consent.unsubscribed_at)
            self.plan("customer.opted_in" if given else "customer.unsubscribed", written.id,
                      triggers.consent_item(customer_id=written.id, email=stored.email,
                                            channel=channel, consent=given,
                                            changed_at=at or self.now))

    def touch(self, customer_id: str) -> None:
        self.touched[customer_id] = None

    def wrote_customer(self, customer_id: str | None) -> None:
        """A customer row was written (its inserted row, if any, is stale now)."""
        self.inserted.pop(customer_id, None)

    # -- topics --

    def customer(self, customer: Customer) -> None:
        if customer.redacted_at is not None:  # a source says the customer was erased there
            self.erasure(customer)
            return
        if self.erased(email=customer.email, customer_id=customer.id,
                       external_ids=customer.external_ids):
            self.skip_erased("customer")
            return
        written = records.upsert_customer(self.conn, self.tenant_id, customer,
                                          source=self.source, now=self.now)
        self.wrote_customer(written.id)
        self.record("customer", written.id, written.outcome, written.id)
        self.customer_events(written)
        if written.outcome != records.UNCHANGED:
            self.touch(written.id)

    def consent(self, change: Customer) -> None:
        if self.erased(email=change.email, customer_id=change.id,
                       external_ids=change.external_ids):
            self.skip_erased("consent")
            return
        held = self._held(change)
        consent = change.consent
        stamped = False
        for channel in triggers.CONSENT_CHANNELS:
            wanted = getattr(consent, channel)
            if wanted is None:
                continue
            if held is None or getattr(held.consent, channel) != wanted:
                stamped = True
        if stamped:  # the change's time: as sent, else on receipt
            if any(getattr(consent, c) for c in triggers.CONSENT_CHANNELS):
                consent.opted_in_at = consent.opted_in_at or self.now
            else:
                consent.unsubscribed_at = consent.unsubscribed_at or self.now
        else:  # consent as it already is: nothing to write, not even a newer time
            consent.opted_in_at = consent.unsubscribed_at = None
        written = records.upsert_customer(self.conn, self.tenant_id, change,
                                          source=self.source, now=self.now)
        self.wrote_customer(written.id)
        self.record("consent", written.id, written.outcome, written.id)
        self.customer_events(written, consent_change=True)
        if written.outcome != records.UNCHANGED:
            self.touch(written.id)

    def _held(self, customer: Customer) -> Customer | None:
        found = None
        if customer.id:
            found = records.get_customer(self.conn, self.tenant_id, customer.id)
        if found is None and customer.email:
            found = records.find_customer(self.conn, self.tenant_id, email=customer.email)
        for service, external_id in customer.external_ids.items():
            if found is not None:
                break
            found = records.find_customer(self.conn, self.tenant_id, service=service,
                                          external_id=external_id)
        return found

    def order(self, order: Order) -> None:
        service = order.source or self.source or "shop"
        external = {service: order.customer_external_id} if order.customer_external_id else {}
        if self.erased(email=order.customer_email, customer_id=order.customer_id,
                       external_ids=external):
            self.skip_erased("order")
            return
        # A format that carries no time gives the receipt time: a stored order keeps its own.
        written = records.upsert_order(self.conn, self.tenant_id, order, source=self.source,
                                       now=self.now, placed_at_known=order.placed_at != self.now)
        self.record("order", order.id, written.outcome, written.customer_id)
        created = written.customer
        if created is not None and created.row is not None:
            self.inserted[written.customer_id] = created.row
            if written.outcome == records.CREATED:
                self.known_orders[written.customer_id] = []
        if written.outcome == records.CREATED:
            known = self.known_orders.get(written.customer_id)
            if known is not None:
                known.append(KnownOrder(order.placed_at, order.total.minor,
                                        order.total.currency, bool(order.cancelled)))
        elif written.outcome != records.UNCHANGED:
            # A stored order rewritten (perhaps moved between customers): whose orders are
            # whose, only the query knows now.
            self.known_orders.clear()
        if written.customer_created:
            stored = (created.stored if created is not None else None) or \
                records.get_customer(self.conn, self.tenant_id, written.customer_id)
            self.plan("customer.created", written.customer_id,
                      triggers.new_customer_item(stored))
        if written.outcome == records.UNCHANGED:
            return
        email = written.customer_email
        if email is records.UNKNOWN:
            email = self.conn.execute(select(customers.c.email).where(
                customers.c.tenant_id == self.tenant_id,
                customers.c.id == written.customer_id)).scalar()
        item = triggers.order_item(order, customer_id=written.customer_id, email=email)
        if written.outcome == records.CREATED and not order.cancelled:
            self.plan("order.placed", order.id, item)
        elif order.cancelled and written.was_cancelled is not True:
            self.plan("order.cancelled", order.id, item)
        self.touch(written.customer_id)

    def product(self, product: Product) -> None:
        written = records.upsert_product(self.conn, self.tenant_id, product, now=self.now)
        self.record("product", product.id, written.outcome)
        if written.outcome != records.UNCHANGED:
            self.plan("product.updated", product.id, triggers.product_item(product))

    def cart(self, cart: Cart) -> None:
        if self.erased(email=cart.email):
            self.skip_erased("cart")
            return
        written = records.upsert_customer(self.conn, self.tenant_id,
                                          Customer(email=cart.email), source=self.source,
                                          now=self.now)
        self.wrote_customer(written.id)
        self.customer_events(written)
        key = f"order:{cart.order_number}" if cart.order_number else "cart:" + _cart_hash(cart)
        inserted = self.conn.execute(insert_for(self.conn, cart_conversions).values(
            tenant_id=self.tenant_id, key=key[:200], customer_id=written.id,
            order_number=cart.order_number,
            value_minor=cart.value.minor if cart.value else None,
            currency=cart.value.currency if cart.value else None, converted_at=self.now,
        ).on_conflict_do_nothing(index_elements=["tenant_id", "key"])
            .returning(cart_conversions.c.key)).first() is not None
        self.record("cart", cart.order_number or key, "created" if inserted else "unchanged",
                    written.id)
        if inserted:
            self.plan("cart.converted", cart.order_number or key, triggers.cart_item(
                customer_id=written.id, email=cart.email, order_number=cart.order_number,
                value=cart.value, item_count=cart.item_count, promo=cart.promo))

    def erasure(self, who: Customer) -> None:
        self.flush()  # events planned about this customer are written before they are scrubbed
        HELD_EVENTS.write(self.conn)
        done = erasure.erase_customer(self.conn, self.tenant_id, email=who.email,
                                      customer_id=who.id, external_ids=who.external_ids,
                                      now=self.now)
        if done is None:
            added = erasure.add_tombstones(self.conn, self.tenant_id, email=who.email,
                                           external_ids=who.external_ids, now=self.now)
            known = added or erasure.is_erased(self.conn, self.tenant_id, email=who.email,
                                               external_ids=who.external_ids)
            self.record("erasure", None,
                        "tombstoned" if added else "unchanged" if known else "not_found")
            return
        self.touched.pop(done.customer_id, None)
        self.wrote_customer(done.customer_id)
        self.record("erasure", done.customer_id,
                    "unchanged" if done.already_redacted else "erased", done.customer_id)
        if done.event is not None:
            self.erasures[done.customer_id] = done
            self.emit(done.event)

    def rescore(self) -> None:
        for event in rescore_customers(self.conn, self.tenant_id, list(self.touched),
                                       now=self.now, settings=self.settings,
                                       inserted=self.inserted,
                                       known_orders=self.known_orders):
            self.emit(event)
        self.result.customers = list(dict.fromkeys([*self.result.customers, *self.touched]))


def _cart_hash(cart: Cart) -> str:
    """A content key for a cart without an order number (the same cart resent is the same)."""
    text = json.dumps(schemas.CartSchema().dump(cart), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_HANDLERS: dict[str, Callable[[_Run, Any], None]] = {
    "orders": _Run.order,
    "customers": _Run.customer,
    "products": _Run.product,
    "conversions": _Run.cart,
    "unsubscribes": _Run.consent,
    "opt-ins": _Run.consent,
    "erasures": _Run.erasure,
}


def ingest(conn: Connection, tenant_id: str, topic: str, fmt: str, payload: Any, *,
           source: str | None = None, now: datetime | None = None,
           currency: str | None = None) -> IngestResult:
    """Parse, store, re-score and write events for ``payload``, in the caller's transaction.

    ``source`` is recorded on the records and events (default: the format's name, e.g.
    ``replenit``; ``None`` for canonical). ``now`` is the moment of receipt (default: the
    clock), used for event times and re-scoring. ``currency`` is the business currency of
    formats whose amounts name none (default: the tenant's ``base_currency``).

    Raises :class:`UnsupportedFormat` or :class:`PayloadInvalid` before anything is written -
    except a record that contradicts what is stored (an email another customer holds, given
    with this customer's id), found while writing: that is a :class:`PayloadInvalid` too, and
    the caller's transaction must roll back, as on any exception.
    """
    now = utc(now) or utcnow()
    if currency is None:
        currency = get_settings(conn, tenant_id).base_currency
    parsed = parse(topic, fmt, payload, currency=currency, now=now)
    run = _Run(conn, tenant_id, now, source if source is not None else
               (fmt if fmt != CANONICAL else None))
    lock_tenant_events(conn, tenant_id)
    if len(parsed) > 1:  # an array: its records' lookups answered ahead, in a few queries
        with _lookahead(conn, tenant_id, [(topic, parsed)]):
            _store(run, topic, parsed, many=True)
    else:
        _store(run, topic, parsed, many=isinstance(payload, list))
    plan_deliveries(conn, tenant_id, run.result.emitted, erased=run.erasures)
    return run.result


def _store(run: _Run, topic: str, parsed: list[Any], *, many: bool) -> None:
    """Write the parsed records, their events and the touched customers' re-scores."""
    handle = _HANDLERS[topic]
    for index, record in enumerate(parsed):
        try:
            handle(run, record)
        except ValueError as exc:
            errors = {"_schema": [str(exc)]}
            raise PayloadInvalid("a record contradicts what is stored; nothing was stored",
                                 {str(index): errors} if many else errors) from None
    run.flush()
    run.rescore()


#: The topics whose records read no customer's scores and write none but through the re-score
#: (which writes the held score updates first when it reads a stored customer): the rest
#: write the held ones before they begin.
_SCORES_STAY_HELD = frozenset({"orders", "products"})


@dataclass(frozen=True)
class Submission:
    """One payload of :func:`ingest_batch`, as :func:`ingest` takes it."""

    topic: str
    fmt: str
    payload: Any
    now: datetime | None = None


def ingest_batch(conn: Connection, tenant_id: str, submissions: list[Submission], *,
                 until: float | None = None
                 ) -> list[IngestResult | PayloadInvalid | UnsupportedFormat]:
    """:func:`ingest` of each submission in turn, in the caller's transaction, with what they
    share done once: the tenant's settings read and event lock, the lookups of their records
    (:mod:`gateway.store.lookahead`), one write of all their events, of their new orders'
    lines and of their re-scores' updates (:data:`gateway.store.events.HELD_EVENTS`,
    :data:`gateway.store.records.HELD_LINES`, :data:`gateway.scoring.customer.HELD_SCORES`),
    and one delivery plan for them (an array of
    N records costs about a quarter of N single ingests; this gives N separate posts the
    same). Each submission is stored at its own ``now``; one that is refused (its parse, or a
    record that contradicts what is stored) stores nothing and its refusal is returned in its
    place, the others are stored. Their writes share one savepoint: should a submission be
    refused while storing, the batch is rolled back to it and stored again, each submission
    in a savepoint of its own. Any other error propagates (the caller's transaction must then
    roll back). ``until`` (a ``time.monotonic()`` moment): no submission is stored after it,
    and the outcomes are those of the submissions taken, in order (at least the first)."""
    if not submissions:
        return []
    settings = get_settings(conn, tenant_id)
    lock_tenant_events(conn, tenant_id)
    parsed = [_parsed(sub, settings) for sub in submissions]
    batch = _Batch(conn, tenant_id, settings)
    stored = [(item.submission.topic, item.records) for item in parsed
              if not isinstance(item.records, Exception)]
    with _Held.holding(conn) as held, _lookahead(conn, tenant_id, stored):
        try:
            with conn.begin_nested():
                batch.store(parsed, until=until, held=None)
        except _RefusedInBatch:
            held.drop()
            batch = _Batch(conn, tenant_id, settings)
            batch.store(parsed, until=until, held=held)
    plan_deliveries(conn, tenant_id, batch.emitted, erased=batch.erasures)
    return batch.outcomes


@dataclass(frozen=True)
class _Parsed:
    """A submission with its moment and its records (or its refusal)."""

    submission: Submission
    now: datetime
    records: list[Any] | PayloadInvalid | UnsupportedFormat


def _parsed(sub: Submission, settings: TenantSettings) -> _Parsed:
    now = utc(sub.now) or utcnow()
    try:
        found: Any = parse(sub.topic, sub.fmt, sub.payload, currency=settings.base_currency,
                           now=now)
    except (PayloadInvalid, UnsupportedFormat) as exc:
        found = exc
    return _Parsed(sub, now, found)


def _lookahead(conn: Connection, tenant_id: str, parsed: list[tuple[str, list[Any]]]) -> Any:
    """:func:`gateway.store.lookahead.lookahead` for these records, ``(topic, records)``."""
    emails: list[str | None] = []
    order_ids: list[str | None] = []
    erases = False
    for topic, records_ in parsed:
        erases = erases or topic == "erasures"
        for record in records_:
            if isinstance(record, Order):
                emails.append(erasure.normal_email(record.customer_email))
                order_ids.append(record.id)
            elif isinstance(record, (Customer, Cart)):
                emails.append(erasure.normal_email(record.email))
                erases = erases or getattr(record, "redacted_at", None) is not None
    hashes = None if erases else [
        digest for email in set(emails) if email
        for digest in erasure.tombstone_hashes(tenant_id, email, None)]
    return lookahead(conn, tenant_id, emails=emails, order_ids=order_ids,
                     tombstone_hashes=hashes)


@dataclass(frozen=True)
class _Held:
    """The writes :func:`ingest_batch` holds back to its end (its events, its new orders'
    lines, its re-scores' updates), written or forgotten together."""

    KINDS: ClassVar[tuple[HeldWrites, ...]] = (HELD_EVENTS, records.HELD_LINES, HELD_SCORES)

    conn: Connection

    @classmethod
    @contextmanager
    def holding(cls, conn: Connection) -> Iterator[_Held]:
        with ExitStack() as stack:
            for kind in cls.KINDS:
                stack.enter_context(kind.holding(conn))
            yield cls(conn)

    def write(self) -> None:
        for kind in self.KINDS:
            kind.write(self.conn)

    def drop(self) -> None:
        for kind in self.KINDS:
            kind.drop(self.conn)


class _RefusedInBatch(Exception):
    """A submission was refused while storing, in a batch without a savepoint of its own."""


class _Batch:
    """What :func:`ingest_batch` gathers from its submissions."""

    def __init__(self, conn: Connection, tenant_id: str, settings: TenantSettings) -> None:
        self.conn, self.tenant_id, self.settings = conn, tenant_id, settings
        self.outcomes: list[IngestResult | PayloadInvalid | UnsupportedFormat] = []
        self.emitted: list[Event] = []
        self.erasures: dict[str, erasure.ErasureResult] = {}

    def store(self, parsed: list[_Parsed], *, until: float | None,
              held: _Held | None) -> None:
        """Store each submission in turn; ``held`` (the writes held back): each in a
        savepoint of its own, else a refusal while storing raises :class:`_RefusedInBatch`."""
        conn = self.conn
        for item in parsed:
            if self.outcomes and until is not None and time.monotonic() >= until:
                break
            if isinstance(item.records, Exception):
                self.outcomes.append(item.records)
                continue
            sub = item.submission
            run = _Run(conn, self.tenant_id, item.now,
                       sub.fmt if sub.fmt != CANONICAL else None, self.settings)
            many = isinstance(sub.payload, list)
            if held is None:
                if sub.topic not in _SCORES_STAY_HELD:
                    HELD_SCORES.write(conn)
                try:
                    _store(run, sub.topic, item.records, many=many)
                except PayloadInvalid:
                    raise _RefusedInBatch() from None
            else:
                # What the submissions before held is written outside its savepoint, so that
                # nothing it writes out of what is held can be rolled back with it.
                held.write()
                try:
                    with conn.begin_nested():
                        _store(run, sub.topic, item.records, many=many)
                except PayloadInvalid as exc:
                    held.drop()  # its savepoint was rolled back
                    self.outcomes.append(exc)
                    continue
            self.outcomes.append(run.result)
            self.emitted.extend(run.result.emitted)
            self.erasures.update(run.erasures)


def update_customer(conn: Connection, tenant_id: str, payload: Any, *, fmt: str = "rekindle",
                    source: str | None = None, now: datetime | None = None) -> CustomerUpdate:
    """The update-customer action: ingest one customer (default format: Rekindle's
    update-customer body) and return it re-scored in the same transaction, with its
    ``status`` and ``engagement_score`` as stored. An array is refused (one customer)."""
    if isinstance(payload, list):
        raise PayloadInvalid("update-customer takes one customer, not an array",
                             {"_schema": ["Send one JSON object."]})
    result = ingest(conn, tenant_id, "customers", fmt, payload, source=source, now=now)
    summary = result.records[0]
    if summary.outcome == "skipped_erased" or summary.customer_id is None:
        return CustomerUpdate(result=result, customer=None)
    customer = records.get_customer(conn, tenant_id, summary.customer_id)
    returned = any(e.type == "customer.returned" and e.subject_id == summary.customer_id
                   for e in result.emitted)
    return CustomerUpdate(result=result, customer=customer, returned=returned)


def record_winback_sent(conn: Connection, tenant_id: str, *, email: str | None = None,
                        customer_id: str | None = None,
                        at: datetime | None = None) -> WinbackSent | None:
    """The record-winback-sent action: a win-back message to this customer starts ``at``
    (default now); see :func:`gateway.scoring.record_winback`. ``None`` when the tenant holds
    no such (unerased) customer."""
    if customer_id:
        found = records.get_customer(conn, tenant_id, customer_id)
    elif email:
        try:
            found = records.find_customer(conn, tenant_id, email=email)
        except ValueError:
            found = None
    else:
        raise ValueError("name the customer by email or customer id")
    if found is None or found.redacted_at is not None:
        return None
    at = utc(at) or utcnow()
    attributable = record_winback(conn, tenant_id, found.id, at=at)
    return WinbackSent(customer_id=found.id, status=found.status, attributable=attributable,
                       started_at=at)
