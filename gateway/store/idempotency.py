"""Idempotency keys for the actions (the IETF ``Idempotency-Key`` draft's semantics), kept in
the database so they hold across processes and restarts. Keys are per tenant.

A retry with the same key and the same request (its :func:`fingerprint`) within
:data:`RETENTION` gets the first answer, status and body, and causes no second effect; the same
key with another request is a mismatch (422); while the first request still runs, 409.

The transaction choreography (what the API does around an action)::

    with engine.begin() as conn:                        # 1. claim, and commit at once, so a
        claim = idempotency.claim(conn, tenant, key,    #    concurrent request sees the row
                                  fp, now=now)          #    and gets IN_PROGRESS (409)
    if claim.outcome is not Outcome.NEW:
        answer from the claim (REPLAY: claim.status_code / claim.body; MISMATCH: 422;
        IN_PROGRESS: 409)
    try:
        with engine.begin() as conn:                    # 2. the action's own transaction:
            status, body = run the action (ingest...)   #    its effect and the stored answer
            idempotency.complete(conn, tenant, key,     #    commit together, or not at all
                                 status, body, token=claim.token)
    except Exception:
        with engine.begin() as conn:                    # 3. the effect rolled back: free the
            idempotency.release(conn, tenant, key,      #    key so a retry can run it again
                                token=claim.token)
        raise

A process that dies between 1 and 2 leaves the row ``running``; once its lock
(``locked_until``) has passed, the next retry takes it over (a NEW claim with a fresh token).
Fencing: :func:`complete` with the claim's ``token`` raises :class:`ClaimLost` when the row was
taken over meanwhile, so the slow first attempt's transaction rolls back and the effect happens
once. A row older than :data:`RETENTION` counts as absent (the key may be reused);
:func:`prune` deletes such rows for the retention job.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import Connection, delete, select, update

from gateway.model import utc
from gateway.store.tables import idempotency_keys
from gateway.store.types import utcnow
from gateway.store.upsert import insert_for

#: How long a key's first answer is kept and replayed.
RETENTION = timedelta(hours=24)

#: How long a running request holds its key before another process may take it over.
DEFAULT_LOCK_SECONDS = 60

#: The longest key accepted (the draft sets no bound; a header this long is not a key).
MAX_KEY_LENGTH = 255


class Outcome(enum.Enum):
    NEW = "new"  # the row is ours (inserted, expired and replaced, or taken over): proceed
    REPLAY = "replay"  # the first request completed: answer its status and body
    MISMATCH = "mismatch"  # the key was used for another request: 422
    IN_PROGRESS = "in_progress"  # the first request is still running: 409


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of :func:`claim`. ``status_code``, ``body`` (the stored text) and
    ``headers`` are set for REPLAY; ``token`` for NEW (pass it to :func:`complete` and
    :func:`release`); ``locked_until`` for NEW and IN_PROGRESS (a ``Retry-After`` hint)."""

    outcome: Outcome
    token: str | None = None
    status_code: int | None = None
    body: str | None = None
    headers: Mapping[str, str] | None = None
    locked_until: datetime | None = None
    taken_over: bool = False  # NEW because a crashed request's expired lock was taken over


class ClaimLost(RuntimeError):
    """:func:`complete` found the key no longer held by this claim (taken over after its lock
    expired, released, or pruned): the caller must roll its transaction back."""


