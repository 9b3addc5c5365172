"""The per-process cache of verified keys: no database work on a hit, a revocation elsewhere
honoured within KEY_CACHE_SECONDS, one in this process at once, new keys never refused, and
``last_used_at`` still recorded (at most once a minute)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from gateway import create_app
from gateway.runtime import KEY_CACHE_SECONDS, KeyCache, Runtime, VerifiedKey
from gateway.store import keys, tenants
from gateway.store.tables import api_keys
from gateway.store.types import utcnow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Isolated:
    """An app on its own Runtime with a key cache on a fake clock, and a count of the SQL
    statements its engine runs."""

    def __init__(self, settings) -> None:
        self.runtime = Runtime.open(settings)
        self.clock = FakeClock()
        cache = KeyCache(clock=self.clock)
        keys.on_revoke(cache)
        self.runtime.key_cache = cache
        self.app = create_app(runtime=self.runtime)
        self.app.config["TESTING"] = True
        self.statements: list[str] = []
        event.listen(self.runtime.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, *args) -> None:  # noqa: ANN001
        self.statements.append(statement)

    def me(self, key: str):
        return self.app.test_client().get("/api/v1/me",
                                          headers={"Authorization": f"Bearer {key}"})


@pytest.fixture()
def isolated(runtime, settings):
    handle = Isolated(settings)
    yield handle
    handle.runtime.close()


def _revoke_as_another_process_would(engine, key_id: str) -> None:
    """The same UPDATE as ``keys revoke``, without telling this process's caches."""
    with engine.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow()))


def test_a_cached_key_costs_no_database_statement(isolated, tenant):
    assert isolated.me(tenant.key).status_code == 200
    isolated.statements.clear()
    for _ in range(5):
        response = isolated.me(tenant.key)
        assert response.status_code == 200
        assert response.json["tenant_name"] == tenant.name  # the tenant is cached with the key
    assert isolated.statements == []
    isolated.clock.advance(KEY_CACHE_SECONDS + 0.01)
    assert isolated.me(tenant.key).status_code == 200
    assert isolated.statements, "an expired entry is read again"


def test_a_revocation_by_another_process_is_honoured_within_the_ttl(isolated, engine, tenant):
    assert isolated.me(tenant.key).status_code == 200
    _revoke_as_another_process_would(engine, tenant.key_id)
    isolated.clock.advance(KEY_CACHE_SECONDS - 0.5)
    assert isolated.me(tenant.key).status_code == 200  # still trusted: that is the cache
    isolated.clock.advance(0.51)
    assert isolated.me(tenant.key).status_code == 401


def test_a_revocation_in_this_process_is_honoured_at_once(isolated, engine, tenant):
    assert isolated.me(tenant.key).status_code == 200
    with engine.begin() as conn:
        assert keys.revoke_key(conn, tenant.key_id)
    assert isolated.me(tenant.key).status_code == 401


def test_a_read_that_raced_a_revocation_is_not_cached():
    clock = FakeClock()
    cache = KeyCache(clock=clock)
    info = keys.KeyInfo(id="key_1", tenant_id="ten_1", prefix="00000000", scope="admin",
                        created_at=utcnow(), last_used_at=None, revoked_at=None)
    value = VerifiedKey(info, tenants.Tenant(id="ten_1", name="Shop"))
    read_started = clock()
    clock.advance(0.1)
    cache.forget_key("key_1")  # revoked while the read was in flight
    cache.put("digest", value, read_started)
    assert cache.get("digest") == (False, None)
    clock.advance(KEY_CACHE_SECONDS)
    cache.put("digest", value, clock())  # a read that began after the revocation's window
    assert cache.get("digest") == (True, value)


def test_refusals_are_remembered_briefly_and_never_block_a_new_key(isolated, engine, tenant):
    dead = "gk_live_00000000_" + "z" * 32
    assert isolated.me(dead).status_code == 401
    isolated.statements.clear()
    assert isolated.me(dead).status_code == 401
    assert isolated.statements == []  # the refusal was remembered
    with engine.begin() as conn:
        new = keys.create_key(conn, tenant.id, "zapier").api_key
    response = isolated.me(new)
    assert response.status_code == 200 and response.json["scope"] == "zapier"


def test_both_tables_are_bounded():
    cache = KeyCache(max_keys=3, max_refused=2)
    for i in range(10):
        cache.put(f"refused{i}", None, cache.clock())
    assert [cache.get(f"refused{i}")[0] for i in range(10)] == [False] * 8 + [True] * 2


def _last_used(engine, key_id: str):
    with engine.connect() as conn:
        return conn.execute(select(api_keys.c.last_used_at)
                            .where(api_keys.c.id == key_id)).scalar_one()


def test_last_used_at_is_recorded_at_most_once_a_minute(isolated, engine, tenant):
    assert _last_used(engine, tenant.key_id) is None
    assert isolated.me(tenant.key).status_code == 200
    first = _last_used(engine, tenant.key_id)
    assert first is not None
    isolated.clock.advance(KEY_CACHE_SECONDS + 0.01)  # a fresh read, within the minute
    isolated.statements.clear()
    assert isolated.me(tenant.key).status_code == 200
    assert not [s for s in isolated.statements if s.lstrip().upper().startswith("UPDATE")]
    assert _last_used(engine, tenant.key_id) == first

    long_ago = utcnow() - timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == tenant.key_id)
                     .values(last_used_at=long_ago))
    isolated.clock.advance(KEY_CACHE_SECONDS + 0.01)
    assert isolated.me(tenant.key).status_code == 200
    assert _last_used(engine, tenant.key_id) > long_ago + timedelta(minutes=4)


def test_touch_writes_only_a_stale_row(engine, tenant):
    with engine.begin() as conn:
        assert keys.touch(conn, tenant.key_id) is True
        assert keys.touch(conn, tenant.key_id) is False
        later = utcnow() + keys.LAST_USED_GRANULARITY + timedelta(seconds=1)
        assert keys.touch(conn, tenant.key_id, now=later) is True
