"""Fixtures for the schedules: a fresh database per test (the ticker reads every tenant's
rows, so tests must not see each other's), tenants, schedule rows, and a clock the test moves.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import select

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import tenants
from gateway.store.tables import schedules, sync_runs
from tests.conftest import ROOT, TEST_SECRET_KEY

#: Where the tests' clocks start.
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    """An aware UTC clock that moves only when the test moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


@dataclass
class ScheduleDb:
    url: str
    runtime: Runtime
    instance: Path

    @property
    def engine(self):  # noqa: ANN201
        return self.runtime.engine

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a ticker process on this database."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GATEWAY_") and k != "SERVER_SOFTWARE"}
        env.update(GATEWAY_DATABASE_URL=self.url, GATEWAY_SECRET_KEY=TEST_SECRET_KEY,
                   GATEWAY_INSTANCE_PATH=str(self.instance), PYTHONPATH=str(ROOT))
        env.update(overrides)
        return env


@pytest.fixture
def sched_db(new_database, tmp_path) -> Iterator[ScheduleDb]:
    url = new_database("gw_sched")
    instance = tmp_path / "instance"
    settings = Settings.from_env({}, instance_path=instance, database_url=url,
                                 secret_key=TEST_SECRET_KEY, lease_seconds=10.0)
    runtime = Runtime.open(settings, migrate=True)
    yield ScheduleDb(url, runtime, instance)
    runtime.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_tenant(sched_db) -> Callable[..., str]:
    def make(name: str = "Schedule shop") -> str:
        with sched_db.engine.begin() as conn:
            return tenants.create_tenant(conn, name).id

    return make


def add_schedule(engine, tenant_id: str, route: str, *, interval: int = 60,  # noqa: ANN001
                 next_run_at: datetime = T0, enabled: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(schedules.insert().values(tenant_id=tenant_id, route=route,
                                               interval_seconds=interval, enabled=enabled,
                                               next_run_at=next_run_at))


def schedule_row(engine, tenant_id: str, route: str) -> Any:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(schedules).where(schedules.c.tenant_id == tenant_id,
                                                    schedules.c.route == route)).first()


def run_rows(engine, tenant_id: str | None = None, route: str | None = None  # noqa: ANN001
             ) -> list[Any]:
    query = select(sync_runs).order_by(sync_runs.c.id)
    if tenant_id:
        query = query.where(sync_runs.c.tenant_id == tenant_id)
    if route:
        query = query.where(sync_runs.c.route == route)
    with engine.connect() as conn:
        return list(conn.execute(query))


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds (a bounded wait for an observable state)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)
