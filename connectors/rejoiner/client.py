"""The Rejoiner client, on the shared HTTP core (``connectors.http``).

One pooled session and one rate budget per credential (5 requests a second by default, NOTES;
in Redis when ``GATEWAY_REDIS_URL`` or ``storage_uri`` says so); retries of 429/5xx/timeouts/
resets honouring ``Retry-After``; no retry of any other 4xx; typed errors without the key.

Rejoiner's 400 bodies are DRF field errors (``{"email": ["..."]}``, nested items as lists),
which the core's error table does not read, so :func:`_drf_field_errors` flattens them into the
:class:`ValidationError`'s ``field_errors`` (``cart_items[1].product_id``).

``upsert_customer`` is a read-merge-write: Rejoiner has no upsert, replaces ``tags`` and
``metadata`` whole, and the gateway owns only ``gw:`` tags and the ``gateway`` metadata key.
``convert`` has no idempotency key: a resend may convert twice.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping
from urllib.parse import quote

from connectors.base import CheckResult, ConnectionConfig, Limit
from connectors.http import (
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
from connectors.rejoiner import mapping
from gateway.model import Cart, Customer, Order, normalise_currency

SERVICE = "rejoiner"
DEFAULT_BASE_URL = "https://rj2.rejoiner.com"
API_PATH = "/api/v1/{site_id}"
#: Pinned by NOTES.md: the client holds itself to 5 requests a second per credential.
CLIENT_LIMITS = (Limit(5, 1),)


def api_base_url(base_url: str, site_id: str) -> str:
    """The API root for a site: ``base_url`` as is when it names the site, else with the path.

    ``https://rj2.rejoiner.com`` -> ``https://rj2.rejoiner.com/api/v1/<site_id>``; a base URL
    holding ``{site_id}`` has it filled in.
    """
    url = base_url.rstrip("/")
    if "{site_id}" in url:
        return url.replace("{site_id}", quote(site_id, safe=""))
    if "/api/v1/" in url + "/":
        return url
    return url + API_PATH.format(site_id=quote(site_id, safe=""))


def _drf_field_errors(body: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's error body flattened: ``{"cart_items": [{}, {"price": [m]}]}`` ->
    ``{"cart_items[1].price": [m]}``; ``{"detail": m}`` -> ``{"": [m]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(body, dict):
        for key, value in body.items():
            name = "" if key == "detail" and not prefix else (
                f"{prefix}.{key}" if prefix else str(key))
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out.setdefault(name, []).extend(value)
            elif isinstance(value, str):
                out.setdefault(name, []).append(value)
            else:
                out.update(_drf_field_errors(value, name))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            out.update(_drf_field_errors(value, f"{prefix}[{index}]"))
    return out


class RejoinerClient(UsesHttp):
    """Rejoiner for one site and key. ``config.options``: ``site_id`` (required), ``currency``."""

    def __init__(self, config: ConnectionConfig, *, retry: RetryPolicy | None = None,
                 time_scale: float = 1.0, storage_uri: str | None = None,
                 timeout: float | tuple[float, float] = (5.0, 30.0),
                 limits: tuple[Limit, ...] = CLIENT_LIMITS,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time,
                 deadline_seconds: float | None = None) -> None:
        api_key = config.credentials.get("api_key")
        site_id = config.options.get("site_id")
        if not api_key:
            raise ConfigurationError(SERVICE, "the credential api_key is required")
        if not site_id:
            raise ConfigurationError(SERVICE, "the option site_id is required")
        self.site_id = str(site_id)
        try:
            self.currency = normalise_currency(config.options.get("currency") or "USD")
        except ValueError as exc:
            raise ConfigurationError(SERVICE, f"options['currency']: {exc}") from None
        if not isinstance(timeout, tuple):
            timeout = (float(timeout), float(timeout))
        self.http = HttpClient(
            SERVICE, api_base_url(config.base_url or DEFAULT_BASE_URL, self.site_id),
            HeaderAuth("Authorization", f"Rejoiner {api_key}"), api_key, limits,
            timeout=timeout, retry=retry, storage_uri=storage_uri, sleep=sleep,
            time_scale=time_scale, headers={"Content-Type": "application/json"}, clock=clock,
            deadline_seconds=deadline_seconds,
        )

    # ---- plumbing

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.http.json(method, path, json=body)
        except ValidationError as exc:
            if not exc.field_errors:
                exc.field_errors = _drf_field_errors(exc.body)
                first = next(iter(exc.field_errors.items()), None)
                if first:
                    exc.message = f"{first[0] or 'request'}: {first[1][0]}"[:300]
                    exc.args = (exc._summary(),)
            raise

    @staticmethod
    def _customer_path(id_or_email: str) -> str:
        return f"customers/{quote(id_or_email, safe='')}/"

    # ---- the endpoints

    def ping(self) -> dict[str, Any]:
        """``GET /ping/``: ``{"status": "success"}`` for a good key."""
        return self._call("GET", "ping/")

    def check(self) -> CheckResult:
        """Does this key (and site id) work? Uses ``/ping/``, as the reference advises."""
        try:
            answer = self.ping()
        except AuthError as exc:
            return CheckResult(False, f"the API key was refused ({exc.status}: {exc.message})")
        except NotFound:
            return CheckResult(False, f"no site {self.site_id!r} for this key (404)")
        except ConnectorError as exc:
            return CheckResult(False, str(exc))
        if isinstance(answer, dict) and answer.get("status") == "success":
            return CheckResult(True, f"Rejoiner site {self.site_id}: key accepted")
        return CheckResult(False, f"unexpected ping answer: {str(answer)[:100]}")

    def get_customer(self, id_or_email: str) -> dict[str, Any] | None:
        """The stored profile (wire shape), or None when Rejoiner knows no such customer."""
        try:
            return self._call("GET", self._customer_path(id_or_email))
        except NotFound:
            return None

    def lookup_customer(self, email: str) -> Customer | None:
        """The canonical customer for an email (the ``customers`` read), or None."""
        profile = self.get_customer(email)
        return mapping.profile_to_customer(profile) if profile is not None else None

    def create_customer(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "customers/", dict(profile))

    def update_customer(self, id_or_email: str, profile: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PUT", self._customer_path(id_or_email), dict(profile))

    def upsert_customer(self, customer: Customer,
                        gateway_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create or update a customer, owning only ``gw:`` tags and the ``gateway`` key.

        Look up by email, merge (the shop's own tags and metadata keys as Rejoiner holds them,
        ``gw:`` tags and ``gateway`` from the gateway), then ``PUT`` the whole object or ``POST``
        a new one. Two requests per customer. ``gateway_metadata`` is added to the ``gateway``
        block (e.g. an origin marker for echo suppression). A create that loses a race to
        another writer is retried once as an update.
        """
        desired = mapping.customer_to_profile(customer)
        if gateway_metadata:
            block = {**desired["metadata"].get(mapping.GATEWAY_KEY, {}), **gateway_metadata}
            desired["metadata"][mapping.GATEWAY_KEY] = block
        existing = self.get_customer(desired["email"])
        if existing is None:
            try:
                return self.create_customer(mapping.merge_profile(None, desired))
            except ValidationError as exc:
                if "email" not in exc.field_errors:
                    raise
                existing = self.get_customer(desired["email"])
                if existing is None:
                    raise
        return self.update_customer(existing["id"], mapping.merge_profile(existing, desired))

    def convert(self, record: Cart | Order) -> dict[str, Any]:
        """``POST /customer/convert/`` for a cart, or for an order (a purchase). No idempotency
        key: a resend may convert twice."""
        cart = mapping.order_to_cart(record) if isinstance(record, Order) else record
        return self._call("POST", "customer/convert/", mapping.cart_to_convert(cart, self.currency))

    def cancel(self, record: Customer | str) -> dict[str, Any]:
        """``POST /customer/cancel/``: stop the customer's active journeys."""
        return self._call("POST", "customer/cancel/", mapping.email_body(record))

    def unsubscribe(self, record: Customer | str) -> dict[str, Any]:
        return self._call("POST", "customer/unsubscribe/", mapping.email_body(record))

    def opt_in(self, record: Customer | str,
               info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", "customer/opt_in/", mapping.opt_in_body(record, info))

    def __repr__(self) -> str:
        return f"RejoinerClient(site={self.site_id!r}, {self.http.base_url})"


def make_client(config: ConnectionConfig, **kwargs: Any) -> RejoinerClient:
    return RejoinerClient(config, **kwargs)
