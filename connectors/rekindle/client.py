"""Rekindle's HTTP client, on the shared core (:mod:`connectors.http`).

One pooled session and one rate budget (120 requests per 60 s, per key; in Redis when
``GATEWAY_REDIS_URL`` or ``storage_uri`` says so) per credential; 429, 5xx, timeouts and resets
are retried with ``Retry-After`` honoured; other 4xx are not. Answers are parsed with exact
decimals and held to the wire schemas before they are mapped.

Two things the kit shapes here:

* ``total_spent`` is a ``Decimal`` and goes out as an exact JSON number (the HTTP core writes
  bodies with :mod:`connectors.jsontext`), whatever its number of digits.
* A 403 (the plan has no API access) is raised as :class:`AuthError` whose message says so.
* A 404 other than find-customer's "Customer not found" is about the address (a wrong base
  URL), not a record: it is raised as :class:`AddressNotFound`, which fails the connection.

``clock``, ``sleep`` and ``deadline_seconds`` pass through to the :class:`HttpClient`; a
``with client.deadline(at):`` block bounds every request in it.
"""

from __future__ import annotations

from typing import Any, Mapping

from connectors.base import CheckResult, ConnectionConfig, Limit
from connectors.http import (
    AddressNotFound,
    AuthError,
    BearerAuth,
    ConfigurationError,
    ConnectorError,
    FatalError,
    HttpClient,
    NotFound,
    RetryPolicy,
    UsesHttp,
    ValidationError,
)
from gateway.model import Customer, normalise_currency

from . import mapping, wire

SERVICE = "rekindle"
DEFAULT_BASE_URL = "https://rekindle.business/api/zapier"
LIMITS = (Limit(120, 60),)

STATUS_PATH = "/triggers/customer-status"
RETURNED_PATH = "/triggers/customer-returned"
UPDATE_PATH = "/actions/update-customer"
FIND_PATH = "/actions/find-customer"

_ITEMS = wire.CustomerItem(many=True)
_UPDATED = wire.UpdateCustomerResponse()
_REQUEST = wire.UpdateCustomerRequest()


