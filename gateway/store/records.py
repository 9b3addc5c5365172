"""Customers, orders and products: upserts by natural key, reads, all scoped to one tenant.

Upserts merge: a field the incoming record leaves empty (``None``, or an empty list/dict) keeps
the stored value, so a webhook that sends only an email and a phone does not wipe a name. The
same record twice leaves one row with the later values.

Every upsert says what it did: ``outcome`` is ``created``, ``updated`` or ``unchanged`` (a
record that changes nothing writes nothing, not even ``updated_at``), and ``changed`` names the
columns it changed (``external_ids`` and ``lines`` / ``variants`` for the child rows). The
customer and order results still unpack as the tuples they always were
(``customer_id, created = upsert_customer(...)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from gateway.model import (
    Address,
    Consent,
    Customer,
    Money,
    Order,
    OrderLine,
    Product,
    Variant,
    normalise_email,
    utc,
)
from gateway.store import lookahead
from gateway.store.held import HeldWrites
from gateway.store.tables import (
    customer_external_ids,
    customers,
    order_lines,
    orders,
    products,
    variants,
)
from gateway.store.types import new_id, utcnow
from gateway.store.upsert import upsert

# ---------------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------------


def _customer_values(c: Customer) -> dict[str, Any]:
    """The columns a canonical customer sets; empty values are left out (they merge)."""
    consent = c.consent or Consent()
    values: dict[str, Any] = {
        "email": normalise_email(c.email),
        "first_name": c.first_name,
        "last_name": c.last_name,
        "phone": c.phone,
        "language": c.language,
        "timezone": c.timezone,
        "address": asdict(c.address) if c.address else None,
        "birthdate": c.birthdate,
        "gender": c.gender,
        "tags": list(c.tags) or None,
        "metadata": dict(c.metadata) or None,
        "consent_email": consent.email,
        "consent_sms": consent.sms,
        "consent_whatsapp": consent.whatsapp,
        "consent_push": consent.push,
        "consent_gdpr": consent.gdpr_processing,
        "opted_in_at": consent.opted_in_at,
        "unsubscribed_at": consent.unsubscribed_at,
        "reported_order_count": c.order_count,
        "reported_ltv_minor": c.lifetime_value.minor if c.lifetime_value else None,
        "reported_ltv_currency": c.lifetime_value.currency if c.lifetime_value else None,
        "reported_first_order_at": c.first_order_at,
        "reported_last_order_at": c.last_order_at,
        "reported_cohort": c.cohort,
        "acquisition_source": c.acquisition_source,
        "redacted_at": c.redacted_at,
    }
    return {k: v for k, v in values.items() if v is not None}


def customer_from_row(row: Any, external_ids: dict[str, str] | None = None) -> Customer:
    ltv = None
    if row.ltv_minor is not None and row.ltv_currency:
        ltv = Money(row.ltv_minor, row.ltv_currency)
    elif row.reported_ltv_minor is not None and row.reported_ltv_currency:
        ltv = Money(row.reported_ltv_minor, row.reported_ltv_currency)
    return Customer(
        id=row.id,
        email=row.email,
        external_ids=dict(external_ids or {}),
        first_name=row.first_name,
        last_name=row.last_name,
        phone=row.phone,
        language=row.language,
        timezone=row.timezone,
        address=Address(**row.address) if row.address else None,
        birthdate=row.birthdate,
        gender=row.gender,
        tags=list(row.tags or []),
        metadata=dict(row.metadata or {}),
        consent=Consent(
            email=row.consent_email,
            sms=row.consent_sms,
            whatsapp=row.consent_whatsapp,
            push=row.consent_push,
            gdpr_processing=row.consent_gdpr,
            opted_in_at=row.opted_in_at,
            unsubscribed_at=row.unsubscribed_at,
        ),
        lifetime_value=ltv,
        order_count=row.order_count if row.order_count else row.reported_order_count,
        first_order_at=row.first_order_at or row.reported_first_order_at,
        last_order_at=row.last_order_at or row.reported_last_order_at,
        recency_score=row.recency_score,
        frequency_score=row.frequency_score,
        monetary_score=row.monetary_score,
        rfm=row.rfm,
        grade=row.grade,
        segments=list(row.segments or []),
        cohort=row.reported_cohort,
        acquisition_source=row.acquisition_source,
        status=row.status,
        engagement_score=row.engagement_score,
        returned_at=row.returned_at,
        redacted_at=row.redacted_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# The statements read per record, built once (their compiled form is cached by SQLAlchemy;
# building the expression each call would cost more than running it).
_ext = customer_external_ids.c
_EXTERNAL_IDS_OF = select(customer_external_ids).where(
    _ext.tenant_id == bindparam("tenant"), _ext.customer_id.in_(bindparam("ids", expanding=True)))
_CUSTOMER_BY_ID = select(customers).where(customers.c.tenant_id == bindparam("tenant"),
                                          customers.c.id == bindparam("id"))
_CUSTOMER_BY_EMAIL = select(customers).where(customers.c.tenant_id == bindparam("tenant"),
                                             customers.c.email == bindparam("email"))
_ID_BY_EMAIL = select(customers.c.id).where(customers.c.tenant_id == bindparam("tenant"),
                                            customers.c.email == bindparam("email"))
_ID_BY_EXTERNAL_ID = select(_ext.customer_id).where(
    _ext.tenant_id == bindparam("tenant"), _ext.service == bindparam("service"),
    _ext.external_id == bindparam("external_id"))
_RELEASE_EXTERNAL_ID = delete(customer_external_ids).where(
    _ext.tenant_id == bindparam("tenant"), _ext.service == bindparam("service"),
    _ext.external_id == bindparam("external_id"), _ext.customer_id != bindparam("customer"))


def _external_ids_of(conn: Connection, tenant_id: str,
                     customer_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each customer's external ids by service, for a page of customers in one query."""
    found: dict[str, dict[str, str]] = {cid: {} for cid in customer_ids}
    if customer_ids:
        rows = conn.execute(_EXTERNAL_IDS_OF, {"tenant": tenant_id, "ids": list(customer_ids)})
        for row in rows:
            found[row.customer_id][row.service] = row.external_id
    return found


