"""Replenit: the replenishment and cross-sell decision engine. Write only.

Batch upserts of customers (at most 500 a request), orders (200) and products (100), and
deletes, under ``https://api.replen.it/<resource>/{tenantId}``; the key in
``x-replenit-auth-key``; 100 requests a minute and 5,000 an hour per key. There is nothing to
read (``reads`` is empty). Context keys used: ``consent_basis``.

Records the operations take: ``customers.*`` canonical customers (``customers.delete`` also the
erasure query ``{"customerId", "email"}``); ``orders.*`` canonical orders (``orders.delete`` also
an order id); ``order_lines.delete`` ``{"order_id", "product_id", "sku"}``; ``products.*``
canonical products (``products.delete`` also a product id); ``variants.delete``
``{"product_id", "variant_id"}``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from connectors.base import ConnectorSpec, Operation, WriteResult

from . import mapping, wire
from .client import CLIENT_LIMITS, ReplenitClient, make_client, send_deletes, send_upsert


def _upsert(kind: str, to_wire: Any):
    def send(client: ReplenitClient, records: Sequence[Any],
             context: Mapping[str, Any]) -> WriteResult:
        return send_upsert(client, kind, records, to_wire, context)

    send.__name__ = f"send_{kind}"
    return send


def _delete_customers(client: ReplenitClient, records: Sequence[Any],
                      context: Mapping[str, Any]) -> WriteResult:
    def delete(record: Any) -> int:
        query = mapping.customer_delete_query(record)
        return client.delete_customer(query.get("customerId"), query.get("email"))

    return send_deletes(records, delete)


def _delete_orders(client: ReplenitClient, records: Sequence[Any],
                   context: Mapping[str, Any]) -> WriteResult:
    return send_deletes(records, lambda r: client.delete_order(mapping.order_delete_key(r)))


def _delete_order_lines(client: ReplenitClient, records: Sequence[Any],
                        context: Mapping[str, Any]) -> WriteResult:
    return send_deletes(records, lambda r: client.delete_order_item(
        *mapping.order_line_delete_key(r)))


def _delete_products(client: ReplenitClient, records: Sequence[Any],
                     context: Mapping[str, Any]) -> WriteResult:
    return send_deletes(records, lambda r: client.delete_product(mapping.product_delete_key(r)))


def _delete_variants(client: ReplenitClient, records: Sequence[Any],
                     context: Mapping[str, Any]) -> WriteResult:
    return send_deletes(records, lambda r: client.delete_variant(
        *mapping.variant_delete_key(r)))


def _customer_key(record: Any) -> str:
    query = mapping.customer_delete_query(record)
    return query.get("customerId") or query.get("email") or ""


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("customers.upsert", wire.BATCH_MAX["customers"],
                  _upsert("customers", mapping.customer_to_wire), _customer_key),
        Operation("customers.delete", 1, _delete_customers, _customer_key),
        Operation("orders.upsert", wire.BATCH_MAX["orders"],
                  _upsert("orders", mapping.order_to_wire), mapping.order_delete_key),
        Operation("orders.delete", 1, _delete_orders, mapping.order_delete_key),
        Operation("order_lines.delete", 1, _delete_order_lines,
                  lambda r: "/".join(mapping.order_line_delete_key(r))),
        Operation("products.upsert", wire.BATCH_MAX["products"],
                  _upsert("products", mapping.product_to_wire), mapping.product_delete_key),
        Operation("products.delete", 1, _delete_products, mapping.product_delete_key),
        Operation("variants.delete", 1, _delete_variants,
                  lambda r: "/".join(mapping.variant_delete_key(r))),
    )
}

CONNECTOR = ConnectorSpec(
    name="replenit",
    title="Replenit",
    default_base_url="https://api.replen.it",
    credential_fields=("api_key",),
    option_fields=("tenant_id",),
    limits=wire.LIMITS,
    client_limits=CLIENT_LIMITS,
    reads=frozenset(),
    operations=OPERATIONS,
    make_client=make_client,
    inbound=mapping.INBOUND,
    auth="x-replenit-auth-key: <API key>; the tenant id (a GUID) is a path segment. A missing "
         "or wrong key answers 401, an unknown tenant 404.",
)
