"""Pure functions between Replenit's wire shapes and the canonical model.

Canonical -> wire is the hot path (tens of thousands of customers a second): plain dict
building, ``None`` left out, no marshmallow. Wire -> canonical serves the sandbox's state and
the round-trip tests.

Choices:

- ``CustomerId`` is the shop's own id: ``external_ids["replenit"]`` when the customer has one,
  else the gateway's id. An order's ``CustomerId`` follows the same rule
  (``customer_external_id``, else ``customer_id``), so the two agree as long as the gateway
  records the shop's id both as the customer's Replenit id and as its orders' external id.
  Reading back, ``CustomerId`` becomes ``external_ids["replenit"]`` (and an order's
  ``customer_external_id``).
- ``GdprOptin`` is decided by the tenant's consent basis (``context["consent_basis"]``, default
  ``"consent"``): under ``"lawful_basis"`` every customer is sent ``true``; under ``"consent"``
  only a customer whose ``consent.gdpr_processing`` is ``True`` (``None`` is sent ``false``). It
  is always sent, because an upsert replaces the record whole.
- ``IsExcluded`` (no canonical field) is carried by the customer metadata key
  ``replenit_excluded`` (``True`` -> ``true``; read back only when true). ``Username`` has no
  canonical field and is not sent.
- Money goes out as ``Decimal`` (written exactly by ``wire.dumps``) in the order's or variant's
  currency; a line or sale price in another currency cannot be said on this wire and raises
  ``MoneyError``. Incoming numbers may be ``Decimal``, ``int``, ``str`` or ``float`` (taken by its
  shortest text, never its binary value).
- ``OrderDate`` is UTC with ``Z``; fractional seconds are sent only when there are some.
- Missing required data (an order without a customer, a variant without a price) is sent as is:
  Replenit's own validation names the record, and only that record is dead-lettered.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from marshmallow import ValidationError

from gateway.model import (
    Consent,
    Customer,
    Money,
    MoneyError,
    Order,
    OrderLine,
    Product,
    Variant,
    normalise_email,
    normalise_phone,
)

from .wire import EMAIL_INVALID, SCHEMAS, format_datetime, parse_datetime

__all__ = [
    "DROPPED_FIELDS",
    "EXCLUDED_KEY",
    "customer_key",
    "INBOUND",
    "customer_to_wire",
    "gdpr_optin",
    "order_to_wire",
    "product_to_wire",
    "wire_to_customer",
    "wire_to_order",
    "wire_to_product",
]

#: The metadata key that carries Replenit's ``IsExcluded`` (test accounts).
EXCLUDED_KEY = "replenit_excluded"

_DERIVED = "Replenit keeps profile, consent flags and identity only; computed by the gateway"

#: Every canonical field a round trip through Replenit loses, and why.
DROPPED_FIELDS: dict[str, str] = {
    "Customer.id": "the gateway's id is sent as CustomerId only when there is no Replenit id; "
                   "it comes back as external_ids['replenit']",
    "Customer.external_ids": "only external_ids['replenit'] is held (as CustomerId)",
    "Customer.timezone": "no Replenit field",
    "Customer.address": "no Replenit field",
    "Customer.birthdate": "no Replenit field",
    "Customer.gender": "no Replenit field",
    "Customer.tags": "no Replenit field",
    "Customer.metadata": f"only the {EXCLUDED_KEY!r} flag is held (as IsExcluded)",
    "Customer.lifetime_value": _DERIVED,
    "Customer.order_count": _DERIVED,
    "Customer.first_order_at": _DERIVED,
    "Customer.last_order_at": _DERIVED,
    "Customer.recency_score": _DERIVED,
    "Customer.frequency_score": _DERIVED,
    "Customer.monetary_score": _DERIVED,
    "Customer.rfm": _DERIVED,
    "Customer.grade": _DERIVED,
    "Customer.segments": _DERIVED,
    "Customer.cohort": _DERIVED,
    "Customer.acquisition_source": "no Replenit field",
    "Customer.status": _DERIVED,
    "Customer.engagement_score": _DERIVED,
    "Customer.returned_at": _DERIVED,
    "Customer.redacted_at": "a redacted customer is deleted at Replenit, never sent",
    "Customer.created_at": "no Replenit field",
    "Customer.updated_at": "no Replenit field",
    "Consent.opted_in_at": "Replenit holds the channel flags, not when they changed",
    "Consent.unsubscribed_at": "Replenit holds the channel flags, not when they changed",
    "Order.customer_id": "CustomerId carries the shop's customer id when the order has one; "
                         "it comes back as customer_external_id",
    "Order.source": "no Replenit field",
    "OrderLine.name": "Replenit order items carry no name (the product holds it)",
}


def gdpr_optin(consent: Consent, consent_basis: str) -> bool:
    """``GdprOptin`` under the tenant's consent basis (see the module docstring)."""
    if consent_basis == "lawful_basis":
        return True
    return consent.gdpr_processing is True


