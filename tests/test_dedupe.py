"""The dedupe table: seen keys stay seen while they are listed, bounds never wipe a scope, and
two pollers at once never both emit a key."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select, text, update

from gateway.store import dedupe
from gateway.store.tables import dedupe_keys
from gateway.store.types import utcnow


def _age(conn, tenant_id: str, scope: str, days: float) -> None:
    """Pretend every key of the scope was last seen ``days`` ago."""
    conn.execute(update(dedupe_keys).where(dedupe_keys.c.tenant_id == tenant_id,
                                           dedupe_keys.c.scope == scope)
                 .values(seen_at=utcnow() - timedelta(days=days)))


def _keys(conn, tenant_id: str, scope: str) -> set[str]:
    return set(conn.execute(select(dedupe_keys.c.key).where(
        dedupe_keys.c.tenant_id == tenant_id, dedupe_keys.c.scope == scope,
        dedupe_keys.c.key != "")).scalars())


def test_a_key_still_listed_is_refreshed_and_never_fires_again(engine, tenant):
    scope = "rekindle:customer-status"
    with engine.begin() as conn:
        assert dedupe.unseen(conn, tenant.id, scope, ["a", "b"]) == []
        _age(conn, tenant.id, scope, days=31)
        # "a" is still listed, "b" is not; "c" is new and makes the scope prune.
        assert dedupe.unseen(conn, tenant.id, scope, ["a", "c"]) == ["c"]
        assert _keys(conn, tenant.id, scope) == {"a", "c"}
        assert dedupe.unseen(conn, tenant.id, scope, ["a"]) == []
        seen_at = conn.execute(select(dedupe_keys.c.seen_at).where(
            dedupe_keys.c.tenant_id == tenant.id, dedupe_keys.c.scope == scope,
            dedupe_keys.c.key == "a")).scalar_one()
    assert utcnow() - seen_at < timedelta(minutes=5)


def test_a_poll_larger_than_the_bound_keeps_the_scope(engine, tenant, monkeypatch):
    monkeypatch.setattr(dedupe, "MAX_KEYS_PER_SCOPE", 3)
    scope = "rekindle:customer-returned"
    with engine.begin() as conn:
        assert dedupe.unseen(conn, tenant.id, scope, [f"old{i}" for i in range(5)]) == []
    with engine.begin() as conn:
        fresh = [f"new{i}" for i in range(5)]
        assert dedupe.unseen(conn, tenant.id, scope, fresh) == fresh
        # The poll's own keys all stay, even past the bound; only older ones went.
        assert set(fresh) <= _keys(conn, tenant.id, scope)
    with engine.begin() as conn:
        # Not re-seeded: the next poll still emits its one new key and nothing else.
        assert dedupe.unseen(conn, tenant.id, scope, [*fresh, "x"]) == ["x"]
        assert dedupe.unseen(conn, tenant.id, scope, ["y"]) == ["y"]


def test_bound_drops_the_oldest_first(engine, tenant, monkeypatch):
    monkeypatch.setattr(dedupe, "MAX_KEYS_PER_SCOPE", 2)
    scope = "test:bound-order"
    with engine.begin() as conn:
        dedupe.unseen(conn, tenant.id, scope, ["k1", "k2"])
        for key, days in (("k1", 3), ("k2", 2)):
            conn.execute(update(dedupe_keys).where(dedupe_keys.c.tenant_id == tenant.id,
                                                   dedupe_keys.c.scope == scope,
                                                   dedupe_keys.c.key == key)
                         .values(seen_at=utcnow() - timedelta(days=days)))
        assert dedupe.unseen(conn, tenant.id, scope, ["k3"]) == ["k3"]
        assert _keys(conn, tenant.id, scope) == {"k2", "k3"}


def test_an_empty_first_poll_seeds(engine, tenant):
    scope = "test:empty-first"
    with engine.begin() as conn:
        assert dedupe.unseen(conn, tenant.id, scope, []) == []
        assert dedupe.unseen(conn, tenant.id, scope, ["a"]) == ["a"]


def _waiting_on_a_lock(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity "
                                 "WHERE pid = :pid"), {"pid": pid}).scalar() is True


def test_two_pollers_at_once_emit_a_key_once(engine, tenant):
    """The second poller's insert waits for the first transaction; whatever the interleaving,
    exactly one of them emits the key."""
    scope = "test:concurrent"
    with engine.begin() as conn:
        dedupe.unseen(conn, tenant.id, scope, ["seed"])
    results: dict[str, list[str]] = {}
    second_pid: list[int] = []
    postgres = engine.dialect.name == "postgresql"

    def second_poller() -> None:
        with engine.begin() as conn:
            if postgres:
                second_pid.append(conn.execute(text("SELECT pg_backend_pid()")).scalar())
            results["second"] = dedupe.unseen(conn, tenant.id, scope, ["x", "seed"])

    with engine.begin() as conn:
        results["first"] = dedupe.unseen(conn, tenant.id, scope, ["x"])
        other = threading.Thread(target=second_poller)
        other.start()
        # Let the second poller reach its insert (on PostgreSQL: until it waits on our row).
        deadline = time.monotonic() + (10 if postgres else 0.5)
        while other.is_alive() and time.monotonic() < deadline:
            if postgres and second_pid and _waiting_on_a_lock(engine, second_pid[0]):
                break
            other.join(0.05)
    other.join(30)
    assert not other.is_alive()
    emitted = results["first"] + results["second"]
    assert emitted.count("x") == 1, results
    assert "seed" not in emitted
