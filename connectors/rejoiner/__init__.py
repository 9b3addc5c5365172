"""Rejoiner: email journeys (cart abandonment, win-back), through its REST API v1.

Write (convert, cancel, unsubscribe, opt_in, customer create/update) and look up (a customer by
email). Declared as data here; the behaviour is in :mod:`.client` (HTTP), :mod:`.mapping`
(wire <-> canonical) and :mod:`.sandbox` (the verified fake).

Every operation sends one request per record (``customers.upsert`` two: a lookup, then a create
or an update) and loops over the batch; a record Rejoiner refuses (400) or does not know (404),
or one that cannot be mapped, goes into ``rejected[i]`` and the others still go. An auth failure
or an exhausted retry stops the batch (the relay decides what then).

``carts.convert`` has no idempotency key at Rejoiner: a resend (at-least-once delivery) may
convert twice. It takes canonical carts, or orders (a purchase, which also ends the customer's
abandonment journeys). The reference documents no list endpoint, so nothing here paginates.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from connectors.base import ConnectorSpec, Limit, Operation, WriteResult
from connectors.http import NotFound, ValidationError
from gateway.model import Cart, Customer, MoneyError, Order

from .client import CLIENT_LIMITS, DEFAULT_BASE_URL, RejoinerClient, make_client
from .mapping import INBOUND, MappingError

#: What Rejoiner's limit is taken to be: the reference documents none, NOTES.md pins 10/s.
LIMITS = (Limit(10, 1),)


def _each(call: Callable[[RejoinerClient, Any], Any]
          ) -> Callable[[RejoinerClient, Sequence[Any], Mapping[str, Any]], WriteResult]:
    """An operation's ``send``: ``call(client, record)`` for each record, refusals per record."""

    def send(client: RejoinerClient, records: Sequence[Any],
             context: Mapping[str, Any]) -> WriteResult:
        result = WriteResult(accepted=0)
        for index, record in enumerate(records):
            try:
                result.answers[index] = call(client, record)
            except ValidationError as exc:
                result.rejected[index] = dict(exc.field_errors) or {"": [exc.message]}
                continue
            except NotFound as exc:
                result.rejected[index] = {"": [exc.message]}
                continue
            except (MappingError, MoneyError, ValueError) as exc:
                result.rejected[index] = {"": [str(exc)]}
                continue
            result.accepted += 1
        return result

    return send


def record_email(record: Customer | Cart | Order | str) -> str:
    """Rejoiner keys every record by the customer's email."""
    if isinstance(record, str):
        email = record
    elif isinstance(record, Order):
        email = record.customer_email
    else:
        email = record.email
    return (email or "").strip().lower()


def _upsert(client: RejoinerClient, customer: Customer) -> Any:
    return client.upsert_customer(customer)


def _convert(client: RejoinerClient, record: Cart | Order) -> Any:
    return client.convert(record)


def _cancel(client: RejoinerClient, record: Customer | str) -> Any:
    return client.cancel(record)


def _unsubscribe(client: RejoinerClient, record: Customer | str) -> Any:
    return client.unsubscribe(record)


def _opt_in(client: RejoinerClient, record: Customer | str) -> Any:
    return client.opt_in(record)


def _operation(name: str, call: Callable[[RejoinerClient, Any], Any]) -> Operation:
    return Operation(name=name, max_batch=50, send=_each(call), key=record_email)


CONNECTOR = ConnectorSpec(
    name="rejoiner",
    title="Rejoiner",
    default_base_url=DEFAULT_BASE_URL,
    credential_fields=("api_key",),
    option_fields=("site_id", "currency"),
    limits=LIMITS,
    client_limits=CLIENT_LIMITS,
    reads=frozenset({"customers"}),
    operations={
        op.name: op
        for op in (
            _operation("customers.upsert", _upsert),
            _operation("carts.convert", _convert),
            _operation("journeys.cancel", _cancel),
            _operation("consent.unsubscribe", _unsubscribe),
            _operation("consent.opt_in", _opt_in),
        )
    },
    make_client=make_client,
    inbound=INBOUND,
    auth="Authorization: Rejoiner <api_key> on https://rj2.rejoiner.com/api/v1/<site_id>/; "
    "GET /ping/ tests the key",
)

__all__ = ["CONNECTOR", "LIMITS", "RejoinerClient", "record_email"]
