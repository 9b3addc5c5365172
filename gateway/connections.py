"""Per-tenant connections to the four services: the service layer under the
``python app.py connections ...`` commands and ``/api/v1/connections`` (no Flask here).

**Base URLs.** Each connector has its documented API root (:data:`DOCUMENTED_BASE_URLS`;
Rejoiner's names the site: ``https://rj2.rejoiner.com/api/v1/{site_id}``). A connection's
base URL is stored whole, as the client uses it. Pointing a connection elsewhere (a sandbox,
a staging host) changes only scheme, host and port: :func:`base_url_for` keeps the documented
path, so ``--base-url http://127.0.0.1:9002`` for Rejoiner site ``s1`` is stored as
``http://127.0.0.1:9002/api/v1/s1``, for Rekindle as ``http://127.0.0.1:9002/api/zapier``. A
given URL may also spell the documented path out (``.../api/v1`` or ``.../api/v1/s1`` for
Rejoiner); any other path, a query, a fragment or a user/password in it is refused.

**Options.** Each connector takes its own (``connectors.<name>.CONNECTOR.option_fields``):
Rejoiner ``site_id`` (required) and ``currency``; Rekindle ``currency``; Replenit
``tenant_id`` (required, a GUID); RCI none. A currency is ISO 4217 and, when not given, the
tenant's ``base_currency`` at the time the connection is set (stored, so it shows).

**Credentials.** A mapping of the connector's ``credential_fields`` (all four take one:
``api_key``, RCI ``api_token``), each a printable string without spaces. Never returned: a
summary says ``credentials_set`` and gives, per field, the last four characters of a value of
at least 16 (:func:`credential_hint`), else nothing.

**Where the base URL was set.** A connection set over the API (``set_via="api"``) had its
base URL checked by :func:`gateway.netguard.check_target` when it was set, and its clients
are built with :class:`gateway.netguard.PinnedAdapter`, so every connection they open is
checked again (no DNS rebinding). One set on the command line (``"cli"``) or by code is
trusted as the operator's choice (a sandbox on 127.0.0.1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from sqlalchemy import Engine

from connectors import base as registry
from connectors.base import CheckResult, ConnectionConfig
from connectors.http import ConnectorError, RetryPolicy
from gateway import netguard
from gateway.crypto import CredentialsError, Vault
from gateway.money import ISO_4217
from gateway.runtime import Runtime
from gateway.store import connections as store
from gateway.store import tenants as tenant_store

#: The connectors a tenant can connect, in the order lists show them.
CONNECTORS = registry.BUILTIN
#: The connection name the relay uses (one connection per connector and tenant).
NAME = "default"

#: Each service's documented API root; ``{site_id}`` is filled in from the options.
DOCUMENTED_BASE_URLS: dict[str, str] = {
    "rekindle": "https://rekindle.business/api/zapier",
    "rejoiner": "https://rj2.rejoiner.com/api/v1/{site_id}",
    "rci": "https://repeat-customer-insights.littlestreamsoftware.com/api/v1",
    "replenit": "https://api.replen.it",
}

MAX_CREDENTIAL_CHARS = 4096
HINT_MIN_CHARS = 16  # a shorter credential gets no hint: four characters would be too many
_SITE_ID = re.compile(r"[A-Za-z0-9._~-]{1,100}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces

#: How ``check`` calls the service: two quick attempts, an answer within seconds.
CHECK_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.2, backoff_cap=1.0, max_elapsed=20.0)
CHECK_TIMEOUT = (5.0, 15.0)


class InvalidConnection(ValueError):
    """A connection that cannot be set; ``errors`` maps each bad field to its messages, and
    ``section`` (``"options"``, ``"credentials"`` or None) says where those fields are."""

    def __init__(self, errors: Mapping[str, list[str]], section: str | None = None) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        self.section = section
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))

    def nested(self) -> dict[str, Any]:
        """The errors as a request body holds the fields: ``{"options": {"site_id": ...}}``."""
        return {self.section: self.errors} if self.section else dict(self.errors)


class UnknownConnection(LookupError):
    """No such connector, or the tenant has no connection to it; the message says which."""


@dataclass(frozen=True)
class ConnectionSummary:
    """What may be shown of a connection: everything but the secret."""

    connector: str
    title: str
    base_url: str
    options: Mapping[str, Any]
    credentials_set: bool
    credentials_readable: bool
    credential_hints: Mapping[str, str | None]
    set_via: str
    created_at: datetime | None
    updated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"connector": self.connector, "title": self.title, "base_url": self.base_url,
                "options": dict(self.options), "credentials_set": self.credentials_set,
                "credentials_readable": self.credentials_readable,
                "credential_hints": dict(self.credential_hints), "set_via": self.set_via,
                "created_at": self.created_at, "updated_at": self.updated_at}


def spec_for(connector: str) -> registry.ConnectorSpec:
    """The connector's spec; :class:`UnknownConnection` naming the known ones."""
    if connector not in CONNECTORS:
        raise UnknownConnection(f"no connector {connector!r}; known: {', '.join(CONNECTORS)}")
    return registry.get(connector)


