"""Concurrent settings changes never lose a confirmed change (SQLite and PostgreSQL).

Eight clients patch different keys of one tenant at the same time; each confirmed (200) change
must survive every other client's later change, so the final settings hold each client's last
value. On the old read-then-write merge, a client that read the settings before another's commit
wrote its merge over that commit.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from gateway.store import keys
from gateway.store import tenants as tenant_store
from tests.conftest import ROOT, postgres_base_url

ROUNDS = 50
CURRENCIES = ("AED", "AUD", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "CZK", "DKK", "EGP", "EUR",
              "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JOD", "JPY", "KRW", "KWD", "MAD",
              "MXN", "MYR", "NOK", "NZD", "OMR", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD",
              "SAR", "SEK", "SGD", "THB", "TND", "TRY", "TWD", "UAH", "UYU", "VND", "ZAR", "KES",
              "NGN", "COP")


class Owner:
    """What one thread owns: a top-level key, or one route of ``pull_interval_minutes`` (which
    is merged per route), and the distinct value it sets in round ``i``."""

    def __init__(self, key: str, value: Callable[[int], Any], route: str | None = None) -> None:
        self.key, self.value, self.route = key, value, route

    def change(self, i: int) -> dict[str, Any]:
        return {self.key: {self.route: self.value(i)} if self.route else self.value(i)}

    def read(self, settings: dict[str, Any]) -> Any:
        return settings[self.key][self.route] if self.route else settings[self.key]


#: One key per thread, each with 50 distinct values. The rate limit stays far above what the
#: run sends (one API key per thread, 50 requests each); lost_after stays above lapsed_after.
OWNERS = {
    "default_gap_days": Owner("default_gap_days", lambda i: 100 + i),
    "attribution_window_days": Owner("attribution_window_days", lambda i: 200 + i),
    "api_rate_limit_per_minute": Owner("api_rate_limit_per_minute", lambda i: 10_000 + i),
    "base_currency": Owner("base_currency", lambda i: CURRENCIES[i]),
    "lost_after": Owner("lost_after", lambda i: 10.0 + i),
    "rci-customers": Owner("pull_interval_minutes", lambda i: 100 + i, "rci-customers"),
    "rekindle-poll": Owner("pull_interval_minutes", lambda i: 300 + i, "rekindle-poll"),
    "rescore": Owner("pull_interval_minutes", lambda i: 500 + i, "rescore"),
}
assert len(CURRENCIES) == len(set(CURRENCIES)) == ROUNDS


def test_eight_clients_patching_different_keys_lose_no_confirmed_change(app, engine, tenant):
    with engine.begin() as conn:
        auth = {name: {"Authorization": "Bearer " + keys.create_key(conn, tenant.id,
                                                                    "admin").api_key}
                for name in OWNERS}
    start = threading.Barrier(len(OWNERS))

    def patch_repeatedly(name: str) -> tuple[set[int], int | None]:
        owner, client = OWNERS[name], app.test_client()
        statuses, last_confirmed = set(), None
        start.wait()
        for i in range(ROUNDS):
            response = client.patch("/api/v1/settings", json=owner.change(i), headers=auth[name])
            statuses.add(response.status_code)
            if response.status_code == 200:
                last_confirmed = i
        return statuses, last_confirmed

    with ThreadPoolExecutor(len(OWNERS)) as pool:
        results = dict(zip(OWNERS, pool.map(patch_repeatedly, OWNERS)))

    assert {name: statuses for name, (statuses, _) in results.items()} == {
        name: {200} for name in OWNERS}
    with engine.connect() as conn:
        final = tenant_store.get_settings(conn, tenant.id).as_dict()
    assert {name: owner.read(final) for name, owner in OWNERS.items()} == {
        name: owner.value(results[name][1]) for name, owner in OWNERS.items()}


def test_the_command_path_loses_no_change_from_concurrent_processes(python, gateway_env,
                                                                   engine, tenant):
    """A few ``tenants settings`` processes at once, each setting its own key."""
    assignments = ["default_gap_days=77", "attribution_window_days=44",
                   "base_currency=JPY", 'pull_interval_minutes={"rescore": 720}']
    processes = [subprocess.Popen([python, str(ROOT / "app.py"), "tenants", "settings",
                                   tenant.id, assignment], env=gateway_env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for assignment in assignments]
    for process in processes:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    with engine.connect() as conn:
        final = tenant_store.get_settings(conn, tenant.id)
    assert (final.default_gap_days, final.attribution_window_days, final.base_currency,
            final.pull_interval_minutes["rescore"]) == (77, 44, "JPY", 720)


@pytest.mark.skipif(not postgres_base_url(), reason="needs PostgreSQL")
def test_a_change_waits_for_an_open_change_of_the_same_tenant_on_postgresql(engine, tenant):
    """Deterministic: B starts while A's change is uncommitted. B must wait for A's row lock
    *before* reading, so it merges over A's committed change instead of the older settings."""
    if engine.dialect.name != "postgresql":
        pytest.skip("this run's database is not PostgreSQL")
    outcome: dict[str, Any] = {}

    def change_b() -> None:
        try:
            with engine.begin() as conn:
                tenant_store.update_settings(conn, tenant.id, {"attribution_window_days": 12})
        except Exception as exc:  # reported to the main thread's assertion
            outcome["error"] = exc

    with engine.connect() as a, engine.connect() as watcher:
        with a.begin():
            tenant_store.update_settings(a, tenant.id, {"default_gap_days": 33})
            b = threading.Thread(target=change_b)
            b.start()
            _wait_until_a_backend_waits_on_a_lock(watcher)
        b.join(timeout=60)
    assert not b.is_alive() and "error" not in outcome, outcome
    with engine.connect() as conn:
        final = tenant_store.get_settings(conn, tenant.id)
    assert (final.default_gap_days, final.attribution_window_days) == (33, 12)


def _wait_until_a_backend_waits_on_a_lock(watcher) -> None:
    from sqlalchemy import text

    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")
    event = threading.Event()
    for _ in range(600):  # observed state, bounded: B blocks on A's lock within a minute
        watcher.rollback()
        if watcher.execute(query).scalar():
            return
        event.wait(0.1)
    raise AssertionError("the second change never waited for the first one's lock")
