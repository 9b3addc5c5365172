"""Rekindle: engagement scoring and win-back attribution, through its Zapier API.

Read (two polling triggers, a search) and write (one upsert per request). Declared as data here;
the behaviour is in :mod:`.client` (HTTP), :mod:`.mapping` (wire <-> canonical) and
:mod:`.sandbox` (the verified fake).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from marshmallow import ValidationError as MarshmallowValidationError

from connectors.base import ConnectorSpec, Operation, WriteResult
from connectors.http import ValidationError
from gateway.model import Customer, Money, MoneyError

from .client import DEFAULT_BASE_URL, LIMITS, RekindleClient, make_client
from .mapping import MappingError, customer_from_wire
from .wire import UpdateCustomerRequest


def send_customers(client: RekindleClient, records: Sequence[Customer],
                   context: Mapping[str, Any]) -> WriteResult:
    """Upsert each customer; ``answers[i]`` is Rekindle's (Customer, returned).

    A record Rekindle refuses (400) or that cannot be mapped exactly is ``rejected[i]`` and the
    others still go; an auth failure or an exhausted retry stops the batch (the relay decides).
    """
    currency = context.get("currency") or client.currency
    result = WriteResult(accepted=0)
    for index, customer in enumerate(records):
        try:
            result.answers[index] = client.update_customer(customer, currency)
        except ValidationError as exc:
            result.rejected[index] = dict(exc.field_errors) or {"": [exc.message]}
            continue
        except MappingError as exc:
            result.rejected[index] = {"": [str(exc)]}
            continue
        result.accepted += 1
    return result


def parse_update_customer(record: Any, context: Mapping[str, Any]) -> list[Customer]:
    """The ``customers`` inbound format: an update-customer body (``name`` and ``email``
    required, unknown fields refused, as Rekindle does), its ``total_spent`` in
    ``context["currency"]``; a ``marshmallow.ValidationError`` names each bad field.

    It lives here rather than in ``mapping.py``, which stays free of marshmallow (the relay's
    hot path): the wire schema validates, :func:`.mapping.customer_from_wire` maps.
    """
    if not isinstance(record, Mapping):
        raise MarshmallowValidationError({"_schema": ["The record must be a JSON object."]})
    loaded = UpdateCustomerRequest().load(record)
    currency = context["currency"]
    try:
        if loaded.get("total_spent") is not None:
            Money.from_decimal(loaded["total_spent"], currency)
        return [customer_from_wire(record, currency)]
    except (MappingError, MoneyError) as exc:
        raise MarshmallowValidationError({"total_spent": [str(exc)]}) from None


def customer_key(customer: Customer) -> str:
    """Rekindle matches customers by email."""
    return (customer.email or "").strip().lower()


CONNECTOR = ConnectorSpec(
    name="rekindle",
    title="Rekindle",
    default_base_url=DEFAULT_BASE_URL,
    credential_fields=("api_key",),
    option_fields=("currency",),
    limits=LIMITS,
    client_limits=LIMITS,
    reads=frozenset({"customers"}),
    operations={
        "customers.upsert": Operation(
            name="customers.upsert", max_batch=1, send=send_customers, key=customer_key,
        ),
    },
    make_client=make_client,
    inbound={"customers": parse_update_customer},
    auth="Authorization: Bearer <api_key> (Settings → Zapier & Integrations; the API needs "
    "the Scale plan)",
)

__all__ = ["CONNECTOR", "RekindleClient", "customer_key", "parse_update_customer",
           "send_customers"]
