"""Customers, orders and products: upserts by natural key, reads, all scoped to one tenant.

Upserts merge: a field the incoming record leaves empty (``None``, or an empty list/dict) keeps
the stored value, so a webhook that sends only an email and a phone does not wipe a name. The
same record twice leaves one row with the later values.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

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
)
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


def _external_ids_of(conn: Connection, tenant_id: str,
                     customer_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each customer's external ids by service, for a page of customers in one query."""
    found: dict[str, dict[str, str]] = {cid: {} for cid in customer_ids}
    if customer_ids:
        rows = conn.execute(select(customer_external_ids).where(
            customer_external_ids.c.tenant_id == tenant_id,
            customer_external_ids.c.customer_id.in_(customer_ids)))
        for row in rows:
            found[row.customer_id][row.service] = row.external_id
    return found


def get_customer(conn: Connection, tenant_id: str, customer_id: str) -> Customer | None:
    row = conn.execute(
        select(customers).where(customers.c.tenant_id == tenant_id, customers.c.id == customer_id)
    ).first()
    if row is None:
        return None
    return customer_from_row(row, _external_ids_of(conn, tenant_id, [row.id])[row.id])


def customer_id_for(conn: Connection, tenant_id: str, *, email: str | None = None,
                    service: str | None = None, external_id: str | None = None) -> str | None:
    """The gateway id of the customer with this email, or this service's external id."""
    if email:
        found = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == tenant_id, customers.c.email == normalise_email(email)
        )).scalar()
        if found:
            return found
    if service and external_id:
        return conn.execute(select(customer_external_ids.c.customer_id).where(
            customer_external_ids.c.tenant_id == tenant_id,
            customer_external_ids.c.service == service,
            customer_external_ids.c.external_id == external_id,
        )).scalar()
    return None


def find_customer(conn: Connection, tenant_id: str, *, email: str | None = None,
                  service: str | None = None, external_id: str | None = None) -> Customer | None:
    found = customer_id_for(conn, tenant_id, email=email, service=service,
                            external_id=external_id)
    return get_customer(conn, tenant_id, found) if found else None


def _set_external_ids(conn: Connection, tenant_id: str, customer_id: str,
                      external_ids: dict[str, str]) -> None:
    for service, external_id in external_ids.items():
        if not external_id:
            continue
        upsert(conn, customer_external_ids,
               {"tenant_id": tenant_id, "customer_id": customer_id, "service": service,
                "external_id": str(external_id)},
               keys=["tenant_id", "service", "customer_id"], update=["external_id"])


def upsert_customer(conn: Connection, tenant_id: str, customer: Customer,
                    *, source: str | None = None) -> tuple[str, bool]:
    """Insert or merge a customer, keyed by email, else by any of its external ids.

    Returns ``(customer_id, created)``. A customer with neither email nor external id is
    refused (``ValueError``): there would be no way to find it again.
    """
    values = _customer_values(customer)
    now = utcnow()
    email = values.get("email")
    existing = None
    if customer.id:  # only an id of this tenant's: any other is not a customer here
        existing = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == tenant_id, customers.c.id == customer.id)).scalar()
    if existing is None and not email:
        for service, external_id in customer.external_ids.items():
            existing = customer_id_for(conn, tenant_id, service=service, external_id=external_id)
            if existing:
                break
        if existing is None and not customer.external_ids:
            raise ValueError("a customer needs an email or an external id")
    if existing is not None:
        values["updated_at"] = now
        if source:
            values["source"] = source
        conn.execute(update(customers).where(customers.c.tenant_id == tenant_id,
                                             customers.c.id == existing).values(values))
        _set_external_ids(conn, tenant_id, existing, customer.external_ids)
        return existing, False
    new = new_id("cus")
    row = {"id": new, "tenant_id": tenant_id, "tags": [], "metadata": {}, "segments": [],
           "source": source, "created_at": now, "updated_at": now, **values}
    if email:
        merge = [c for c in values if c != "email"] + ["updated_at"]
        result = upsert(conn, customers, row, keys=["tenant_id", "email"], update=merge,
                        returning=[customers.c.id])
        customer_id = result.scalar_one()
    else:
        conn.execute(customers.insert().values(row))
        customer_id = new
    _set_external_ids(conn, tenant_id, customer_id, customer.external_ids)
    return customer_id, customer_id == new


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


def _resolve_order_customer(conn: Connection, tenant_id: str, order: Order,
                            source: str | None) -> str:
    """The order's customer id; a customer the gateway has never seen is created minimally."""
    if order.customer_id:
        found = conn.execute(select(customers.c.id).where(
            customers.c.tenant_id == tenant_id, customers.c.id == order.customer_id)).scalar()
        if found:
            return found
    service = order.source or source
    found = customer_id_for(conn, tenant_id, email=order.customer_email, service=service,
                            external_id=order.customer_external_id)
    if found:
        return found
    if not order.customer_email and not order.customer_external_id:
        raise ValueError(f"order {order.id!r} names no customer (email or customer id)")
    minimal = Customer(email=order.customer_email,
                       external_ids={service: order.customer_external_id}
                       if service and order.customer_external_id else {})
    if not minimal.email and not minimal.external_ids:
        minimal.external_ids = {"shop": order.customer_external_id}
    customer_id, _ = upsert_customer(conn, tenant_id, minimal, source=source)
    return customer_id


