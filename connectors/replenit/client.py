"""The Replenit client: batch upserts and deletes for one tenant. Write only.

Built on :mod:`connectors.http`: one pooled session per key, a proactive budget of 100 a minute
and 5,000 an hour per key (memory, or Redis via ``GATEWAY_REDIS_URL`` / ``storage_uri``),
retries on 429/5xx/timeouts/resets honouring ``Retry-After``, no retry on another 4xx, typed
errors that never carry the key.

- Upserts go out in chunks of at most the documented maximum (customers 500, orders 200,
  products 100); a 400 from a later chunk is re-keyed to the index in the whole list.
- Replenit rejects a batch whole when one record is invalid (the sandbox does so; see its
  docstring). :func:`send_upsert`, behind the connector's ``*.upsert`` operations, therefore
  resends the remaining valid records of a batch **once** and reports only the records the
  service named in ``WriteResult.rejected``. Records that cannot be mapped at all (a line in
  another currency than its order) are rejected locally under ``"$"`` without a request.
- Replenit answers 404 only for an unknown tenant (or path): every 404 is raised as
  :class:`~connectors.http.AddressNotFound`, which fails the connection rather than
  dead-letter every record sent to a wrong tenant.
- :meth:`ReplenitClient.check`: Replenit has no read endpoint, so the check POSTs an empty
  array to ``/customers/{tenantId}``: nothing can change, a 401 means a bad key, a 404 an
  unknown tenant, and a 200 (or a 400 about the body, which means key and tenant passed) a
  working connection. Chosen over a DELETE of a made-up customer id, which is harmless only as
  long as no shop ever uses that id.
- Decimals go out as exact JSON numbers (the HTTP core writes bodies with
  :mod:`connectors.jsontext`), whatever their number of digits.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

from connectors.base import CheckResult, ConnectionConfig, Limit, WriteResult
from connectors.http import (
    AddressNotFound,
    AuthError,
    ConfigurationError,
    ConnectorError,
    HeaderAuth,
    HttpClient,
    NotFound,
    RetryPolicy,
    UsesHttp,
    ValidationError,
)

from . import wire

SERVICE = "replenit"
#: What the client holds itself to: the documented limits, per key.
CLIENT_LIMITS: tuple[Limit, ...] = wire.LIMITS
#: Wall seconds added to every budget window, for the spread of network delay between our send
#: and the service's count.
MARGIN = 0.25


def _segment(value: str) -> str:
    """One path segment. A ``/`` cannot be said in one (servers decode ``%2F`` before routing,
    so ``O/1`` would address another resource): refused."""
    text = str(value)
    if "/" in text or not text:
        raise ValueError(f"{text!r} cannot be a path segment at Replenit")
    return quote(text, safe="")


_INDEX = re.compile(r"^\[(\d+)\]")


def _offset(error: ValidationError, offset: int) -> ValidationError:
    """The same 400 with ``[i]`` keys moved by ``offset`` (chunk -> whole list)."""
    if not offset:
        return error
    keys = {_INDEX.sub(lambda m: f"[{int(m.group(1)) + offset}]", k): v
            for k, v in error.field_errors.items()}
    moved = ValidationError(error.service, error.message, status=error.status, body=error.body,
                            field_errors=keys)
    return moved


class ReplenitClient(UsesHttp):
    """A client for one Replenit tenant (``options["tenant_id"]``, ``credentials["api_key"]``)."""

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
        margin: float = MARGIN,
        clock: Callable[[], float] = time.time,
        deadline_seconds: float | None = None,
    ) -> None:
        key = config.credentials.get("api_key")
        if not key:
            raise ConfigurationError(SERVICE, "a connection needs credentials['api_key']")
        tenant = config.options.get("tenant_id")
        if not tenant:
            raise ConfigurationError(SERVICE, "a connection needs options['tenant_id']")
        self.tenant_id = str(tenant)
        try:
            _segment(self.tenant_id)
        except ValueError as exc:
            raise ConfigurationError(SERVICE, f"options['tenant_id']: {exc}") from None
        self.base_url = config.base_url.rstrip("/")
        self.http = HttpClient(
            SERVICE, self.base_url, HeaderAuth(wire.AUTH_HEADER, key), key, CLIENT_LIMITS,
            timeout=timeout, retry=retry, storage_uri=storage_uri, sleep=sleep,
            time_scale=time_scale, margin=margin, clock=clock,
            deadline_seconds=deadline_seconds,
        )

    def _path(self, resource: str, *rest: str) -> str:
        return "/".join([resource, _segment(self.tenant_id), *map(_segment, rest)])

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``http.json`` where every 404 is about the connection: Replenit answers 404 only for
        an unknown tenant or path (a delete of an unknown record is a success, count 0)."""
        try:
            return self.http.json(method, path, **kwargs)
        except NotFound as exc:
            raise AddressNotFound.from_error(
                exc, f"{exc.message} (is options['tenant_id'] or the base URL wrong?)") from None

    # ---- upserts

    def post(self, kind: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One POST of wire records (at most the endpoint's maximum); the envelope's ``data``."""
        if len(records) > wire.BATCH_MAX[kind]:
            raise ValueError(f"at most {wire.BATCH_MAX[kind]} {kind} a request")
        body = self._json("POST", self._path(kind), json=list(records))
        return body.get("data", {}) if isinstance(body, dict) else {}

    def upsert(self, kind: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Upsert wire records in chunks of the documented maximum; how many were saved.

        A 400 raises :class:`~connectors.http.ValidationError` with ``[i]`` keys counted over
        ``records`` (chunks before the failing one are saved, later ones not sent).
        """
        size = wire.BATCH_MAX[kind]
        saved = 0
        for start in range(0, len(records), size):
            try:
                data = self.post(kind, records[start:start + size])
            except ValidationError as exc:
                raise _offset(exc, start) from None
            saved += int(data.get("count", 0))
        return saved

    def upsert_customers(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.upsert("customers", records)

    def upsert_orders(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.upsert("orders", records)

    def upsert_products(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.upsert("products", records)

    # ---- deletes (idempotent: an unknown record answers success, count 0)

    def _delete(self, path: str, params: dict[str, str] | None = None) -> int:
        body = self._json("DELETE", path, params=params)
        data = body.get("data", {}) if isinstance(body, dict) else {}
        return int(data.get("count", 0) or 0) if isinstance(data, dict) else 0

    def delete_customer(self, customer_id: str | None = None, email: str | None = None) -> int:
        """Delete by ``customerId`` and/or ``email`` (one request each that is given)."""
        if not customer_id and not email:
            raise ValueError("a customer delete needs a customer id or an email")
        count = 0
        if customer_id:
            count += self._delete(self._path("customers"), {"customerId": customer_id})
        if email:
            count += self._delete(self._path("customers"), {"email": email})
        return count

    def delete_order(self, order_id: str) -> int:
        return self._delete(self._path("orders", order_id))

    def delete_order_item(self, order_id: str, product_id: str, sku: str) -> int:
        return self._delete(self._path("orders", order_id, "items"),
                            {"productId": product_id, "sku": sku})

    def delete_product(self, product_id: str) -> int:
        return self._delete(self._path("products", product_id))

    def delete_variant(self, product_id: str, variant_id: str) -> int:
        return self._delete(self._path("products", product_id, "variants", variant_id))

    # ---- connection

    def check(self) -> CheckResult:
        """Does the key work for this tenant? One POST of ``[]`` (see the module docstring)."""
        try:
            self.http.request("POST", self._path("customers"), json=[], ok=(200, 400))
        except AuthError as exc:
            return CheckResult(False, f"the API key was refused ({exc.status})")
        except NotFound:
            return CheckResult(False, "the tenant id is unknown to Replenit (404)")
        except ConnectorError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, "the API key works for this tenant")

    def __repr__(self) -> str:
        return f"ReplenitClient({self.base_url})"


def make_client(config: ConnectionConfig, **kwargs: Any) -> ReplenitClient:
    return ReplenitClient(config, **kwargs)


# --- what the operations do ----------------------------------------------------------------------

ToWire = Callable[[Any, Mapping[str, Any]], dict]


def send_upsert(client: ReplenitClient, kind: str, records: Sequence[Any], to_wire: ToWire,
                context: Mapping[str, Any]) -> WriteResult:
    """Map and upsert canonical ``records``; reject only what the service names.

    Replenit rejects a batch whole, so after a 400 naming records the rest are resent once.
    ``rejected`` is keyed by the index in ``records``.
    """
    rejected: dict[int, dict[str, list[str]]] = {}
    payload: list[dict] = []
    positions: list[int] = []
    for index, record in enumerate(records):
        try:
            payload.append(to_wire(record, context))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            rejected[index] = {"$": [str(exc)]}
            continue
        positions.append(index)
    accepted = 0
    size = wire.BATCH_MAX[kind]
    for start in range(0, len(payload), size):
        accepted += _post_resending(client, kind, payload[start:start + size],
                                    positions[start:start + size], rejected)
    return WriteResult(accepted=accepted, rejected=dict(sorted(rejected.items())))


def _post_resending(client: ReplenitClient, kind: str, chunk: list[dict], positions: list[int],
                    rejected: dict[int, dict[str, list[str]]], resend: bool = True) -> int:
    if not chunk:
        return 0
    try:
        client.post(kind, chunk)
        return len(chunk)
    except ValidationError as exc:
        named = {i: errors for i, errors in exc.by_record.items() if 0 <= i < len(chunk)}
        if not named:  # nothing names a record: the batch as a whole was refused
            for position in positions:
                rejected[position] = dict(exc.field_errors) or {"$": [exc.message]}
            return 0
        for i, errors in named.items():
            rejected[positions[i]] = errors
        rest = [i for i in range(len(chunk)) if i not in named]
        if not resend:
            for i in rest:
                rejected[positions[i]] = {"$": ["not saved: the batch was refused again on "
                                                "its resend"]}
            return 0
        return _post_resending(client, kind, [chunk[i] for i in rest],
                               [positions[i] for i in rest], rejected, resend=False)


def send_deletes(records: Sequence[Any], delete: Callable[[Any], Any]) -> WriteResult:
    """Delete each record; a 400 rejects that record, other failures raise."""
    accepted = 0
    rejected: dict[int, dict[str, list[str]]] = {}
    for index, record in enumerate(records):
        try:
            delete(record)
        except ValidationError as exc:
            rejected[index] = dict(exc.field_errors) or {"$": [exc.message]}
            continue
        except (ValueError, KeyError, TypeError) as exc:
            rejected[index] = {"$": [str(exc)]}
            continue
        accepted += 1
    return WriteResult(accepted=accepted, rejected=rejected)