# ------------------------------------------------------------------------ validation


def documented_base_url(connector: str, options: Mapping[str, Any]) -> str:
    """The documented API root, with Rejoiner's site id filled in."""
    template = DOCUMENTED_BASE_URLS[connector]
    if "{site_id}" in template:
        return template.replace("{site_id}", str(options["site_id"]))
    return template


def base_url_for(connector: str, given: str | None, options: Mapping[str, Any]) -> str:
    """The base URL to store: the documented one, or ``given``'s scheme, host and port with
    the documented path (see the module docstring); :class:`InvalidConnection` otherwise."""
    documented = documented_base_url(connector, options)
    if given is None or given == "":
        return documented
    if not isinstance(given, str):
        raise InvalidConnection({"base_url": ["must be a string"]})
    try:
        parts = urlsplit(given.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidConnection({"base_url": [f"not a valid URL ({exc})"]}) from None
    problems = []
    if parts.scheme.lower() not in ("http", "https"):
        problems.append("must start with https:// (or http:// for a local sandbox)")
    if not parts.hostname:
        problems.append("has no host")
    if parts.username is not None or parts.password is not None:
        problems.append("must not carry a user name or password (credentials go in the "
                        "connection's credentials)")
    if parts.query or parts.fragment or given.strip().endswith(("?", "#")):
        problems.append("must not have a query or a fragment")
    path = urlsplit(documented).path
    accepted = {"", path.rstrip("/")}
    if connector == "rejoiner":
        accepted.add(path.rsplit("/", 1)[0])  # /api/v1: the site id is appended
    if parts.path.rstrip("/") not in accepted:
        problems.append(f"may change only scheme, host and port: its path must be empty or "
                        f"{path!r}, the documented one (got {parts.path!r})")
    if problems:
        raise InvalidConnection({"base_url": problems})
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme.lower()}://{netloc}{path}"


