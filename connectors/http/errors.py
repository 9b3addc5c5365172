"""The typed errors of the HTTP core and the error table (:func:`decide`).

Every failure of a call to a service is a :class:`ConnectorError` that carries what the service
answered (status, message, parsed body) and never the credential. Retriable and fatal failures
are different types, and the fatal ones split by whom they are about:

* :class:`RetriableError`: the service or the network failed this time (429, 5xx, 408,
  timeouts, resets, a send that ran out of its deadline).
* :class:`RecordRejected`: the service's own answer about the record that was sent (400/422
  field errors, a 404 for it, 409, 410). Only these dead-letter a record.
* :class:`ConnectionProblem`: the connection or its configuration is broken (a refused
  credential, a wrong base URL, site or tenant, a redirect, a foreign origin, a bad setting).
  Nothing will get through until someone fixes it, so the connection fails and the records stay
  queued.
* any other :class:`FatalError`: the service answered in a way the client cannot use (an
  unexpected status or document, a pagination loop): treated like a connection problem.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from .retry import parse_retry_after

# --------------------------------------------------------------------------------- the types


class ConnectorError(Exception):
    """A failed call to a service. Carries what the service answered, never the credential.

    ``str()`` is safe to log: ``"<service>: <status> <message>"``.
    """

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None) -> None:
        self.service = service
        self.status = status
        self.message = message
        self.body = body
        super().__init__(self._summary())

    def _summary(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.service}:{status} {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._summary()!r})"


class RetriableError(ConnectorError):
    """Worth trying again; ``retry_after`` is the service's wish in seconds, if it said."""

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(service, message, status=status, body=body)


class RateLimited(RetriableError):
    """429 Too Many Requests."""


class ServerError(RetriableError):
    """5xx: the service failed this time."""


class TransportError(RetriableError):
    """No answer: timeout, connection refused or reset (also 408)."""


class DeadlineExceeded(RetriableError):
    """The caller's deadline came before the send could finish (or start): nothing is wrong
    with the record or the connection, so it stays queued.

    ``status`` and ``body`` are those of the last failed attempt, if there was one (its error is
    also the ``__cause__``); ``retry_after`` is how many seconds from now the client would have
    tried again (the service's ``Retry-After`` or a rate-limit wait), if it knew.
    """


class FatalError(ConnectorError):
    """Trying again will not help."""


class RecordRejected(FatalError):
    """The service's own answer about the record (or records) sent: this record will never pass
    as it is. 409 and 410 are this type itself; 400/422 and 404 have their own subclasses."""


class NotFound(RecordRejected):
    """404: the service does not know the record addressed."""


class ValidationError(RecordRejected):
    """400/422 with the service's field errors.

    ``field_errors`` keeps the service's own keys (``"[0].Email"``); ``by_record`` regroups
    those that name a record index: ``{0: {"Email": [...]}}`` (``"[1]"`` alone gives ``""``).
    """

    def __init__(self, service: str, message: str, *, status: int | None = None,
                 body: Any | None = None,
                 field_errors: dict[str, list[str]] | None = None) -> None:
        self.field_errors = field_errors or {}
        self.by_record = group_by_record(self.field_errors)
        super().__init__(service, message, status=status, body=body)


class ConnectionProblem(FatalError):
    """The connection or its configuration is broken, not the record: fail the connection
    (report it once) and leave its records queued."""


class AuthError(ConnectionProblem):
    """401/403: the credential (or the plan) does not let us in."""


class ConfigurationError(ConnectionProblem, ValueError):
    """A connection setting the client cannot work with (a missing credential, a malformed
    option). Also a ``ValueError``, which is what a bad argument has always raised. The message
    names the setting, never a secret's value."""


class ForeignOrigin(ConnectionProblem):
    """A URL (a service's next link, a caller's argument) on another origin than the
    connection's: the credential is not sent there, so nothing was sent at all."""


class Redirected(ConnectionProblem):
    """A 3xx answer. The core follows no redirect (one could carry the credential to another
    origin); a service that redirects usually means a base URL to correct."""


class AddressNotFound(NotFound, ConnectionProblem):
    """A 404 for the connection's own address (its base URL, site or tenant), not for a record:
    a client that can tell the two apart raises this. Still a :class:`NotFound`, but the table
    fails the connection rather than dead-letter every record sent to a wrong address."""

    @classmethod
    def from_error(cls, error: NotFound, message: str | None = None) -> "AddressNotFound":
        return cls(error.service, message or error.message, status=error.status,
                   body=error.body)


class PaginationLoop(FatalError):
    """A listing pointed back at a page it had already served."""


_RECORD_KEY = re.compile(r"^\[?(\d+)\]?(?:[.:/](.*))?$")


def group_by_record(field_errors: dict[str, list[str]]) -> dict[int, dict[str, list[str]]]:
    """``{"[0].Email": [m]}`` -> ``{0: {"Email": [m]}}``; keys without an index are left out."""
    grouped: dict[int, dict[str, list[str]]] = {}
    for key, messages in field_errors.items():
        match = _RECORD_KEY.match(key.strip())
        if match:
            index, name = int(match.group(1)), match.group(2) or ""
            grouped.setdefault(index, {}).setdefault(name, []).extend(messages)
    return grouped


# --------------------------------------------------------------------------------- the table