def customer_key(customer: Customer) -> str | None:
    """The customer's ``CustomerId`` at Replenit: the shop's id, else the gateway's."""
    return customer.external_ids.get("replenit") or customer.id


# --- canonical -> wire (hot path) -------------------------------------------------------------


def customer_to_wire(customer: Customer, context: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical customer as one element of POST /customers/{tenantId}."""
    consent = customer.consent
    wire = {
        "CustomerId": customer.external_ids.get("replenit") or customer.id,
        "Email": customer.email,
        "Name": customer.first_name,
        "Surname": customer.last_name,
        "Phone": customer.phone,
        "Language": customer.language,
        "EmailOptin": consent.email,
        "SmsOptin": consent.sms,
        "WhatsappOptin": consent.whatsapp,
        "AppPushOptin": consent.push,
        "GdprOptin": gdpr_optin(consent, context.get("consent_basis", "consent")),
        "IsExcluded": customer.metadata.get(EXCLUDED_KEY) is True,
    }
    return {k: v for k, v in wire.items() if v is not None}


def _amount(money: Money | None, currency: str, what: str) -> Decimal | None:
    if money is None:
        return None
    if money.currency != currency:
        raise MoneyError(f"{what} is in {money.currency} but the record is in {currency}; "
                         f"Replenit carries one currency per record")
    return money.to_decimal()


def _line_sku(line: OrderLine) -> str | None:
    """Replenit requires a line's SKU; a line that has none (a Rejoiner cart item, say) is
    sent under its product id, the one thing every line names."""
    return line.sku or line.product_id


def _line_to_wire(line: OrderLine, currency: str) -> dict[str, Any]:
    wire = {
        "ProductId": line.product_id,
        "Sku": _line_sku(line),
        "Quantity": line.quantity,
        "Price": _amount(line.unit_price, currency, "a line's unit price"),
        "OriginalPrice": _amount(line.original_price, currency, "a line's original price"),
        "Size": line.size,
        "Color": line.colour,
        "Brand": line.brand,
        "IsGift": line.gift,
    }
    return {k: v for k, v in wire.items() if v is not None}


def order_to_wire(order: Order, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A canonical order as one element of POST /orders/{tenantId}."""
    currency = order.total.currency
    lines = order.lines
    wire = {
        "OrderId": order.id,
        "CustomerId": order.customer_external_id or order.customer_id,
        "Email": order.customer_email,
        "OrderDate": format_datetime(order.placed_at),
        "TotalRevenue": order.total.to_decimal(),
        "Currency": currency,
        "TotalQuantity": sum(line.quantity for line in lines),
        "UniqueQuantity": len({_line_sku(line) for line in lines}),
        "IsOrderCancelled": order.cancelled,
        "OrderItems": [_line_to_wire(line, currency) for line in lines],
    }
    return {k: v for k, v in wire.items() if v is not None}


def _variant_to_wire(variant: Variant) -> dict[str, Any]:
    price = variant.price
    currency = price.currency if price is not None else (
        variant.sale_price.currency if variant.sale_price is not None else None)
    wire = {
        "VariantId": variant.id,
        "Sku": variant.sku,
        "Name": variant.name,
        "OriginalPrice": _amount(price, currency, "the price") if currency else None,
        "Currency": currency,
        "IsAvailable": variant.available,
        "Image": variant.image,
        "Size": variant.size,
        "Stock": variant.stock,
        "SalePrice": _amount(variant.sale_price, currency, "the sale price") if currency else None,
        "Language": variant.language,
        "BrandName": variant.brand,
    }
    return {k: v for k, v in wire.items() if v is not None}


def product_to_wire(product: Product, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A canonical product as one element of POST /products/{tenantId}."""
    wire = {
        "ProductId": product.id,
        "ProductName": product.name,
        "Taxonomy": list(product.taxonomy),
        "IsOfflineExclusive": product.offline_exclusive,
        "ProductVariants": [_variant_to_wire(v) for v in product.variants],
    }
    return {k: v for k, v in wire.items() if v is not None}


# --- wire -> canonical -------------------------------------------------------------------------


def _money(value: Any, currency: str) -> Money | None:
    if value is None:
        return None
    if isinstance(value, float):
        value = repr(value)  # the shortest text of the number the JSON said
    return Money.from_decimal(value, currency)


def wire_to_customer(wire: Mapping[str, Any]) -> Customer:
    """One Replenit customer as a canonical customer (``Username`` has no canonical field)."""
    get = wire.get
    customer_id = get("CustomerId")
    return Customer(
        email=normalise_email(get("Email")),
        external_ids={"replenit": customer_id} if customer_id else {},
        first_name=get("Name"),
        last_name=get("Surname"),
        phone=normalise_phone(get("Phone")),
        language=get("Language"),
        metadata={EXCLUDED_KEY: True} if get("IsExcluded") else {},
        consent=Consent(
            email=get("EmailOptin"),
            sms=get("SmsOptin"),
            whatsapp=get("WhatsappOptin"),
            push=get("AppPushOptin"),
            gdpr_processing=get("GdprOptin"),
        ),
    )


def _wire_to_line(wire: Mapping[str, Any], currency: str) -> OrderLine:
    return OrderLine(
        product_id=wire.get("ProductId"),
        sku=wire.get("Sku"),
        quantity=wire["Quantity"],
        unit_price=_money(wire["Price"], currency),
        original_price=_money(wire.get("OriginalPrice"), currency),
        size=wire.get("Size"),
        colour=wire.get("Color"),
        brand=wire.get("Brand"),
        gift=bool(wire.get("IsGift")),
    )


def wire_to_order(wire: Mapping[str, Any]) -> Order:
    """One Replenit order as a canonical order (``CustomerId`` -> ``customer_external_id``)."""
    currency = wire["Currency"]
    return Order(
        id=wire["OrderId"],
        placed_at=parse_datetime(wire["OrderDate"]),
        total=_money(wire["TotalRevenue"], currency),
        lines=[_wire_to_line(item, currency) for item in wire.get("OrderItems") or ()],
        customer_external_id=wire.get("CustomerId"),
        customer_email=normalise_email(wire.get("Email")),
        cancelled=bool(wire.get("IsOrderCancelled")),
    )


def _wire_to_variant(wire: Mapping[str, Any]) -> Variant:
    currency = wire.get("Currency")
    return Variant(
        id=wire["VariantId"],
        sku=wire["Sku"],
        name=wire.get("Name"),
        price=_money(wire.get("OriginalPrice"), currency) if currency else None,
        sale_price=_money(wire.get("SalePrice"), currency) if currency else None,
        available=bool(wire.get("IsAvailable")),
        stock=wire.get("Stock"),
        image=wire.get("Image"),
        size=wire.get("Size"),
        language=wire.get("Language"),
        brand=wire.get("BrandName"),
    )


def wire_to_product(wire: Mapping[str, Any]) -> Product:
    """One Replenit product (with its variants) as a canonical product."""
    return Product(
        id=wire["ProductId"],
        name=wire.get("ProductName"),
        variants=[_wire_to_variant(v) for v in wire.get("ProductVariants") or ()],
        taxonomy=list(wire.get("Taxonomy") or ()),
        offline_exclusive=bool(wire.get("IsOfflineExclusive")),
    )


# --- deletes: what a canonical record names at Replenit ------------------------------------------


def customer_delete_query(record: Customer | Mapping[str, Any]) -> dict[str, str]:
    """``{"customerId"?, "email"?}`` for DELETE /customers/{tenantId}.

    Takes a canonical customer, or the erasure format (the query itself as JSON:
    ``{"customerId": ..., "email": ...}``).
    """
    if isinstance(record, Customer):
        query = {"customerId": customer_key(record), "email": record.email}
    else:
        query = {"customerId": record.get("customerId"), "email": record.get("email")}
    return {k: str(v) for k, v in query.items() if v}


def order_delete_key(record: Order | Mapping[str, Any] | str) -> str:
    """The ``orderId`` of DELETE /orders/{tenantId}/{orderId}."""
    if isinstance(record, Order):
        return record.id
    if isinstance(record, str):
        return record
    return str(record["order_id"])


def order_line_delete_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(order_id, product_id, sku)`` of DELETE /orders/{tenantId}/{orderId}/items."""
    return str(record["order_id"]), str(record["product_id"]), str(record["sku"])


def product_delete_key(record: Product | Mapping[str, Any] | str) -> str:
    """The ``productId`` of DELETE /products/{tenantId}/{productId}."""
    if isinstance(record, Product):
        return record.id
    if isinstance(record, str):
        return record
    return str(record["product_id"])


def variant_delete_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(product_id, variant_id)`` of DELETE /products/{tenantId}/{productId}/variants/{id}."""
    return str(record["product_id"]), str(record["variant_id"])


# --- inbound: Replenit's shapes posted to the gateway (see connectors.base.InboundParser) ----


def _checked(kind: str, record: Any) -> None:
    """Validate one record with the wire schema Replenit itself applies; a ValidationError's
    messages use Replenit's field names."""
    if not isinstance(record, Mapping):
        raise ValidationError({"_schema": ["The record must be a JSON object."]})
    SCHEMAS[kind]().load(record)


def _precision(value: Any, currency: str, field: str, errors: dict) -> None:
    try:
        _money(value, currency)
    except MoneyError as exc:
        errors[field] = [str(exc)]


def parse_order(record: Any, context: Mapping[str, Any]) -> list[Order]:
    """The ``orders`` topic: one Replenit order (``CustomerId`` is the shop's customer id)."""
    _checked("orders", record)
    currency = record["Currency"]
    errors: dict[str, Any] = {}
    _precision(record["TotalRevenue"], currency, "TotalRevenue", errors)
    lines: dict[int, Any] = {}
    for i, item in enumerate(record["OrderItems"]):
        item_errors: dict[str, Any] = {}
        _precision(item["Price"], currency, "Price", item_errors)
        _precision(item.get("OriginalPrice"), currency, "OriginalPrice", item_errors)
        if item_errors:
            lines[i] = item_errors
    if lines:
        errors["OrderItems"] = lines
    if errors:
        raise ValidationError(errors)
    order = wire_to_order(record)
    order.source = "replenit"
    return [order]


def parse_customer(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``customers`` topic: one Replenit customer."""
    _checked("customers", record)
    return [wire_to_customer(record)]


def parse_product(record: Any, context: Mapping[str, Any]) -> list[Product]:
    """The ``products`` topic: one Replenit product with its variants."""
    _checked("products", record)
    variants: dict[int, Any] = {}
    for i, variant in enumerate(record["ProductVariants"]):
        errors: dict[str, Any] = {}
        currency = variant.get("Currency")
        _precision(variant["OriginalPrice"], currency, "OriginalPrice", errors)
        _precision(variant.get("SalePrice"), currency, "SalePrice", errors)
        if errors:
            variants[i] = errors
    if variants:
        raise ValidationError({"ProductVariants": variants})
    return [wire_to_product(record)]


def parse_erasure(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``erasures`` topic: the delete-customer query as JSON (``{"customerId"?,
    "email"?}``, at least one), as a customer holding only that identity."""
    if not isinstance(record, Mapping):
        raise ValidationError({"_schema": ["The record must be a JSON object."]})
    unknown = sorted(set(record) - {"customerId", "email"})
    errors: dict[str, list[str]] = {k: ["Unknown field."] for k in unknown}
    customer_id, email = record.get("customerId"), record.get("email")
    for name, value in (("customerId", customer_id), ("email", email)):
        if value is not None and not isinstance(value, str):
            errors[name] = [f"The {name} field must be a string."]
    if not errors and not (customer_id or email):
        errors["customerId"] = ["The customerId or email field is required."]
    if not errors and email:
        try:
            email = normalise_email(email)
        except ValueError:
            errors["email"] = [EMAIL_INVALID]
    if errors:
        raise ValidationError(errors)
    return [Customer(email=email or None,
                     external_ids={"replenit": customer_id} if customer_id else {})]


#: The inbound formats this connector parses, by ingest topic.
INBOUND = {
    "orders": parse_order,
    "customers": parse_customer,
    "products": parse_product,
    "erasures": parse_erasure,
}
