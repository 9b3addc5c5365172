"""Fixtures for the delivery engine: a fresh database per test (the worker reads every
tenant's rows, so tests must not see each other's), real sandboxes on 127.0.0.1, connections
stored through the vault, rows queued through the outbox, and worker subprocesses.

Timings are the settings' (lease, backoff, linger, breaker), shrunk so a test runs in seconds;
what a test asserts never depends on how fast the machine is.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
from sqlalchemy import func, select

from connectors.replenit.sandbox import create_sandbox as replenit_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig, start_sandbox
from gateway.model import Money, Order, OrderLine
from gateway.relay.outbox import enqueue
from gateway.relay.planned import PlannedDelivery
from gateway.relay.worker import Worker
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import keys, tenants
from gateway.store.connections import save_connection
from gateway.store.tables import deliveries
from tests.conftest import ROOT, TEST_SECRET_KEY

REPLENIT_TENANT = "6f1c2c52-0000-4000-8000-00000000aaaa"
REJOINER_SITE = "site_relay"
_keys = itertools.count()
_RUN = secrets.token_hex(4)

#: Settings that make the engine run in seconds in tests.
FAST = dict(
    lease_seconds=10.0,
    backoff_base_seconds=0.01,
    backoff_cap_seconds=0.05,
    batch_linger_seconds=0.0,
    breaker_failures=1000,  # tests of the breaker set their own
    breaker_cooldown_seconds=0.5,
    connection_pause_seconds=0.5,
    worker_poll_seconds=0.05,
    http_attempts=3,
)


def fresh_key(prefix: str) -> str:
    """A credential no other test used: rate budgets are per credential and process-wide."""
    return f"{prefix}_{_RUN}_{next(_keys)}"


@dataclass
class RelayDb:
    url: str
    settings: Settings
    runtime: Runtime
    instance: Path

    @property
    def engine(self):  # noqa: ANN201
        return self.runtime.engine

    def runtime_with(self, **overrides: Any) -> Runtime:
        """Another runtime on the same database with other settings (same engine)."""
        settings = Settings.from_env({}, instance_path=self.instance, database_url=self.url,
                                     secret_key=TEST_SECRET_KEY, **{**FAST, **overrides})
        return Runtime(settings=settings, engine=self.engine)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a worker process on this database."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_DATABASE_URL=self.url, GATEWAY_SECRET_KEY=TEST_SECRET_KEY,
                   GATEWAY_INSTANCE_PATH=str(self.instance), PYTHONPATH=str(ROOT),
                   GATEWAY_BACKOFF_BASE_SECONDS="0.01", GATEWAY_BACKOFF_CAP_SECONDS="0.05",
                   GATEWAY_BATCH_LINGER_SECONDS="0.01", GATEWAY_WORKER_POLL_SECONDS="0.05")
        env.update(overrides)
        return env


@pytest.fixture
def relay_db(new_database, tmp_path) -> Iterator[RelayDb]:
    url = new_database("gw_relay")
    instance = tmp_path / "instance"
    settings = Settings.from_env({}, instance_path=instance, database_url=url,
                                 secret_key=TEST_SECRET_KEY, **FAST)
    runtime = Runtime.open(settings, migrate=True)
    yield RelayDb(url, settings, runtime, instance)
    runtime.close()


@pytest.fixture
def new_tenant(relay_db) -> Callable[[str], str]:
    """``new_tenant(name)``: a tenant in this test's database; its id."""
    def make(name: str = "Relay shop") -> str:
        with relay_db.engine.begin() as conn:
            return tenants.create_tenant(conn, name).id

    return make


@pytest.fixture
def new_key(relay_db) -> Callable[..., str]:
    """``new_key(tenant_id, scope="admin")``: an API key of the tenant."""
    def make(tenant_id: str, scope: str = "admin") -> str:
        with relay_db.engine.begin() as conn:
            return keys.create_key(conn, tenant_id, scope).api_key

    return make


@pytest.fixture
def stopping() -> Iterator[Callable[[Any], Any]]:
    """Register sandboxes, workers and processes to stop at teardown, newest first."""
    things: list[Any] = []
    yield things.append
    for thing in reversed(things):
        if isinstance(thing, subprocess.Popen):
            stop_process(thing)
        elif isinstance(thing, Worker):
            thing.stop()
            thing.clients.close()
        else:
            thing.stop()


