"""Rekindle: engagement scoring and win-back attribution, through its Zapier API.

Read (two polling triggers, a search) and write (one upsert per request). Declared as data here;
the behaviour is in :mod:`.client` (HTTP), :mod:`.mapping` (wire <-> canonical) and
:mod:`.sandbox` (the verified fake).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from connectors.base import ConnectorSpec, Operation, WriteResult
from connectors.http import ValidationError
from gateway.model import Customer

from .client import DEFAULT_BASE_URL, LIMITS, RekindleClient, make_client
from .mapping import MappingError


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
    auth="Authorization: Bearer <api_key> (Settings → Zapier & Integrations; the API needs "
    "the Scale plan)",
)

__all__ = ["CONNECTOR", "RekindleClient", "customer_key", "send_customers"]
