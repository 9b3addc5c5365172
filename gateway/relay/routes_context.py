"""What a route's planner reads: the tenant's switches and connections, and the canonical
records an event is about, loaded from the store in bulk (:class:`PlanContext`).

One :func:`open_context` is one query: the tenant's settings joined with its connections (the
connection the relay sends through, ``default``: :data:`gateway.relay.clients.CONNECTION_NAME`).
Records are read through :func:`prefetch` a batch of events at a time (one query per kind, and
one for the customers' external ids), then served from memory; a record asked for that was not
prefetched is read on demand. Every query takes the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, and_, select

from gateway.model import Customer, Event, Money, Order, OrderLine, Product
from gateway.relay.clients import CONNECTION_NAME
from gateway.scoring.rules import WINBACK_STATUSES
from gateway.store.records import customer_from_row, product_from_rows
from gateway.store.tables import (
    connections,
    customer_external_ids,
    customers,
    order_lines,
    orders,
    products,
    tenants,
    variants,
)
from gateway.tenant_settings import TenantSettings, resolve

_CHUNK = 500

#: Event types whose subject is the customer itself (others name it in ``item.customer_id``).
CUSTOMER_SUBJECTS = frozenset({
    "customer.created", "customer.updated", "customer.status_changed", "customer.returned",
    "customer.unsubscribed", "customer.opted_in", "customer.redacted"})
ORDER_SUBJECTS = frozenset({"order.placed", "order.cancelled"})
PRODUCT_SUBJECTS = frozenset({"product.updated"})


@dataclass(frozen=True)
class WinbackState:
    """What the win-back tag and its message start are decided by (customer columns the
    canonical :class:`~gateway.model.Customer` does not carry)."""

    status: str | None
    status_changed_at: datetime | None
    returned_at: datetime | None
    winback_started_at: datetime | None

    @property
    def in_winback(self) -> bool:
        """Lapsed or lost, and not returned since the status was entered."""
        if self.status not in WINBACK_STATUSES:
            return False
        if self.returned_at is None:
            return True
        return self.status_changed_at is not None and self.returned_at < self.status_changed_at

    @property
    def message_recorded(self) -> bool:
        """A win-back message start is recorded for the current status already."""
        if self.winback_started_at is None:
            return False
        return self.status_changed_at is None or self.winback_started_at >= self.status_changed_at


@dataclass
class PlanContext:
    """The tenant's relay state for one planning call, and the records it read.

    ``connected`` maps each connector the tenant has a connection for to that connection's
    options (``currency``, ``site_id``...); ``erased`` maps a customer erased in this
    transaction to its identity before the wipe (an object with ``emails``/``email`` and
    ``external_ids``), which only the caller of ``ingest`` still knows.
    """

    tenant_id: str
    settings: TenantSettings
    connected: Mapping[str, Mapping[str, Any]]
    erased: Mapping[str, Any] = field(default_factory=dict)
    _customers: dict[str, Customer | None] = field(default_factory=dict)
    _winback: dict[str, WinbackState] = field(default_factory=dict)
    _orders: dict[str, Order | None] = field(default_factory=dict)
    _products: dict[str, Product | None] = field(default_factory=dict)

    def is_connected(self, connector: str) -> bool:
        return connector in self.connected

    def option(self, connector: str, name: str) -> Any:
        return (self.connected.get(connector) or {}).get(name)

    def route_on(self, route: str) -> bool:
        return bool(self.settings.routes.get(route, True))

    # ---------------------------------------------------------------- records

    def customer(self, conn: Connection, customer_id: str | None) -> Customer | None:
        """The stored customer, or None (unknown). A redacted one is returned as such."""
        if not customer_id:
            return None
        if customer_id not in self._customers:
            self.load_customers(conn, [customer_id])
        return self._customers.get(customer_id)

    def winback(self, conn: Connection, customer_id: str) -> WinbackState | None:
        if customer_id not in self._customers:
            self.load_customers(conn, [customer_id])
        return self._winback.get(customer_id)

    def order(self, conn: Connection, order_id: str | None) -> Order | None:
        if not order_id:
            return None
        if order_id not in self._orders:
            self.load_orders(conn, [order_id])
        return self._orders.get(order_id)

    def product(self, conn: Connection, product_id: str | None) -> Product | None:
        if not product_id:
            return None
        if product_id not in self._products:
            self.load_products(conn, [product_id])
        return self._products.get(product_id)

    def customer_orders(self, conn: Connection, customer_id: str, limit: int) -> list[Order]:
        """The customer's orders, newest first, at most ``limit``."""
        ids = list(conn.execute(
            select(orders.c.external_id).where(orders.c.tenant_id == self.tenant_id,
                                               orders.c.customer_id == customer_id)
            .order_by(orders.c.placed_at.desc()).limit(limit)).scalars())
        self.load_orders(conn, [i for i in ids if i not in self._orders])
        return [o for o in (self._orders.get(i) for i in ids) if o is not None]

    def forget_records(self) -> None:
        """Drop the records read so far (a bulk planner does, between chunks, so memory holds
        one chunk's records at a time)."""
        for cache in (self._customers, self._winback, self._orders, self._products):
            cache.clear()

    # ---------------------------------------------------------------- bulk loading

    def load_customers(self, conn: Connection, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i and i not in self._customers]
        for chunk in _chunks(wanted):
            rows = conn.execute(select(customers).where(
                customers.c.tenant_id == self.tenant_id, customers.c.id.in_(chunk))).all()
            external: dict[str, dict[str, str]] = {row.id: {} for row in rows}
            if rows:
                for link in conn.execute(select(customer_external_ids).where(
                        customer_external_ids.c.tenant_id == self.tenant_id,
                        customer_external_ids.c.customer_id.in_(list(external)))):
                    external[link.customer_id][link.service] = link.external_id
            for customer_id in chunk:
                self._customers[customer_id] = None
            for row in rows:
                self._customers[row.id] = customer_from_row(row, external[row.id])
                self._winback[row.id] = WinbackState(
                    row.status, row.status_changed_at, row.returned_at, row.winback_started_at)

    def load_orders(self, conn: Connection, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i and i not in self._orders]
        for chunk in _chunks(wanted):
            rows = conn.execute(select(orders, customers.c.email).join(
                customers, and_(customers.c.id == orders.c.customer_id,
                                customers.c.tenant_id == orders.c.tenant_id)).where(
                orders.c.tenant_id == self.tenant_id, orders.c.external_id.in_(chunk))).all()
            lines: dict[str, list[Any]] = {row.id: [] for row in rows}
            if rows:
                for line in conn.execute(select(order_lines).where(
                        order_lines.c.tenant_id == self.tenant_id,
                        order_lines.c.order_id.in_(list(lines))).order_by(
                        order_lines.c.order_id, order_lines.c.line_no)):
                    lines[line.order_id].append(line)
            for order_id in chunk:
                self._orders[order_id] = None
            for row in rows:
                self._orders[row.external_id] = _order(row, lines[row.id])

    def load_products(self, conn: Connection, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i and i not in self._products]
        for chunk in _chunks(wanted):
            rows = conn.execute(select(products).where(
                products.c.tenant_id == self.tenant_id, products.c.id.in_(chunk))).all()
            held: dict[str, list[Any]] = {row.id: [] for row in rows}
            if rows:
                for variant in conn.execute(select(variants).where(
                        variants.c.tenant_id == self.tenant_id,
                        variants.c.product_id.in_(list(held))).order_by(
                        variants.c.product_id, variants.c.id)):
                    held[variant.product_id].append(variant)
            for product_id in chunk:
                self._products[product_id] = None
            for row in rows:
                self._products[row.id] = product_from_rows(row, held[row.id])

    def prefetch(self, conn: Connection, events: Sequence[Event]) -> None:
        """Read, in bulk, the customers, orders and products ``events`` are about."""
        customer_ids, order_ids, product_ids = [], [], []
        for event in events:
            if event.type in CUSTOMER_SUBJECTS:
                customer_ids.append(event.subject_id)
            elif event.type in ORDER_SUBJECTS:
                order_ids.append(event.subject_id)
                customer_ids.append(event.item.get("customer_id"))
            elif event.type in PRODUCT_SUBJECTS:
                product_ids.append(event.subject_id)
        self.load_orders(conn, order_ids)
        customer_ids.extend(o.customer_id for o in self._orders.values() if o is not None)
        self.load_customers(conn, customer_ids)
        self.load_products(conn, product_ids)