@dataclass
class Service:
    """A sandbox with the credentials a connection to it needs."""

    sandbox: RunningSandbox
    api_key: str
    connector: str

    @property
    def url(self) -> str:
        return self.sandbox.url

    @property
    def state(self) -> Any:
        return self.sandbox.app.extensions["sandbox"]

    def connect(self, engine, vault, tenant_id: str) -> str:  # noqa: ANN001
        """Store the tenant's connection to this sandbox."""
        if self.connector == "replenit":
            options = {"tenant_id": REPLENIT_TENANT}
            base = self.url
        elif self.connector == "rejoiner":
            options = {"site_id": REJOINER_SITE, "currency": "USD"}
            base = self.url
        else:
            from connectors.rekindle.sandbox import BASE_PATH

            options = {"currency": "USD"}
            base = self.url + BASE_PATH
        with engine.begin() as conn:
            return save_connection(conn, vault, tenant_id, self.connector, base,
                                   {"api_key": self.api_key}, options)


@pytest.fixture
def start_service(stopping) -> Callable[..., Service]:
    """``start_service("replenit", rate_limits=False, ...)``: a sandbox on 127.0.0.1."""

    def start(connector: str, **config: Any) -> Service:
        key = fresh_key(connector[:2])
        if connector == "replenit":
            app = replenit_sandbox(SandboxConfig(api_key=key, tenant_id=REPLENIT_TENANT,
                                                 **config))
        elif connector == "rejoiner":
            from connectors.rejoiner.sandbox import create_sandbox

            app = create_sandbox(SandboxConfig(api_key=key, site_id=REJOINER_SITE, **config))
        else:
            from connectors.rekindle.sandbox import create_sandbox

            app = create_sandbox(SandboxConfig(api_key=key, **config))
        sandbox = start_sandbox(app)
        stopping(sandbox)
        return Service(sandbox, key, connector)

    return start


@pytest.fixture
def make_worker(relay_db, stopping) -> Callable[..., Worker]:
    def make(runtime: Runtime | None = None, **kwargs: Any) -> Worker:
        kwargs.setdefault("threads", 1)
        worker = Worker(runtime or relay_db.runtime, **kwargs)
        stopping(worker)
        return worker

    return make


# ------------------------------------------------------------------------------ records


def order(i: int, *, prefix: str = "O", product: str = "P1", cents: int = 1999) -> Order:
    return Order(id=f"{prefix}-{i}", placed_at=datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
                 total=Money(cents, "USD"), customer_id=f"cus-{i}",
                 customer_email=f"buyer.{i}@example.com",
                 lines=[OrderLine(product_id=product, sku=f"{product}-S", quantity=1,
                                  unit_price=Money(cents, "USD"))])


def queue(engine, tenant_id: str, planned: Sequence[PlannedDelivery]):  # noqa: ANN001,ANN201
    with engine.begin() as conn:
        return enqueue(conn, tenant_id, list(planned))


def queue_orders(engine, tenant_id: str, n: int, *, start: int = 0,  # noqa: ANN001
                 prefix: str = "O", version: str | None = None) -> None:
    queue(engine, tenant_id, [
        PlannedDelivery("replenit", "orders.upsert", order(i, prefix=prefix),
                        subject_id=f"cus-{i}", version=version)
        for i in range(start, start + n)])


def statuses(engine, tenant_id: str | None = None) -> dict[str, int]:  # noqa: ANN001
    query = select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
    if tenant_id:
        query = query.where(deliveries.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        return dict(conn.execute(query).all())


def rows(engine, tenant_id: str | None = None) -> list[Any]:  # noqa: ANN001
    query = select(deliveries).order_by(deliveries.c.id)
    if tenant_id:
        query = query.where(deliveries.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        return list(conn.execute(query))


def drain(worker: Worker, *, until: Callable[[], bool], timeout: float = 60.0) -> None:
    """Drain passes until ``until()`` holds; waits between passes only for what the worker
    says it is waiting for (a backoff, a budget, a linger), never a guessed time."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError("the deliveries did not settle in time")
        worker.run_once()
        if until():
            return
        ready = worker.seconds_until_ready()
        time.sleep(min(0.05, ready) if ready is not None else 0.02)


def all_settled(engine, tenant_id: str | None = None) -> Callable[[], bool]:  # noqa: ANN001
    def check() -> bool:
        counts = statuses(engine, tenant_id)
        return not counts.get("pending") and not counts.get("in_flight")

    return check


# ------------------------------------------------------------------------------ processes


def worker_command() -> list[str]:
    """``python -m gateway.relay.commands worker``: the same function ``python app.py worker``
    runs (gateway/relay/commands.py), started as its own process."""
    return [sys.executable, "-m", "gateway.relay.commands", "worker"]


def start_worker_process(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(worker_command(), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a process this test started: SIGCONT (if stopped), SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds (a bounded wait for an observable state)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)
