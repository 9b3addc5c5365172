"""The connector contract and the registry the relay finds connectors in.

A connector is declared as data: a :class:`ConnectorSpec` naming what it reads and writes, its
batch sizes, its documented rate limits, how it authenticates and how to build its client. The
behaviour lives in a few named functions of its own modules (``client.py``, ``mapping.py``).
Each connector package exposes its spec as ``CONNECTOR`` in its ``__init__.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping, Protocol, Sequence

#: The connector packages shipped with the gateway, in the order the registry lists them.
BUILTIN = ("rekindle", "rejoiner", "rci", "replenit")


@dataclass(frozen=True, slots=True)
class Limit:
    """A rate limit: at most ``requests`` in any sliding window of ``seconds``."""

    requests: int
    seconds: int

    def __str__(self) -> str:  # the `limits` library's notation, e.g. "120/60 seconds"
        return f"{self.requests}/{self.seconds} seconds"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Where and as whom a client talks to a service.

    ``credentials`` holds secrets (never logged, never in an error); ``options`` holds the rest
    of the connection's settings (Rejoiner's ``site_id``, Replenit's ``tenant_id``, the business
    ``currency`` Rekindle and Rejoiner do not name in their payloads).
    """

    base_url: str
    credentials: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer of ``Client.check()``: does this credential work?"""

    ok: bool
    detail: str


@dataclass(slots=True)
class WriteResult:
    """What became of one batch sent to a destination.

    ``rejected`` maps the index of a record in the batch to the service's field errors for it;
    only those records are dead-lettered, the rest count as delivered. ``answers`` maps an index
    to what the service said back about that record, in canonical terms, where that matters
    (Rekindle's re-scored customer and its ``returned`` flag).
    """

    accepted: int
    rejected: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    answers: dict[int, Any] = field(default_factory=dict)


class Client(Protocol):
    """What every connector client offers besides its service-specific operations.

    ``deadline(at)`` is a context manager: every request made inside it ends by ``at`` (epoch
    seconds, or a ``connectors.http.Deadline``), retries and rate-budget waits included; one
    that cannot raises ``connectors.http.DeadlineExceeded`` (retriable: the records stay
    queued).
    """

    def check(self) -> CheckResult: ...

    def close(self) -> None: ...

    def deadline(self, at: Any) -> ContextManager[Any]: ...


@dataclass(frozen=True, slots=True)
class Operation:
    """A canonical write a connector can perform.

    ``send(client, records, context)`` takes canonical records (at most ``max_batch`` of them)
    and returns a :class:`WriteResult`. ``context`` carries the tenant's settings that shape the
    wire payload (``consent_basis``: ``"consent"`` or ``"lawful_basis"``; ``currency``: the
    connection's business currency). ``key(record)`` is the record's natural key at that service
    (used for ordering and per-record dead letters). To keep a send inside a lease, call it
    inside ``with client.deadline(lease_expiry - margin):`` (see :class:`Client`).
    """

    name: str
    max_batch: int
    send: Callable[[Any, Sequence[Any], Mapping[str, Any]], WriteResult]
    key: Callable[[Any], str]


#: How a connector parses one inbound record of a topic in its own wire format:
#: ``parse(record, context) -> [canonical objects]``. ``context`` carries ``currency`` (the
#: business currency the wire does not name: the tenant's base currency) and ``received_at``
#: (an aware UTC datetime: when the gateway received the record, for formats that carry no
#: time). A record that does not validate raises ``marshmallow.ValidationError`` whose
#: ``messages`` name each bad field in the wire's own field names; the caller
#: (``gateway.ingest``) splits arrays and keys errors by index.
InboundParser = Callable[[Any, Mapping[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector, declared as data.

    ``inbound`` maps an ingest topic (``orders``, ``customers``, ``products``, ``conversions``,
    ``unsubscribes``, ``opt-ins``, ``erasures``) to the :data:`InboundParser` in the
    connector's ``mapping.py`` that reads one record of that topic in the service's format;
    ``gateway.ingest`` finds formats only through here, never by importing a vendor module.
    """

    name: str
    title: str
    default_base_url: str
    credential_fields: tuple[str, ...]
    option_fields: tuple[str, ...]
    limits: tuple[Limit, ...]  # what the service documents, per credential
    client_limits: tuple[Limit, ...]  # what our client holds itself to (usually the same)
    reads: frozenset[str]  # canonical kinds it can be read for: "customers", ...
    operations: Mapping[str, Operation]  # canonical writes by name: "customers.upsert", ...
    make_client: Callable[..., Client]
    auth: str = ""  # a human description of the auth scheme
    inbound: Mapping[str, InboundParser] = field(default_factory=dict)  # topic -> parser

    @property
    def writes(self) -> frozenset[str]:
        return frozenset(self.operations)

    def batch_size(self, operation: str) -> int:
        return self.operations[operation].max_batch


_REGISTRY: dict[str, ConnectorSpec] = {}


def register(spec: ConnectorSpec) -> ConnectorSpec:
    """Add (or replace) a connector in the registry; returns the spec for use as a decorator."""
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ConnectorSpec:
    """The connector called ``name``; ``KeyError`` with the known names if there is none."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown connector {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_connectors() -> list[ConnectorSpec]:
    _load_builtins()
    return list(_REGISTRY.values())


def _load_builtins() -> None:
    for name in BUILTIN:
        if name not in _REGISTRY:
            module = importlib.import_module(f"connectors.{name}")
            register(module.CONNECTOR)