def get_customer(conn: Connection, tenant_id: str, customer_id: str) -> Customer | None:
    row = conn.execute(_CUSTOMER_BY_ID, {"tenant": tenant_id, "id": customer_id}).first()
    if row is None:
        return None
    return customer_from_row(row, _external_ids_of(conn, tenant_id, [row.id])[row.id])


def customer_id_for(conn: Connection, tenant_id: str, *, email: str | None = None,
                    service: str | None = None, external_id: str | None = None) -> str | None:
    """The gateway id of the customer with this email, or this service's external id."""
    return _customer_by_key(conn, tenant_id, email=email, service=service,
                            external_id=external_id)[0]


#: An email not learnt (:func:`_customer_by_key`, :class:`OrderWrite`).
UNKNOWN = object()


def _customer_by_key(conn: Connection, tenant_id: str, *, email: str | None,
                     service: str | None, external_id: str | None
                     ) -> tuple[str | None, str | None | object]:
    """:func:`customer_id_for`, and the email the customer was found by (normalised;
    :data:`UNKNOWN` when found by the external id or not found). An email the batch being
    ingested is known not to hold (:func:`gateway.store.lookahead.email_absent`) is not
    looked up."""
    if email:
        address = normalise_email(email)
        found = None if lookahead.email_absent(conn, tenant_id, address) else conn.execute(
            _ID_BY_EMAIL, {"tenant": tenant_id, "email": address}).scalar()
        if found:
            return found, address
    if service and external_id:
        return conn.execute(_ID_BY_EXTERNAL_ID, {"tenant": tenant_id, "service": service,
                                                 "external_id": external_id}).scalar(), UNKNOWN
    return None, UNKNOWN


def find_customer(conn: Connection, tenant_id: str, *, email: str | None = None,
                  service: str | None = None, external_id: str | None = None) -> Customer | None:
    found = customer_id_for(conn, tenant_id, email=email, service=service,
                            external_id=external_id)
    return get_customer(conn, tenant_id, found) if found else None


CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