def open_context(conn: Connection, tenant_id: str,
                 erased: Mapping[str, Any] | None = None) -> PlanContext:
    """The tenant's settings and connections, in one query."""
    rows = conn.execute(
        select(tenants.c.settings, connections.c.connector, connections.c.options)
        .select_from(tenants.outerjoin(connections, and_(
            connections.c.tenant_id == tenants.c.id, connections.c.name == CONNECTION_NAME)))
        .where(tenants.c.id == tenant_id)).all()
    settings = resolve(rows[0].settings if rows else None)
    connected = {row.connector: {k: v for k, v in (row.options or {}).items()
                                 if not k.startswith("_")}
                 for row in rows if row.connector is not None}
    return PlanContext(tenant_id=tenant_id, settings=settings, connected=connected,
                       erased=dict(erased or {}))


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _order(row: Any, lines: list[Any]) -> Order:
    currency = row.currency
    return Order(
        id=row.external_id, placed_at=row.placed_at, total=Money(row.total_minor, currency),
        customer_id=row.customer_id, customer_email=row.email, cancelled=row.cancelled,
        source=row.source,
        lines=[OrderLine(
            product_id=line.product_id, sku=line.sku, name=line.name, quantity=line.quantity,
            unit_price=Money(line.unit_price_minor, currency),
            original_price=Money(line.original_price_minor, currency)
            if line.original_price_minor is not None else None,
            size=line.size, colour=line.colour, brand=line.brand, gift=line.gift)
            for line in lines])