def fingerprint(method: str, path: str, body: bytes | str) -> str:
    """SHA-256 (hex) of the request: method, path (with its query string) and body bytes."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    digest = hashlib.sha256()
    digest.update(method.upper().encode("ascii"))
    digest.update(b"\n")
    digest.update(path.encode("utf-8"))
    digest.update(b"\n")
    digest.update(raw)
    return digest.hexdigest()


def check_key(key: str) -> str:
    """The key as given, or ``ValueError`` when it is empty or longer than MAX_KEY_LENGTH."""
    if not isinstance(key, str) or not key.strip():
        raise ValueError("the Idempotency-Key header must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"the Idempotency-Key header may hold at most {MAX_KEY_LENGTH} "
                         "characters")
    return key


def _where(tenant_id: str, key: str) -> list:
    return [idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key]


def claim(conn: Connection, tenant_id: str, key: str, fingerprint: str, *,
          now: datetime | None = None, lock_seconds: int = DEFAULT_LOCK_SECONDS) -> Claim:
    """Claim ``key`` for a request with ``fingerprint``; commit right after (see the module
    docstring). Outcomes: NEW (the row is now ``running`` and ours), REPLAY, MISMATCH,
    IN_PROGRESS. A row past :data:`RETENTION` is replaced as if absent; a ``running`` row whose
    lock has expired (its process died) is taken over. Raises ``ValueError`` for a bad key."""
    check_key(key)
    now = utc(now) or utcnow()
    locked_until = now + timedelta(seconds=lock_seconds)
    token = secrets.token_hex(16)
    inserted = conn.execute(
        insert_for(conn, idempotency_keys).values(
            tenant_id=tenant_id, key=key, fingerprint=fingerprint, state="running",
            token=token, created_at=now, locked_until=locked_until)
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
        .returning(idempotency_keys.c.key)  # psycopg reports no rowcount for an INSERT
    ).first() is not None
    if inserted:
        return Claim(Outcome.NEW, token=token, locked_until=locked_until)
    row = conn.execute(select(idempotency_keys).where(*_where(tenant_id, key))
                       .with_for_update()).first()
    if row is None:  # pruned between the insert and the read: claim again
        return claim(conn, tenant_id, key, fingerprint, now=now, lock_seconds=lock_seconds)
    if row.created_at <= now - RETENTION:
        _take(conn, tenant_id, key, row, fingerprint=fingerprint, token=token, now=now,
              locked_until=locked_until, fresh=True)
        return Claim(Outcome.NEW, token=token, locked_until=locked_until)
    if row.fingerprint != fingerprint:
        return Claim(Outcome.MISMATCH)
    if row.state == "done":
        return Claim(Outcome.REPLAY, status_code=row.status_code, body=row.response_body,
                     headers=dict(row.response_headers or {}))
    if row.locked_until > now:
        return Claim(Outcome.IN_PROGRESS, locked_until=row.locked_until)
    if not _take(conn, tenant_id, key, row, fingerprint=fingerprint, token=token, now=now,
                 locked_until=locked_until, fresh=False):
        return Claim(Outcome.IN_PROGRESS, locked_until=locked_until)
    return Claim(Outcome.NEW, token=token, locked_until=locked_until, taken_over=True)


def _take(conn: Connection, tenant_id: str, key: str, row: Any, *, fingerprint: str,
          token: str, now: datetime, locked_until: datetime, fresh: bool) -> bool:
    """Make the row ours, only if it is still as read (its token unchanged)."""
    values: dict[str, Any] = {"token": token, "locked_until": locked_until, "state": "running"}
    if fresh:  # an expired key starts over: a new request, a new 24 hours
        values.update(fingerprint=fingerprint, created_at=now, status_code=None,
                      response_body=None, response_headers=None, completed_at=None)
    taken = conn.execute(update(idempotency_keys).where(
        *_where(tenant_id, key), idempotency_keys.c.token == row.token).values(values)).rowcount
    return taken == 1


def complete(conn: Connection, tenant_id: str, key: str, status: int, body: str | bytes,
             *, headers: Mapping[str, str] | None = None, token: str | None = None,
             now: datetime | None = None) -> None:
    """Store the answer (``status`` and ``body``, the response's text; ``headers`` worth
    replaying, e.g. ``Location``) and mark the key done. Run it in the action's own transaction,
    so the effect and its answer commit together. With ``token`` (the claim's), raises
    :class:`ClaimLost` when the key is no longer this claim's; without it, when the key is not
    running at all."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    conditions = [*_where(tenant_id, key), idempotency_keys.c.state == "running"]
    if token is not None:
        conditions.append(idempotency_keys.c.token == token)
    done = conn.execute(update(idempotency_keys).where(*conditions).values(
        state="done", status_code=int(status), response_body=text,
        response_headers=dict(headers) if headers else None,
        completed_at=utc(now) or utcnow())).rowcount
    if done != 1:
        raise ClaimLost(f"idempotency key {key!r} is no longer held by this request")


def release(conn: Connection, tenant_id: str, key: str, *, token: str | None = None) -> bool:
    """Forget a running claim (the action failed and rolled back), so a retry runs it again.
    With ``token`` only this claim's row goes. A completed key is never released. Returns
    whether a row was deleted."""
    conditions = [*_where(tenant_id, key), idempotency_keys.c.state == "running"]
    if token is not None:
        conditions.append(idempotency_keys.c.token == token)
    return conn.execute(delete(idempotency_keys).where(*conditions)).rowcount == 1


def prune(conn: Connection, older_than: datetime) -> int:
    """Delete keys created before ``older_than`` (every tenant's: the retention job's sweep;
    it returns only a count). Returns how many went."""
    return conn.execute(delete(idempotency_keys).where(
        idempotency_keys.c.created_at < utc(older_than))).rowcount