class CustomerWrite(tuple):
    """``(customer_id, created)``, as :func:`upsert_customer` always returned, with
    ``outcome`` and ``changed`` (the columns written; ``external_ids`` when those changed)."""

    id: str
    outcome: str
    changed: frozenset[str]
    #: The customer as stored, and its row, when the write knows them without reading them
    #: back (a created one: the insert returns its row); ``None`` otherwise.
    stored: Customer | None
    row: Any

    def __new__(cls, customer_id: str, outcome: str, changed: frozenset[str] = frozenset(),
                stored: Customer | None = None, row: Any = None) -> "CustomerWrite":
        self = super().__new__(cls, (customer_id, outcome == CREATED))
        self.id, self.outcome, self.changed = customer_id, outcome, frozenset(changed)
        self.stored, self.row = stored, row
        return self

    @property
    def created(self) -> bool:
        return self.outcome == CREATED


def _differs(stored: Any, new: Any) -> bool:
    if isinstance(stored, datetime) and isinstance(new, datetime):
        return utc(stored) != utc(new)
    return stored != new


def _changed_columns(row: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that differ from what ``row`` holds."""
    return {k: v for k, v in values.items() if _differs(getattr(row, k), v)}


def _set_external_ids(conn: Connection, tenant_id: str, customer_id: str,
                      external_ids: Mapping[str, str],
                      held: Mapping[str, str] | None = None) -> bool:
    """Give the customer these external ids (one per service); returns whether any changed.
    ``held``: the ones the customer has now, when the caller knows (read otherwise).

    An external id another customer of the tenant holds moves to this one: the latest record
    that names it says whose it is.
    """
    wanted = {service: str(ext) for service, ext in external_ids.items() if ext and service}
    if not wanted:
        return False
    if held is None:
        held = _external_ids_of(conn, tenant_id, [customer_id])[customer_id]
    changed = False
    for service, external_id in wanted.items():
        if held.get(service) == external_id:
            continue
        changed = True
        conn.execute(_RELEASE_EXTERNAL_ID, {"tenant": tenant_id, "service": service,
                                            "external_id": external_id,
                                            "customer": customer_id})
        upsert(conn, customer_external_ids,
               {"tenant_id": tenant_id, "customer_id": customer_id, "service": service,
                "external_id": external_id},
               keys=["tenant_id", "service", "customer_id"], update=["external_id"])
    return changed


def _existing_customer(conn: Connection, tenant_id: str, customer: Customer,
                       email: str | None) -> Any:
    """The stored row this customer is: by the gateway id (only this tenant's), else by email,
    else by any of its external ids."""
    if customer.id:
        row = conn.execute(_CUSTOMER_BY_ID, {"tenant": tenant_id, "id": customer.id}).first()
        if row is not None:
            return row
    if email:
        row = conn.execute(_CUSTOMER_BY_EMAIL, {"tenant": tenant_id, "email": email}).first()
        if row is not None:
            return row
    for service, external_id in customer.external_ids.items():
        found = customer_id_for(conn, tenant_id, service=service, external_id=external_id)
        if found:
            return conn.execute(_CUSTOMER_BY_ID, {"tenant": tenant_id, "id": found}).first()
    return None


def upsert_customer(conn: Connection, tenant_id: str, customer: Customer,
                    *, source: str | None = None,
                    now: datetime | None = None) -> CustomerWrite:
    """Insert or merge a customer: the row with its gateway id (this tenant's only), else its
    email, else any of its external ids. A match by id or external id takes the record's email
    when it brings one (the customer changed address at that service).

    Returns a :class:`CustomerWrite` (unpacks as ``(customer_id, created)``). A record that
    changes nothing writes nothing (``unchanged``). A customer with neither email nor external
    id is refused (``ValueError``): there would be no way to find it again; so is an email that
    another customer of the tenant holds, given with this customer's id.
    """
    values = _customer_values(customer)
    now = now or utcnow()
    email = values.get("email")
    if not email and not customer.external_ids and not customer.id:
        raise ValueError("a customer needs an email or an external id")
    row = _existing_customer(conn, tenant_id, customer, email)
    if row is None and not email and not customer.external_ids:
        raise ValueError("a customer needs an email or an external id")
    if row is not None:
        changes = _changed_columns(row, values)
        if "email" in changes and customer_id_for(conn, tenant_id, email=email):
            raise ValueError(f"{email} is the email of another customer")
        if changes:
            conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                                 customers.c.id == row.id)
                         .values(**changes, updated_at=now,
                                 **({"source": source} if source else {})))
        moved = _set_external_ids(conn, tenant_id, row.id, customer.external_ids)
        changed = set(changes) | ({"external_ids"} if moved else set())
        if moved and not changes:
            conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                                 customers.c.id == row.id)
                         .values(updated_at=now))
        return CustomerWrite(row.id, UPDATED if changed else UNCHANGED, frozenset(changed))
    return _insert_customer(conn, tenant_id, customer, values, source=source, now=now)


def _insert_customer(conn: Connection, tenant_id: str, customer: Customer,
                     values: dict[str, Any], *, source: str | None,
                     now: datetime) -> CustomerWrite:
    """Insert a customer the tenant holds under none of its keys (the caller looked), with
    its external ids; the write carries the stored customer. Should a concurrent writer
    outside the tenant's event lock have inserted its email meanwhile, that row is merged
    instead (``updated``)."""
    new = new_id("cus")
    email = values.get("email")
    row_values = {"id": new, "tenant_id": tenant_id, "tags": [], "metadata": {},
                  "segments": [], "source": source, "created_at": now, "updated_at": now,
                  **values}
    if email:
        merge = [c for c in values if c != "email"] + ["updated_at"]
        row = upsert(conn, customers, row_values, keys=["tenant_id", "email"], update=merge,
                     returning=list(customers.c)).one()
    else:
        row = conn.execute(customers.insert().values(row_values)
                           .returning(*customers.c)).one()
    if row.id != new:
        _set_external_ids(conn, tenant_id, row.id, customer.external_ids)
        return CustomerWrite(row.id, UPDATED, frozenset(values))
    wanted = {service: str(ext) for service, ext in customer.external_ids.items()
              if ext and service}
    _set_external_ids(conn, tenant_id, new, wanted, held={})
    return CustomerWrite(new, CREATED, frozenset(values) | {"external_ids"},
                         stored=customer_from_row(row, wanted), row=row)


def list_customers(conn: Connection, tenant_id: str, *, limit: int = 100,
                   after_id: str | None = None) -> list[Customer]:
    """A page of customers in id order (ids sort by creation)."""
    stmt = select(customers).where(customers.c.tenant_id == tenant_id)
    if after_id:
        stmt = stmt.where(customers.c.id > after_id)
    rows = conn.execute(stmt.order_by(customers.c.id).limit(limit)).all()
    external = _external_ids_of(conn, tenant_id, [row.id for row in rows])
    return [customer_from_row(row, external[row.id]) for row in rows]


# ---------------------------------------------------------------------------------------------
# Orders
# ---------------------------------------------------------------------------------------------


_ORDER_BY_EXTERNAL_ID = select(orders).where(orders.c.tenant_id == bindparam("tenant"),
                                             orders.c.external_id == bindparam("external_id"))

class OrderWrite(tuple):
    """``(order_id, created, customer_id)``, as :func:`upsert_order` always returned, with
    ``outcome``, ``changed`` (columns, and ``lines``), ``customer_created`` (the order named a
    customer the gateway had never seen, now created minimally) and ``was_cancelled`` (the
    stored order's cancelled flag before this write; ``None`` for a new order)."""

    id: str
    customer_id: str
    outcome: str
    changed: frozenset[str]
    customer_created: bool
    was_cancelled: bool | None
    #: What the write learnt of the order's customer without reading it back: ``customer``,
    #: its write (``stored`` and ``row`` set when created for this order); ``customer_email``,
    #: its email when created or found by it (else :data:`UNKNOWN`).
    customer: CustomerWrite | None
    customer_email: str | None | object

    def __new__(cls, order_id: str, customer_id: str, outcome: str, *,
                changed: frozenset[str] = frozenset(), customer_created: bool = False,
                was_cancelled: bool | None = None,
                customer: CustomerWrite | None = None,
                customer_email: str | None | object = UNKNOWN) -> "OrderWrite":
        self = super().__new__(cls, (order_id, outcome == CREATED, customer_id))
        self.id, self.customer_id, self.outcome = order_id, customer_id, outcome
        self.changed, self.customer_created = frozenset(changed), customer_created
        self.was_cancelled = was_cancelled
        self.customer, self.customer_email = customer, customer_email
        return self

    @property
    def created(self) -> bool:
        return self.outcome == CREATED


def _resolve_order_customer(conn: Connection, tenant_id: str, order: Order,
                            source: str | None,
                            now: datetime) -> tuple[CustomerWrite, str | None | object]:
    """The order's customer (as :func:`customer_id_for` finds it, by the order's customer id,
    email or id at its service), and its email when that is known (:data:`UNKNOWN`
    otherwise). A customer the gateway has never seen is created minimally (from its email
    or the shop's id): ``created``, with its ``stored`` row; one found is ``unchanged``."""
    if order.customer_id:
        found = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == tenant_id, customers.c.id == order.customer_id)).scalar()
        if found:
            return CustomerWrite(found, UNCHANGED), UNKNOWN
    service = order.source or source
    found, email = _customer_by_key(conn, tenant_id, email=order.customer_email,
                                    service=service, external_id=order.customer_external_id)
    if found:
        return CustomerWrite(found, UNCHANGED), email
    if not order.customer_email and not order.customer_external_id:
        raise ValueError(f"order {order.id!r} names no customer (email or customer id)")
    minimal = Customer(email=order.customer_email,
                       external_ids={service: order.customer_external_id}
                       if service and order.customer_external_id else {})
    if not minimal.email and not minimal.external_ids:
        minimal.external_ids = {"shop": order.customer_external_id}
        written = upsert_customer(conn, tenant_id, minimal, source=source, now=now)
    else:  # looked up by every key it has (its email, its id at this service): not found
        written = _insert_customer(conn, tenant_id, minimal, _customer_values(minimal),
                                   source=source, now=now)
    return written, (written.stored.email if written.stored is not None else UNKNOWN)


def _line_values(tenant_id: str, order_id: str, i: int, line: OrderLine) -> dict[str, Any]:
    return {"order_id": order_id, "line_no": i, "tenant_id": tenant_id,
            "product_id": line.product_id, "sku": line.sku, "name": line.name,
            "quantity": line.quantity, "unit_price_minor": line.unit_price.minor,
            "original_price_minor": line.original_price.minor if line.original_price else None,
            "size": line.size, "colour": line.colour, "brand": line.brand,
            "gift": bool(line.gift)}


def _insert_lines(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(order_lines.insert(), rows)


#: The lines of the orders :func:`upsert_order` creates, held back inside
#: ``HELD_LINES.holding(conn)`` and inserted together (one statement for a batch of orders);
#: anything here that reads or replaces stored lines writes the held ones first.
HELD_LINES = HeldWrites("order_lines", _insert_lines)


def _stored_lines(conn: Connection, tenant_id: str, order_id: str) -> list[dict[str, Any]]:
    HELD_LINES.write(conn)
    rows = conn.execute(select(order_lines).where(
        order_lines.c.tenant_id == tenant_id, order_lines.c.order_id == order_id
    ).order_by(order_lines.c.line_no)).mappings().all()
    return [dict(row) for row in rows]


def upsert_order(conn: Connection, tenant_id: str, order: Order,
                 *, source: str | None = None, now: datetime | None = None,
                 placed_at_known: bool = True) -> OrderWrite:
    """Insert or replace an order (keyed by the shop's order id) and its lines.

    Returns an :class:`OrderWrite` (unpacks as ``(order_id, created, customer_id)``). An order
    equal to the stored one (its customer, time, total, cancelled flag and lines; the source
    does not count) writes nothing: ``unchanged``. ``placed_at_known=False`` says the order's
    ``placed_at`` is only when it was received (its format carries no time): a stored order
    keeps its own.
    """
    if not order.id:
        raise ValueError("an order needs an id")
    for line in order.lines:
        if line.unit_price.currency != order.total.currency:
            raise ValueError(f"order {order.id!r}: line currency differs from the order's")
    now = now or utcnow()
    customer, email = _resolve_order_customer(conn, tenant_id, order, source, now)
    customer_id, customer_created = customer.id, customer.created
    known = {"customer": customer, "customer_email": email}
    values = {
        "customer_id": customer_id,
        "placed_at": order.placed_at,
        "total_minor": order.total.minor,
        "currency": order.total.currency,
        "cancelled": bool(order.cancelled),
    }
    existing = None if lookahead.order_absent(conn, tenant_id, order.id) else conn.execute(
        _ORDER_BY_EXTERNAL_ID, {"tenant": tenant_id, "external_id": order.id}).first()
    new = new_id("ord")
    if existing is not None:
        if not placed_at_known:
            values["placed_at"] = existing.placed_at
        changes = _changed_columns(existing, values)
        lines = [_line_values(tenant_id, existing.id, i, line)
                 for i, line in enumerate(order.lines)]
        lines_changed = _stored_lines(conn, tenant_id, existing.id) != lines
        if not changes and not lines_changed:
            return OrderWrite(existing.id, customer_id, UNCHANGED,
                              customer_created=customer_created,
                              was_cancelled=existing.cancelled, **known)
        order_id = existing.id
        conn.execute(update(orders).where(orders.c.tenant_id == tenant_id,
                                          orders.c.id == order_id)
                     .values(**changes, source=order.source or source, updated_at=now))
        outcome = UPDATED
        changed = set(changes) | ({"lines"} if lines_changed else set())
    else:
        result = upsert(conn, orders,
                        {"id": new, "tenant_id": tenant_id, "external_id": order.id,
                         "created_at": now, "updated_at": now, "source": order.source or source,
                         **values},
                        keys=["tenant_id", "external_id"],
                        update=[*values, "source", "updated_at"], returning=[orders.c.id])
        order_id = result.scalar_one()
        outcome = CREATED if order_id == new else UPDATED
        changed, lines_changed = set(values) | {"lines"}, True
    if lines_changed:
        new_lines = [_line_values(tenant_id, order_id, i, line)
                     for i, line in enumerate(order.lines)]
        held = HELD_LINES.rows(conn)
        if outcome == CREATED and held is not None:  # written with the batch's others
            held.extend(new_lines)
        else:
            if outcome != CREATED:  # an order just inserted has no lines to replace
                HELD_LINES.write(conn)
                conn.execute(delete(order_lines).where(order_lines.c.tenant_id == tenant_id,
                                                       order_lines.c.order_id == order_id))
            if new_lines:
                conn.execute(order_lines.insert(), new_lines)
    return OrderWrite(order_id, customer_id, outcome, changed=frozenset(changed),
                      customer_created=customer_created,
                      was_cancelled=existing.cancelled if existing is not None else None,
                      **known)


def get_order(conn: Connection, tenant_id: str, external_id: str) -> Order | None:
    row = conn.execute(select(orders, customers.c.email).join(
        customers, customers.c.id == orders.c.customer_id).where(
        orders.c.tenant_id == tenant_id, orders.c.external_id == external_id)).first()
    if row is None:
        return None
    HELD_LINES.write(conn)
    lines = conn.execute(select(order_lines).where(
        order_lines.c.tenant_id == tenant_id, order_lines.c.order_id == row.id
    ).order_by(order_lines.c.line_no)).all()
    currency = row.currency
    return Order(
        id=row.external_id,
        placed_at=row.placed_at,
        total=Money(row.total_minor, currency),
        customer_id=row.customer_id,
        customer_email=row.email,
        cancelled=row.cancelled,
        source=row.source,
        lines=[OrderLine(
            product_id=line.product_id, sku=line.sku, name=line.name, quantity=line.quantity,
            unit_price=Money(line.unit_price_minor, currency),
            original_price=Money(line.original_price_minor, currency)
            if line.original_price_minor is not None else None,
            size=line.size, colour=line.colour, brand=line.brand, gift=line.gift,
        ) for line in lines],
    )


# ---------------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductWrite:
    """What :func:`upsert_product` did: ``outcome`` and ``changed`` (columns, and
    ``variants``)."""

    id: str
    outcome: str
    changed: frozenset[str] = frozenset()

    @property
    def created(self) -> bool:
        return self.outcome == CREATED


def _stored_variants(conn: Connection, tenant_id: str, product_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(variants).where(
        variants.c.tenant_id == tenant_id, variants.c.product_id == product_id
    ).order_by(variants.c.id)).mappings().all()
    return [dict(row) for row in rows]


def upsert_product(conn: Connection, tenant_id: str, product: Product, *,
                   now: datetime | None = None) -> ProductWrite:
    """Insert or replace a product and its variants (keyed by the shop's product id).

    A product equal to the stored one (name, taxonomy, flag and variants) writes nothing:
    ``unchanged``.
    """
    if not product.id:
        raise ValueError("a product needs an id")
    now = now or utcnow()
    values = {"name": product.name, "taxonomy": list(product.taxonomy),
              "offline_exclusive": product.offline_exclusive}
    existing = conn.execute(select(products).where(
        products.c.tenant_id == tenant_id, products.c.id == product.id)).first()
    wanted = sorted((_variant_values(tenant_id, product.id, v) for v in product.variants),
                    key=lambda v: v["id"])
    if existing is not None:
        changes = _changed_columns(existing, values)
        variants_changed = _stored_variants(conn, tenant_id, product.id) != wanted
        if not changes and not variants_changed:
            return ProductWrite(product.id, UNCHANGED)
        outcome = UPDATED
        changed = set(changes) | ({"variants"} if variants_changed else set())
    else:
        outcome, changed, variants_changed = CREATED, set(values) | {"variants"}, True
    upsert(conn, products,
           {"tenant_id": tenant_id, "id": product.id, **values, "created_at": now,
            "updated_at": now},
           keys=["tenant_id", "id"], update=[*values, "updated_at"])
    if variants_changed:
        conn.execute(delete(variants).where(variants.c.tenant_id == tenant_id,
                                            variants.c.product_id == product.id))
        if wanted:
            conn.execute(variants.insert(), wanted)
    return ProductWrite(product.id, outcome, frozenset(changed))


def _variant_values(tenant_id: str, product_id: str, v: Variant) -> dict[str, Any]:
    currency = (v.price or v.sale_price).currency if (v.price or v.sale_price) else None
    return {"tenant_id": tenant_id, "product_id": product_id, "id": v.id, "sku": v.sku,
            "name": v.name, "price_minor": v.price.minor if v.price else None,
            "sale_price_minor": v.sale_price.minor if v.sale_price else None,
            "currency": currency, "available": v.available, "stock": v.stock, "image": v.image,
            "size": v.size, "language": v.language, "brand": v.brand}


def product_from_rows(row: Any, variant_rows: Sequence[Any]) -> Product:
    """A canonical product from its ``products`` row and its ``variants`` rows."""
    return Product(
        id=row.id, name=row.name, taxonomy=list(row.taxonomy or []),
        offline_exclusive=row.offline_exclusive,
        variants=[Variant(
            id=v.id, sku=v.sku, name=v.name,
            price=Money(v.price_minor, v.currency) if v.price_minor is not None else None,
            sale_price=Money(v.sale_price_minor, v.currency)
            if v.sale_price_minor is not None else None,
            available=v.available, stock=v.stock, image=v.image, size=v.size,
            language=v.language, brand=v.brand,
        ) for v in variant_rows],
    )


def get_product(conn: Connection, tenant_id: str, product_id: str) -> Product | None:
    row = conn.execute(select(products).where(products.c.tenant_id == tenant_id,
                                              products.c.id == product_id)).first()
    if row is None:
        return None
    rows = conn.execute(select(variants).where(
        and_(variants.c.tenant_id == tenant_id, variants.c.product_id == product_id)
    ).order_by(variants.c.id)).all()
    return product_from_rows(row, rows)


def count_rows(conn: Connection, tenant_id: str) -> dict[str, int]:
    """Rows held per kind for one tenant (for admin views and tests)."""
    return {
        name: conn.execute(select(func.count()).select_from(table)
                           .where(table.c.tenant_id == tenant_id)).scalar_one()
        for name, table in (("customers", customers), ("orders", orders),
                            ("products", products))
    }

