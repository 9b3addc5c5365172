"""The Repeat Customer Insights client: read only, JSON:API, cursor pages, Bearer token.

Built on :mod:`connectors.http`: one pooled session per credential, a proactive 60/min budget
per credential (memory, or Redis via ``GATEWAY_REDIS_URL`` / ``storage_uri``), retries on
429/5xx/timeouts/resets honouring ``Retry-After``, typed errors that never carry the token.

- :meth:`RciClient.customers` walks ``GET /customers`` page by page as a generator, holding one
  page at a time, and yields customer resource objects (wire shape, each page checked against
  :mod:`.wire`); :meth:`RciClient.read_customers` yields them as canonical customers.
- Next pages: the reference allows taking ``page[cursor]`` out of ``links.next`` and sending it
  to the endpoint; the client does exactly that, against its own base URL, so the token only
  ever goes to the configured host whatever host a ``next`` link names. A ``next`` link without
  a cursor is followed only on the configured origin. A repeated ``next`` is a
  :class:`~connectors.http.PaginationLoop`.
- :meth:`RciClient.check` asks for a customer id no shop has: a JSON:API 404 (or a 200) means the
  token works, a 401 that it does not. One request, no page of data transferred.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, quote, urlsplit

from marshmallow import ValidationError as SchemaError

from connectors.base import CheckResult, ConnectionConfig, Limit
from connectors.http import (
    AuthError,
    BearerAuth,
    ConfigurationError,
    ConnectorError,
    FatalError,
    HttpClient,
    JsonApiCursorPaginator,
    NotFound,
    RetryPolicy,
    UsesHttp,
    paginate,
)
from gateway.model import Customer

from . import mapping, wire

SERVICE = "rci"
#: What the client holds itself to: the documented 60 a minute, per credential.
CLIENT_LIMITS: tuple[Limit, ...] = (Limit(60, 60),)
#: Wall seconds added to every budget window, for the spread of network delay between our send
#: and the service's count: 15% of the shortest window, at most a quarter second (0.25 s at real
#: speed; less when ``time_scale`` shrinks the windows, or the budget would mostly idle), and
#: never under 20 ms (a thread switch can delay one request that long).
MARGIN_SHARE, MARGIN_FLOOR, MARGIN_CAP = 0.15, 0.02, 0.25


def default_margin(time_scale: float) -> float:
    shortest = min(limit.seconds for limit in CLIENT_LIMITS) / time_scale
    return min(MARGIN_CAP, max(MARGIN_FLOOR, MARGIN_SHARE * shortest))
CHECK_ID = "gateway-connection-check-0"


class InvalidResponse(FatalError):
    """The service answered 200 with a document that does not match its own reference."""


class CursorPaginator:
    """RCI's pages: JSON:API ``links.next`` (loop-checked), re-based on our own base URL."""

    def __init__(self, base_url: str, path: str = "customers") -> None:
        self.path = path
        self._origin = _origin(base_url)
        self._links = JsonApiCursorPaginator(SERVICE, path)

    def first(self) -> tuple[str, dict]:
        return self._links.first()

    def advance(self, response_json: Any) -> tuple[str, dict] | None:
        step = self._links.advance(response_json)
        if step is None:
            return None
        next_link = step[0]
        cursor = parse_qs(urlsplit(next_link).query).get(wire.CURSOR_PARAM)
        if cursor:
            return self.path, {wire.CURSOR_PARAM: cursor[0]}
        if _origin(next_link) != self._origin:
            raise InvalidResponse(SERVICE, "links.next names another host and no page[cursor]",
                                  status=200)
        return next_link, {}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class RciClient(UsesHttp):
    """A client for one RCI account (``config.credentials["api_token"]``)."""

    service = SERVICE

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        retry: RetryPolicy | None = None,
        time_scale: float = 1.0,
        storage_uri: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
        margin: float | None = None,
        validate: bool = True,
        clock: Callable[[], float] = time.time,
        deadline_seconds: float | None = None,
    ) -> None:
        token = config.credentials.get("api_token")
        if not token:
            raise ConfigurationError(SERVICE, "a connection needs credentials['api_token']")
        self.base_url = config.base_url.rstrip("/")
        self.validate = validate
        self.http = HttpClient(
            SERVICE,
            self.base_url,
            BearerAuth(token),
            token,
            CLIENT_LIMITS,
            timeout=timeout,
            retry=retry,
            storage_uri=storage_uri,
            sleep=sleep,
            time_scale=time_scale,
            margin=default_margin(time_scale) if margin is None else margin,
            headers={"Accept": wire.MEDIA_TYPE},
            clock=clock,
            deadline_seconds=deadline_seconds,
        )

    # ---- reads

    def customers(self) -> Iterator[dict[str, Any]]:
        """Every customer resource object, page by page (a generator; one page in memory)."""
        return paginate(self.http, CursorPaginator(self.base_url), self._page_items)

    def read_customers(self) -> Iterator[Customer]:
        """Every customer as a canonical :class:`Customer` (redacted ones carry only their id
        and ``redacted_at``: see :mod:`.mapping`)."""
        for resource in self.customers():
            yield mapping.customer_from_wire(resource)

    def customer(self, rci_id: str) -> dict[str, Any] | None:
        """One customer resource object, or None when the account has no such customer."""
        try:
            document = self.http.json("GET", f"customers/{quote(str(rci_id), safe='')}")
        except NotFound:
            return None
        return self._load(wire.CUSTOMER_DOCUMENT, document)["data"]

    # ---- connection

    def check(self) -> CheckResult:
        """Whether the token works: one GET of a customer id no shop has."""
        try:
            response = self.http.request("GET", f"customers/{CHECK_ID}", ok=(200, 404))
        except AuthError as exc:
            return CheckResult(False, f"the API token was refused ({exc.status})")
        except ConnectorError as exc:
            return CheckResult(False, str(exc))
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 404 and not (
            isinstance(body, dict) and isinstance(body.get("errors"), list)
        ):
            return CheckResult(False, "404 without a JSON:API error: is the base URL the API's "
                                      "(…/api/v1)?")
        return CheckResult(True, "the API token works")

    def __repr__(self) -> str:
        return f"RciClient({self.base_url})"

    # ---- helpers

    def _page_items(self, page: Any) -> list[dict[str, Any]]:
        return self._load(wire.LIST_DOCUMENT, page)["data"]

    def _load(self, schema: Any, document: Any) -> Any:
        if not self.validate:
            return document
        try:
            return schema.load(document)
        except SchemaError as exc:
            raise InvalidResponse(SERVICE, f"unexpected document: {_summary(exc.messages)}",
                                  status=200) from None


def _summary(messages: Any, limit: int = 3) -> str:
    """A few of marshmallow's error paths (no values: they may be personal data)."""
    paths: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif prefix:
            paths.append(prefix)

    walk(messages, "")
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def make_client(config: ConnectionConfig, **kwargs: Any) -> RciClient:
    """The spec's factory: ``RciClient(config, **kwargs)``."""
    return RciClient(config, **kwargs)
