"""``Idempotency-Key`` on the actions (draft-ietf-httpapi-idempotency-key-header).

:func:`idempotent` wraps an action view. The view takes a keyword argument ``conn``: the
action's own transaction, opened here. Without the header the action simply runs in it. With
the header (a Structured Field string, ``"8e03978e-..."``, or the bare key as many clients send
it), the choreography of :mod:`gateway.store.idempotency` runs:

1. **claim** the key for this request's fingerprint (SHA-256 of method, path with its query
   string, and the raw body) and commit at once, so a concurrent request with the same key
   sees the claim;
2. a first request runs the action in its transaction, and **completes** the key there with
   the answer (status and body text): effect and stored answer commit together, or neither;
3. if the action raises (a 4xx abort, an error) the transaction rolls back and the key is
   **released**, so a retry runs it again: a request that failed had no effect, and a client
   that corrects its body may reuse the key.

Answers: a retry with the same key and request within 24 hours gets the first answer, status
and body as sent, with ``Idempotent-Replayed: true``; the same key with another request is a
422; a retry while the first is still running is a 409 with ``Retry-After``. Keys are per
tenant (the tenant of the API key in use). An answer the view *returns* (even a 4xx such as
"this customer was erased; nothing stored") is completed and replayed; only raised errors
release the key.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable, TypeVar

from flask import current_app, request
from flask_smorest import abort
from werkzeug import Response

from gateway.api.auth import tenant_id
from gateway.runtime import runtime
from gateway.store import idempotency as store
from gateway.store.types import utcnow

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

#: How long a running request holds its key: longer than any action may take (Zapier gives up
#: after 30 s), so only a request whose process died is ever taken over.
LOCK_SECONDS = 60

#: What the OpenAPI document says about the header, on every action.
HEADER_DOC = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes the action safe to retry (draft-ietf-httpapi-idempotency-key-header): a retry "
        "with the same key and body within 24 hours gets the first answer (status and body, "
        f"with `{REPLAYED_HEADER}: true`) and has no second effect; the same key with another "
        "body answers 422; while the first request runs, 409. Keys are per tenant; at most "
        f"{store.MAX_KEY_LENGTH} characters, sent bare or as a quoted string."),
    "schema": {"type": "string", "minLength": 1, "maxLength": store.MAX_KEY_LENGTH,
               "pattern": r"^[\x21-\x7e]+( +[\x21-\x7e]+)*$"},
    "example": "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
}


def parse_key(raw: str) -> str:
    """The key in an ``Idempotency-Key`` header value; ``ValueError`` when there is none.

    The draft makes the value a Structured Field string (``"abc"``, with ``\\"`` and ``\\\\``
    escapes); a bare value is taken as it is. Only printable ASCII is a key.
    """
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, i = value[1:-1], [], 0
        while i < len(inner):
            char = inner[i]
            if char == "\\":
                if i + 1 == len(inner) or inner[i + 1] not in '"\\':
                    raise ValueError("the Idempotency-Key header is not a valid quoted string")
                char, i = inner[i + 1], i + 1
            elif char == '"':
                raise ValueError("the Idempotency-Key header is not a valid quoted string")
            out.append(char)
            i += 1
        value = "".join(out)
    if any(not (0x20 <= ord(c) <= 0x7E) for c in value):
        raise ValueError("the Idempotency-Key header may hold only printable ASCII characters")
    return store.check_key(value)


def request_fingerprint() -> str:
    """The fingerprint of the current request: method, path with query string, raw body."""
    query = request.query_string.decode("latin-1")
    path = request.path + ("?" + query if query else "")
    return store.fingerprint(request.method, path, request.get_data(cache=True))


def _retry_after(claim: store.Claim) -> str:
    if claim.locked_until is None:
        return "1"
    return str(max(1, min(LOCK_SECONDS, math.ceil(
        (claim.locked_until - utcnow()).total_seconds()))))


def _replay(claim: store.Claim) -> Response:
    response = current_app.response_class(claim.body or "", status=claim.status_code or 200,
                                          mimetype="application/json")
    for name, value in (claim.headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


def idempotent(view: F) -> F:
    """Decorator for an action view that takes ``conn`` (see the module docstring). Apply it
    inside the authentication decorator: the key is the tenant's, so the tenant comes first."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        engine = runtime().engine
        raw = request.headers.get(HEADER)
        if raw is None:
            with engine.begin() as conn:
                return current_app.make_response(view(*args, conn=conn, **kwargs))
        try:
            key = parse_key(raw)
        except ValueError as exc:
            abort(400, message=str(exc), errors={HEADER: [str(exc)]})
        tenant = tenant_id()
        fingerprint = request_fingerprint()
        with engine.begin() as conn:
            claim = store.claim(conn, tenant, key, fingerprint, now=utcnow(),
                                lock_seconds=LOCK_SECONDS)
        if claim.outcome is store.Outcome.REPLAY:
            return _replay(claim)
        if claim.outcome is store.Outcome.MISMATCH:
            abort(422, message="this Idempotency-Key was already used for a different request "
                               "(another path or body); use a new key for a new request")
        if claim.outcome is store.Outcome.IN_PROGRESS:
            abort(409, message="a request with this Idempotency-Key is still being processed; "
                               "retry later", headers={"Retry-After": _retry_after(claim)})
        try:
            with engine.begin() as conn:
                response = current_app.make_response(view(*args, conn=conn, **kwargs))
                store.complete(conn, tenant, key, response.status_code,
                               response.get_data(as_text=True), token=claim.token)
        except store.ClaimLost:
            # This request outran its lock and another took the key over: our effect rolled
            # back, and the other request's answer is the one a retry will get.
            abort(409, message="a request with this Idempotency-Key is still being processed; "
                               "retry later", headers={"Retry-After": "1"})
        except BaseException:
            _release(tenant, key, claim.token)
            raise
        return response

    return wrapper  # type: ignore[return-value]


def _release(tenant: str, key: str, token: str | None) -> None:
    try:
        with runtime().engine.begin() as conn:
            store.release(conn, tenant, key, token=token)
    except Exception:  # the original error is what the client must hear about
        log.exception("could not release idempotency key of tenant %s", tenant)