def upsert_order(conn: Connection, tenant_id: str, order: Order,
                 *, source: str | None = None) -> tuple[str, bool, str]:
    """Insert or replace an order (keyed by the shop's order id) and its lines.

    Returns ``(order_id, created, customer_id)``.
    """
    if not order.id:
        raise ValueError("an order needs an id")
    for line in order.lines:
        if line.unit_price.currency != order.total.currency:
            raise ValueError(f"order {order.id!r}: line currency differs from the order's")
    customer_id = _resolve_order_customer(conn, tenant_id, order, source)
    now = utcnow()
    new = new_id("ord")
    values = {
        "customer_id": customer_id,
        "placed_at": order.placed_at,
        "total_minor": order.total.minor,
        "currency": order.total.currency,
        "cancelled": bool(order.cancelled),
        "source": order.source or source,
        "updated_at": now,
    }
    result = upsert(conn, orders,
                    {"id": new, "tenant_id": tenant_id, "external_id": order.id,
                     "created_at": now, **values},
                    keys=["tenant_id", "external_id"], update=list(values),
                    returning=[orders.c.id])
    order_id = result.scalar_one()
    conn.execute(delete(order_lines).where(order_lines.c.order_id == order_id))
    if order.lines:
        conn.execute(order_lines.insert(), [
            {"order_id": order_id, "line_no": i, "tenant_id": tenant_id,
             "product_id": line.product_id, "sku": line.sku, "name": line.name,
             "quantity": line.quantity, "unit_price_minor": line.unit_price.minor,
             "original_price_minor": line.original_price.minor if line.original_price else None,
             "size": line.size, "colour": line.colour, "brand": line.brand,
             "gift": bool(line.gift)}
            for i, line in enumerate(order.lines)
        ])
    return order_id, order_id == new, customer_id


def get_order(conn: Connection, tenant_id: str, external_id: str) -> Order | None:
    row = conn.execute(select(orders, customers.c.email).join(
        customers, customers.c.id == orders.c.customer_id).where(
        orders.c.tenant_id == tenant_id, orders.c.external_id == external_id)).first()
    if row is None:
        return None
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


def upsert_product(conn: Connection, tenant_id: str, product: Product) -> bool:
    """Insert or replace a product and its variants (keyed by the shop's product id).

    Returns True when the product is new.
    """
    if not product.id:
        raise ValueError("a product needs an id")
    now = utcnow()
    existed = conn.execute(select(products.c.id).where(
        products.c.tenant_id == tenant_id, products.c.id == product.id)).first() is not None
    upsert(conn, products,
           {"tenant_id": tenant_id, "id": product.id, "name": product.name,
            "taxonomy": list(product.taxonomy), "offline_exclusive": product.offline_exclusive,
            "created_at": now, "updated_at": now},
           keys=["tenant_id", "id"], update=["name", "taxonomy", "offline_exclusive",
                                            "updated_at"])
    conn.execute(delete(variants).where(variants.c.tenant_id == tenant_id,
                                        variants.c.product_id == product.id))
    if product.variants:
        conn.execute(variants.insert(), [_variant_values(tenant_id, product.id, v)
                                         for v in product.variants])
    return not existed


def _variant_values(tenant_id: str, product_id: str, v: Variant) -> dict[str, Any]:
    currency = (v.price or v.sale_price).currency if (v.price or v.sale_price) else None
    return {"tenant_id": tenant_id, "product_id": product_id, "id": v.id, "sku": v.sku,
            "name": v.name, "price_minor": v.price.minor if v.price else None,
            "sale_price_minor": v.sale_price.minor if v.sale_price else None,
            "currency": currency, "available": v.available, "stock": v.stock, "image": v.image,
            "size": v.size, "language": v.language, "brand": v.brand}


def get_product(conn: Connection, tenant_id: str, product_id: str) -> Product | None:
    row = conn.execute(select(products).where(products.c.tenant_id == tenant_id,
                                              products.c.id == product_id)).first()
    if row is None:
        return None
    rows = conn.execute(select(variants).where(
        and_(variants.c.tenant_id == tenant_id, variants.c.product_id == product_id)
    ).order_by(variants.c.id)).all()
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
        ) for v in rows],
    )


def count_rows(conn: Connection, tenant_id: str) -> dict[str, int]:
    """Rows held per kind for one tenant (for admin views and tests)."""
    return {
        name: conn.execute(select(func.count()).select_from(table)
                           .where(table.c.tenant_id == tenant_id)).scalar_one()
        for name, table in (("customers", customers), ("orders", orders),
                            ("products", products))
    }