class RekindleClient(UsesHttp):
    """Rekindle's Zapier API for one connection (``credentials["api_key"]``,
    ``options["currency"]``, default USD)."""

    service = SERVICE

    def __init__(self, config: ConnectionConfig, *, retry: RetryPolicy | None = None,
                 time_scale: float = 1.0, storage_uri: str | None = None,
                 timeout: tuple[float, float] = (5.0, 30.0),
                 limits: tuple[Limit, ...] = LIMITS, **http_kwargs: Any) -> None:
        api_key = config.credentials.get("api_key") if config.credentials else None
        if not api_key:
            raise ConfigurationError(SERVICE, "a connection needs credentials['api_key']")
        try:
            self.currency = normalise_currency((config.options or {}).get("currency") or "USD")
        except ValueError as exc:
            raise ConfigurationError(SERVICE, f"options['currency']: {exc}") from None
        self.http = HttpClient(
            SERVICE, config.base_url or DEFAULT_BASE_URL, BearerAuth(api_key), api_key, limits,
            timeout=timeout, retry=retry, storage_uri=storage_uri, time_scale=time_scale,
            **http_kwargs,
        )

    # ---- plumbing

    def _get(self, path: str, params: dict | None = None) -> Any:
        return self._send("GET", path, params=params)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except AuthError as exc:
            if exc.status == 403:
                raise AuthError(
                    SERVICE,
                    "the API key is valid but this Rekindle plan has no API access (the Scale "
                    f"plan is required): {exc.message}",
                    status=403, body=exc.body,
                ) from None
            raise
        except NotFound as exc:
            if _is_customer_not_found(exc):
                raise
            raise AddressNotFound.from_error(
                exc, f"{method} {path}: {exc.message} (is the base URL right?)") from None
        try:
            return wire.loads(response.content)
        except ValueError:
            raise FatalError(SERVICE, f"{method} {path}: the answer is not JSON",
                             status=response.status_code) from None
        finally:
            response.close()

    @staticmethod
    def _hold(schema: Any, payload: Any, what: str) -> Any:
        try:
            return schema.load(payload)
        except wire.ValidationError as exc:
            raise FatalError(SERVICE, f"unexpected {what} answer: {exc.messages}",
                             body=payload) from None

    # ---- the API

    def check(self) -> CheckResult:
        """One cheap call (the customer-returned trigger) telling a good key from a bad one.

        401/403 give ``ok=False`` with the reason; an unreachable service raises.
        """
        try:
            self._get(RETURNED_PATH)
        except AuthError as exc:
            if exc.status == 403:
                return CheckResult(False, exc.message)
            return CheckResult(False, f"the API key was refused ({exc.status}): {exc.message}")
        return CheckResult(True, "the API key works")

    def customer_status_wire(self) -> list[dict[str, Any]]:
        return self._hold(_ITEMS, self._get(STATUS_PATH), "customer-status")

    def customer_returned_wire(self) -> list[dict[str, Any]]:
        return self._hold(_ITEMS, self._get(RETURNED_PATH), "customer-returned")

    def customer_status(self) -> list[Customer]:
        """Up to 10 customers needing attention (at_risk, lapsed, lost), newest update first."""
        return mapping.customers_from_wire(self.customer_status_wire(), self.currency)

    def customer_returned(self) -> list[Customer]:
        """Up to 10 won-back customers, newest ``returned_at`` first."""
        return mapping.customers_from_wire(self.customer_returned_wire(), self.currency)

    def find_customer_wire(self, email: str) -> dict[str, Any] | None:
        """The raw match for ``email``, or None when Rekindle says "Customer not found"."""
        try:
            payload = self._get(FIND_PATH, params={"email": email})
        except NotFound as exc:
            if _is_customer_not_found(exc):
                return None
            raise  # a 404 for the path itself: a wrong base URL is not "no such customer"
        items = self._hold(_ITEMS, payload, "find-customer")
        return items[0] if items else None

    def find_customer(self, email: str) -> Customer | None:
        item = self.find_customer_wire(email)
        return None if item is None else mapping.customer_from_wire(item, self.currency)

    def update_customer_wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send an update-customer body as is (checked against the wire schema first: a record
        Rekindle would refuse costs no request); the answer's ``customer``."""
        errors = _REQUEST.validate(body)
        if errors:
            raise ValidationError(SERVICE, wire.error_message(errors),
                                  field_errors={k: _messages(v) for k, v in errors.items()})
        answer = self._send("POST", UPDATE_PATH, json=dict(body), ok=(200, 201))
        return self._hold(_UPDATED, answer, "update-customer")

    def update_customer(self, customer: Customer, currency: str | None = None
                        ) -> tuple[Customer, bool]:
        """Upsert ``customer`` by email; Rekindle's re-scored customer and whether this update
        was a win-back return."""
        currency = normalise_currency(currency) if currency else self.currency
        body = mapping.customer_to_wire(customer, currency)
        answer = self.update_customer_wire(body)
        return mapping.updated_from_wire(answer, currency)

    def __repr__(self) -> str:
        return f"RekindleClient({self.http.base_url}, {self.currency})"


def _is_customer_not_found(error: NotFound) -> bool:
    """Rekindle's own "no such customer" (find-customer), as opposed to a 404 for the path."""
    return isinstance(error.body, dict) and error.body.get("error") == wire.ERROR_NOT_FOUND


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(m) for sub in value.values() for m in (sub if isinstance(sub, list) else [sub])]
    return [str(value)]


def make_client(config: ConnectionConfig, **kwargs: Any) -> RekindleClient:
    """The connector registry's factory."""
    return RekindleClient(config, **kwargs)


__all__ = ["ConnectorError", "RekindleClient", "make_client"]