class Decision(enum.Enum):
    """What becomes of a record whose send failed."""

    RETRY = "retry"  # try again later: the service or the network failed this time
    FAIL = "fail"  # the connection is broken: fail it, report once, keep its records queued
    DEAD_LETTER = "dead_letter"  # the service refused this record: park it for a human


def decide(error: BaseException) -> Decision:
    """The error table: retry, fail the connection, or dead-letter the record.

    ==========================================================  ==============================
    what went wrong                                             decision
    ==========================================================  ==============================
    429, 5xx, 408, timeouts, refused or reset connections,      RETRY
    a caller's deadline reached (:class:`RetriableError`, and
    a raw ``requests.Timeout`` / ``requests.ConnectionError``)
    the service's answer about the record: 400/422 field        DEAD_LETTER
    errors, 404 for the record, 409, 410
    (:class:`RecordRejected`, but not :class:`AddressNotFound`)
    the connection: 401/403, a 404 for the connection's own     FAIL
    address, a redirect, a foreign origin, a bad connection
    setting (:class:`ConnectionProblem`)
    an answer the client cannot use: another status, an         FAIL
    unexpected document, a pagination loop (other
    :class:`FatalError`)
    anything else: ``ValueError`` (so the gateway's             FAIL
    CredentialsError, SettingsError, MoneyError), TypeError,
    KeyError, a bug
    ==========================================================  ==============================

    Only the first two rows are about a record. Everything else is about the connection or
    the gateway and would fail every record alike, so it fails the connection instead, and the
    records stay queued until it is fixed. A record the gateway itself cannot map is refused
    per record inside the connector's ``send`` (``WriteResult.rejected``), not here.
    """
    if isinstance(error, RetriableError):
        return Decision.RETRY
    if isinstance(error, (requests.Timeout, requests.ConnectionError)):
        return Decision.RETRY
    if isinstance(error, ConnectionProblem):
        return Decision.FAIL
    if isinstance(error, RecordRejected):
        return Decision.DEAD_LETTER
    return Decision.FAIL


# ---------------------------------------------------------------- an answer -> its error type


def _body_of(response: requests.Response) -> Any | None:
    try:
        return response.json()
    except ValueError:
        text = response.text.strip()
        return text[:500] if text else None


def _message_of(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            value = first.get("detail") or first.get("title")
            if isinstance(value, str):
                return value[:300]
    if isinstance(body, str) and body:
        return body[:300]
    return fallback


def _field_errors_of(body: Any) -> dict[str, list[str]]:
    """Field errors from ``{"errors": {key: msgs}}`` or JSON:API ``{"errors": [...]}``."""
    if not isinstance(body, dict):
        return {}
    errors = body.get("errors")
    result: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, messages in errors.items():
            if isinstance(messages, (list, tuple)):
                result[str(key)] = [str(m) for m in messages]
            else:
                result[str(key)] = [str(messages)]
    elif isinstance(errors, list):
        for item in errors:
            if not isinstance(item, dict):
                continue
            source = item.get("source") or {}
            pointer = source.get("pointer") or source.get("parameter") or ""
            key = _pointer_key(pointer) if pointer else ""
            result.setdefault(key, []).append(str(item.get("detail") or item.get("title") or ""))
    return result


def _pointer_key(pointer: str) -> str:
    """JSON:API ``/data/0/attributes/email`` -> ``[0].email``; other pointers stay as they are."""
    match = re.match(r"^/data/(\d+)/(?:attributes/)?(.*)$", pointer)
    if match:
        return f"[{match.group(1)}].{match.group(2)}" if match.group(2) else f"[{match.group(1)}]"
    return pointer


def _redirect_target(response: requests.Response) -> str:
    """Where a 3xx points, without its query (which may hold anything): for the message."""
    location = response.headers.get("Location")
    if not location:
        return "nowhere (no Location)"
    parts = urlsplit(location)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
    return parts.path or location[:100]


def error_for_response(service: str, response: requests.Response, *,
                       now: datetime | None = None) -> ConnectorError:
    """The typed error for an unwanted answer (the table's input)."""
    status = response.status_code
    body = _body_of(response)
    if 300 <= status < 400:
        return Redirected(service, f"answered a redirect to {_redirect_target(response)}; "
                          "redirects are not followed: check the connection's base URL",
                          status=status, body=body)
    message = _message_of(body, response.reason or f"HTTP {status}")
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status == 429:
        return RateLimited(service, message, status=status, body=body, retry_after=retry_after)
    if status >= 500:
        return ServerError(service, message, status=status, body=body, retry_after=retry_after)
    if status == 408:
        return TransportError(service, message, status=status, body=body,
                              retry_after=retry_after)
    if status in (401, 403):
        return AuthError(service, message, status=status, body=body)
    if status == 404:
        return NotFound(service, message, status=status, body=body)
    if status in (400, 422):
        return ValidationError(service, message, status=status, body=body,
                               field_errors=_field_errors_of(body))
    if status in (409, 410):
        return RecordRejected(service, message, status=status, body=body)
    return FatalError(service, message, status=status, body=body)


def scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings replaced by ``***``."""
    if not secret:
        return value
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secret) for v in value]
    return value


def scrub_error(error: ConnectorError, secret: str) -> ConnectorError:
    """``error`` with the secret scrubbed from its message, body and args (in place)."""
    error.message = scrub(error.message, secret)
    error.body = scrub(error.body, secret)
    error.args = (error._summary(),)
    return error
