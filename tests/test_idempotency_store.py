"""Idempotency keys in the database: replay, mismatch, in progress, take-over, expiry."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from gateway.store import db, idempotency
from gateway.store.idempotency import ClaimLost, Outcome

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
FP = idempotency.fingerprint("POST", "/api/v1/actions/record-order", b'{"id": "O-1"}')


def claim(engine, tenant_id, key="key-1", fingerprint=FP, now=NOW, **kw):
    with engine.begin() as conn:  # a claim commits on its own
        return idempotency.claim(conn, tenant_id, key, fingerprint, now=now, **kw)


def complete(engine, tenant_id, key="key-1", status=201, body='{"ok":true}', **kw):
    with engine.begin() as conn:
        idempotency.complete(conn, tenant_id, key, status, body, **kw)


def test_fingerprint_covers_method_path_and_body():
    base = idempotency.fingerprint("POST", "/a", b"{}")
    assert len(base) == 64 and base == idempotency.fingerprint("post", "/a", "{}")
    assert len({base, idempotency.fingerprint("PUT", "/a", b"{}"),
                idempotency.fingerprint("POST", "/b", b"{}"),
                idempotency.fingerprint("POST", "/a", b"{ }")}) == 4


def test_a_retry_gets_the_first_answer(engine, tenant):
    first = claim(engine, tenant.id)
    assert first.outcome is Outcome.NEW and first.token
    complete(engine, tenant.id, status=201, body='{"id":"O-1"}',
             headers={"Location": "/x/O-1"}, token=first.token)
    retry = claim(engine, tenant.id, now=NOW + timedelta(hours=23))
    assert retry.outcome is Outcome.REPLAY
    assert (retry.status_code, retry.body, dict(retry.headers)) == (
        201, '{"id":"O-1"}', {"Location": "/x/O-1"})


def test_the_same_key_with_another_request_is_a_mismatch(engine, tenant):
    claim(engine, tenant.id)
    other = idempotency.fingerprint("POST", "/api/v1/actions/record-order", b'{"id": "O-2"}')
    assert claim(engine, tenant.id, fingerprint=other).outcome is Outcome.MISMATCH
    complete(engine, tenant.id)
    assert claim(engine, tenant.id, fingerprint=other).outcome is Outcome.MISMATCH


def test_a_running_request_is_in_progress_until_its_lock_expires(engine, tenant):
    first = claim(engine, tenant.id, lock_seconds=60)
    busy = claim(engine, tenant.id, now=NOW + timedelta(seconds=30))
    assert busy.outcome is Outcome.IN_PROGRESS and busy.locked_until == first.locked_until
    later = claim(engine, tenant.id, now=NOW + timedelta(seconds=61))
    assert later.outcome is Outcome.NEW and later.taken_over and later.token != first.token
    # the first process wakes up: its answer must not be stored (its effect rolls back)
    with pytest.raises(ClaimLost):
        complete(engine, tenant.id, token=first.token)
    complete(engine, tenant.id, status=200, body="second", token=later.token)
    assert claim(engine, tenant.id).body == "second"


def test_a_failed_action_releases_its_key_for_a_retry(engine, tenant):
    first = claim(engine, tenant.id)
    try:  # the action's transaction: its effect and the answer would commit together
        with engine.begin() as conn:
            idempotency.complete(conn, tenant.id, "key-1", 201, "{}", token=first.token)
            raise RuntimeError("the action failed after completing")
    except RuntimeError:
        pass
    assert claim(engine, tenant.id).outcome is Outcome.IN_PROGRESS  # nothing was stored
    with engine.begin() as conn:
        assert idempotency.release(conn, tenant.id, "key-1", token="not-mine") is False
        assert idempotency.release(conn, tenant.id, "key-1", token=first.token) is True
    assert claim(engine, tenant.id).outcome is Outcome.NEW


def test_a_completed_key_is_never_released_or_completed_twice(engine, tenant):
    first = claim(engine, tenant.id)
    complete(engine, tenant.id, token=first.token)
    with engine.begin() as conn:
        assert idempotency.release(conn, tenant.id, "key-1") is False
    with pytest.raises(ClaimLost):
        complete(engine, tenant.id)
    assert claim(engine, tenant.id).outcome is Outcome.REPLAY


def test_keys_expire_after_24_hours(engine, tenant):
    first = claim(engine, tenant.id)
    complete(engine, tenant.id, body="old", token=first.token)
    other = idempotency.fingerprint("GET", "/other", b"")
    fresh = claim(engine, tenant.id, fingerprint=other, now=NOW + timedelta(hours=24))
    assert fresh.outcome is Outcome.NEW
    complete(engine, tenant.id, body="new", token=fresh.token)
    replay = claim(engine, tenant.id, fingerprint=other, now=NOW + timedelta(hours=25))
    assert replay.body == "new"
    with engine.begin() as conn:
        assert idempotency.prune(conn, NOW + timedelta(hours=48)) >= 1
    assert claim(engine, tenant.id, now=NOW + timedelta(hours=49)).outcome is Outcome.NEW


def test_keys_are_per_tenant(engine, make_tenant):
    a, b = make_tenant("A"), make_tenant("B")
    first = claim(engine, a.id)
    complete(engine, a.id, body="a's", token=first.token)
    other = idempotency.fingerprint("POST", "/else", b"")
    assert claim(engine, b.id, fingerprint=other).outcome is Outcome.NEW
    assert claim(engine, a.id).body == "a's"


def test_a_bad_key_is_refused(engine, tenant):
    for key in ("", "   ", "k" * 256):
        with pytest.raises(ValueError):
            claim(engine, tenant.id, key=key)


def test_concurrent_claims_give_one_new_and_the_rest_in_progress(engine, tenant):
    barrier = threading.Barrier(4)
    outcomes, errors = [], []

    def racer() -> None:
        try:
            barrier.wait(30)
            outcomes.append(claim(engine, tenant.id, key="race").outcome)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=racer, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(o.value for o in outcomes) == ["in_progress"] * 3 + ["new"]


def test_a_claim_holds_across_processes(engine, tenant, database_url):
    first = claim(engine, tenant.id, key="restart")
    other_process = db.make_engine(database_url)  # a second process's own engine
    try:
        assert claim(other_process, tenant.id, key="restart").outcome is Outcome.IN_PROGRESS
        complete(other_process, tenant.id, key="restart", body="done", token=first.token)
    finally:
        other_process.dispose()
    assert claim(engine, tenant.id, key="restart").body == "done"