def _currency(value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() not in ISO_4217:
        raise ValueError("must be an ISO 4217 currency code, e.g. USD")
    return value.strip().upper()


def validate_options(connector: str, given: Mapping[str, Any] | None, *,
                     default_currency: str | None = None) -> dict[str, Any]:
    """The connector's options, checked and normalised; :class:`InvalidConnection` naming
    every bad one. A missing currency becomes ``default_currency`` (when given)."""
    spec = spec_for(connector)
    values = {k: v for k, v in dict(given or {}).items() if v is not None}
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for key in values:
        if key not in spec.option_fields:
            known = ", ".join(spec.option_fields) or "none"
            errors[str(key)[:64]] = [f"not an option of {connector} (its options: {known})"]
    if "site_id" in spec.option_fields:
        site = values.get("site_id")
        if site is None or site == "":
            errors["site_id"] = [f"required for {connector}: the site id Rejoiner shows"]
        elif not isinstance(site, str) or not _SITE_ID.fullmatch(site.strip()):
            errors["site_id"] = ["must be 1 to 100 letters, digits or . _ ~ -"]
        else:
            out["site_id"] = site.strip()
    if "tenant_id" in spec.option_fields:
        guid = values.get("tenant_id")
        if guid is None or guid == "":
            errors["tenant_id"] = [f"required for {connector}: the tenant id (a GUID)"]
        elif not isinstance(guid, str) or not _GUID.fullmatch(guid.strip()):
            errors["tenant_id"] = ["must be a GUID, e.g. 6a1f0c2e-8d4b-4f7a-9c3e-2b5d7e9f1a3c"]
        else:
            out["tenant_id"] = guid.strip()
    if "currency" in spec.option_fields:
        currency = values.get("currency") or default_currency
        if currency:
            try:
                out["currency"] = _currency(currency)
            except ValueError as exc:
                errors["currency"] = [str(exc)]
    if errors:
        raise InvalidConnection(errors, "options")
    return out


def validate_credentials(connector: str, given: Mapping[str, Any]) -> dict[str, str]:
    """The connector's credential fields, every one present and a printable string."""
    spec = spec_for(connector)
    errors: dict[str, list[str]] = {}
    if not isinstance(given, Mapping):
        raise InvalidConnection({"credentials": ["must be an object of "
                                                 f"{', '.join(spec.credential_fields)}"]})
    for key in given:
        if key not in spec.credential_fields:
            errors[str(key)[:64]] = [f"not a credential of {connector} (its credentials: "
                                     f"{', '.join(spec.credential_fields)})"]
    out: dict[str, str] = {}
    for name in spec.credential_fields:
        value = given.get(name)
        if value is None or value == "":
            errors[name] = ["required"]
        elif not isinstance(value, str):
            errors[name] = ["must be a string"]
        elif len(value) > MAX_CREDENTIAL_CHARS:
            errors[name] = [f"longer than {MAX_CREDENTIAL_CHARS} characters"]
        elif not _PRINTABLE.fullmatch(value):
            errors[name] = ["must be printable ASCII without spaces or line breaks"]
        else:
            out[name] = value
    if errors:
        raise InvalidConnection(errors, "credentials")
    return out


def parse_credential_text(connector: str, text: str) -> dict[str, str]:
    """Credentials as typed or piped: a JSON object of the credential fields, or, for a
    connector with one credential field, the plain value. Surrounding whitespace is dropped."""
    spec = spec_for(connector)
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            raise InvalidConnection({"credentials": ["starts with { but is not a JSON "
                                                     "object"]}) from None
        return validate_credentials(connector, value)
    if len(spec.credential_fields) != 1:
        raise InvalidConnection({"credentials": [
            f"{connector} takes {', '.join(spec.credential_fields)}: give a JSON object"]})
    return validate_credentials(connector, {spec.credential_fields[0]: text})


def credential_hint(value: str | None) -> str | None:
    """``"…cdef"`` for a credential of at least :data:`HINT_MIN_CHARS`, else None."""
    if not isinstance(value, str) or len(value) < HINT_MIN_CHARS:
        return None
    return "…" + value[-4:]


# ------------------------------------------------------------------------ the operations


def _summary(spec: registry.ConnectorSpec, base_url: str, options: Mapping[str, Any],
             credentials: Mapping[str, str] | None, set_via: str,
             created_at: datetime | None, updated_at: datetime | None) -> ConnectionSummary:
    hints = {name: credential_hint((credentials or {}).get(name))
             for name in spec.credential_fields} if credentials is not None else {}
    return ConnectionSummary(connector=spec.name, title=spec.title, base_url=base_url,
                             options=dict(options), credentials_set=True,
                             credentials_readable=credentials is not None,
                             credential_hints=hints, set_via=set_via,
                             created_at=created_at, updated_at=updated_at)


def set_connection(engine: Engine, vault: Vault, tenant_id: str, connector: str, *,
                   credentials: Mapping[str, Any] | None, base_url: str | None = None,
                   options: Mapping[str, Any] | None = None, set_via: str = "cli",
                   check_url: Callable[[str], None] | None = None) -> ConnectionSummary:
    """Create or replace the tenant's connection to ``connector``.

    ``credentials`` None keeps the stored ones, where the base URL stays the same (an error
    when there are none, or when the base URL changes). ``check_url``
    (e.g. :func:`gateway.netguard.check_target` bound to the tenant's allowance) is called
    with a *given* base URL before anything is stored; its ``TargetRefused`` becomes an
    :class:`InvalidConnection` on ``base_url``. Raises ``UnknownTenant`` for no such tenant.
    """
    spec_for(connector)  # an unknown connector name is refused here
    with engine.connect() as conn:
        tenant_store.get_tenant(conn, tenant_id)
        base_currency = tenant_store.get_settings(conn, tenant_id).base_currency
    checked_options = validate_options(connector, options, default_currency=base_currency)
    url = base_url_for(connector, base_url, checked_options)
    secret = validate_credentials(connector, credentials) if credentials is not None else None
    if base_url and check_url is not None:
        try:
            check_url(url)
        except netguard.TargetRefused as exc:
            raise InvalidConnection({"base_url": [exc.reason]}) from None
    with engine.begin() as conn:
        if secret is None:
            stored = store.get_connection(conn, vault, tenant_id, connector, NAME)
            if stored is None:
                raise InvalidConnection({"credentials": [
                    f"required: the tenant has no {connector} credentials to keep"]})
            if stored.base_url != url:  # else a key could be sent where its owner never did
                raise InvalidConnection({"credentials": [
                    "required when the base URL changes: stored credentials go only to the "
                    "address they were set for"]})
            secret = dict(stored.credentials)
        store.save_connection(conn, vault, tenant_id, connector, url, secret, checked_options,
                              NAME, set_via=set_via)
    return get_summary(engine, vault, tenant_id, connector)


def list_summaries(engine: Engine, vault: Vault, tenant_id: str) -> list[ConnectionSummary]:
    """The tenant's connections (never a secret); ``UnknownTenant`` for no such tenant."""
    with engine.connect() as conn:
        tenant_store.get_tenant(conn, tenant_id)
        listed = store.list_connections(conn, vault, tenant_id)
    return [_summary(spec_for(c.connector), c.base_url, c.options, c.credentials, c.set_via,
                     c.created_at, c.updated_at)
            for c in listed if c.connector in CONNECTORS and c.name == NAME]


def get_summary(engine: Engine, vault: Vault, tenant_id: str,
                connector: str) -> ConnectionSummary:
    """The tenant's connection to ``connector``; :class:`UnknownConnection` when none."""
    spec_for(connector)
    for summary in list_summaries(engine, vault, tenant_id):
        if summary.connector == connector:
            return summary
    raise UnknownConnection(f"the tenant has no {connector} connection")


def delete_connection(engine: Engine, tenant_id: str, connector: str) -> None:
    """Delete the tenant's connection; :class:`UnknownConnection` when there is none."""
    spec_for(connector)
    with engine.begin() as conn:
        tenant_store.get_tenant(conn, tenant_id)
        if not store.delete_connection(conn, tenant_id, connector, NAME):
            raise UnknownConnection(f"the tenant has no {connector} connection")


def private_targets_allowed(runtime: Runtime, tenant_id: str) -> bool:
    """``GATEWAY_ALLOW_PRIVATE_TARGETS`` or the tenant's ``allow_private_targets``."""
    if runtime.settings.allow_private_targets:
        return True
    return bool(runtime.cached_settings(tenant_id).allow_private_targets)


def make_client_for(stored: store.StoredConnection, runtime: Runtime,
                    **client_kwargs: Any) -> Any:
    """A connector client for a stored connection (for the delivery engine and ``check``).

    ``client_kwargs`` go to the connector's ``make_client`` (``retry``, ``time_scale``,
    ``storage_uri``, ``timeout``, ...). A connection whose base URL was set over the API gets
    :class:`gateway.netguard.PinnedAdapter` on its session: every connection it opens is
    resolved, checked (private targets allowed per :func:`private_targets_allowed`, asked
    at each connect) and pinned; a refused one raises ``netguard.TargetRefused`` (a
    ``ValueError``, which ``connectors.http.decide`` counts as a failed connection) before
    anything is sent. Raises ``KeyError`` for an unknown connector and the connector's
    ``ConfigurationError`` (a ``ValueError``) for an unusable option. The caller closes it.
    """
    spec = registry.get(stored.connector)
    client = spec.make_client(ConnectionConfig(base_url=stored.base_url,
                                               credentials=stored.credentials,
                                               options=stored.options), **client_kwargs)
    if stored.set_via == "api":
        session = getattr(getattr(client, "http", None), "session", None)
        if session is None:
            client.close()
            raise netguard.TargetRefused(
                f"the {stored.connector} client has no session the address check can guard")
        tenant_id = stored.tenant_id
        netguard.guard(session, allow_private=lambda: private_targets_allowed(runtime,
                                                                             tenant_id))
    return client


def check_connection(runtime: Runtime, tenant_id: str, connector: str) -> CheckResult:
    """The connector's ``check()`` on the tenant's stored connection: ``ok`` when the
    credential works, else the reason (an unreadable credential, a refused address, an
    unreachable service included). Never raises for a failed check; the detail carries no
    secret. :class:`UnknownConnection` when there is no connection."""
    spec_for(connector)
    with runtime.engine.connect() as conn:
        tenant_store.get_tenant(conn, tenant_id)
        try:
            stored = store.get_connection(conn, runtime.vault, tenant_id, connector, NAME)
        except CredentialsError as exc:
            return CheckResult(False, str(exc))
    if stored is None:
        raise UnknownConnection(f"the tenant has no {connector} connection")
    try:
        client = make_client_for(stored, runtime, retry=CHECK_RETRY, timeout=CHECK_TIMEOUT)
    except (ValueError, TypeError) as exc:
        return CheckResult(False, _scrub(f"the connection is not usable: {exc}", stored))
    try:
        return client.check()
    except netguard.TargetRefused as exc:
        return CheckResult(False, f"the base URL was refused: {exc.reason}")
    except ConnectorError as exc:
        return CheckResult(False, _scrub(str(exc), stored))
    finally:
        client.close()


def _scrub(text: str, stored: store.StoredConnection) -> str:
    for value in stored.credentials.values():
        if isinstance(value, str) and value:
            text = text.replace(value, "***")
    return text


def reencrypt_all(engine: Engine, vault: Vault, *, page: int = 200) -> int:
    """Re-encrypt every stored credential, of every tenant, with the newest key of
    ``vault`` (``GATEWAY_SECRET_KEY``'s first); returns how many were rewritten. Each page is
    its own transaction, and a row changed meanwhile is left to its new writer. Rows that no
    configured key decrypts are left as they are and reported together, after the others
    are done: ``CredentialsError`` naming their ids (retire no key while there are some)."""
    done, unreadable, after = 0, [], ""
    while True:
        with engine.begin() as conn:
            tokens = store.credential_tokens(conn, after=after, limit=page)
            for connection_id, token in tokens:
                try:
                    fresh = vault.rotate(token)
                except CredentialsError:
                    unreadable.append(connection_id)
                    continue
                if store.replace_credentials(conn, connection_id, token, fresh):
                    done += 1
        if len(tokens) < page:
            break
        after = tokens[-1][0]
    if unreadable:
        raise CredentialsError(
            f"re-encrypted {done}; {len(unreadable)} cannot be decrypted with any key in "
            f"GATEWAY_SECRET_KEY (connections {', '.join(unreadable[:20])}"
            f"{' …' if len(unreadable) > 20 else ''}): keep the key they were encrypted with")
    return done
