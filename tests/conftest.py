"""Shared fixtures: a real database for the whole run, the app, tenants and keys.

The database is SQLite in a temporary file, or, when ``GATEWAY_TEST_DATABASE_URL`` names a
PostgreSQL server, a fresh database created on it for this run and dropped afterwards. Processes
the tests start get the same database as ``GATEWAY_DATABASE_URL`` (see ``gateway_env``).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from gateway import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import keys, tenants

#: The Zapier-facing API's fixtures (``make_zapier``, ``shop``) for every test module.
pytest_plugins = ["tests.zapier_helpers"]

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32  # a passphrase; only ever used by the tests
POSTGRES_HINT = (
    "set GATEWAY_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test "
    "to run against PostgreSQL"
)


#: The machine's PostgreSQL in CI (.ci/run starts it when it is down).
CI_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str | None:
    """Where tests that compare with PostgreSQL find it: GATEWAY_TEST_DATABASE_URL, or in CI
    (CI set) the machine's server even on the SQLite leg; None elsewhere (those tests skip)."""
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL", "").strip()
    if url:
        return url
    return CI_POSTGRES_URL if os.environ.get("CI") else None


def _postgres_database(base_url: str, prefix: str) -> tuple[str, callable]:
    """Create an empty database beside ``base_url``'s; returns its URL and a dropper."""
    url = make_url(base_url)
    name = f"{prefix}_{secrets.token_hex(4)}"

    def admin_run(statement: str) -> None:
        # No pool: a run makes many databases, and an idle pooled connection to the base
        # database per one of them would use up the server's connection slots.
        admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with admin.connect() as conn:
                conn.execute(text(statement))
        finally:
            admin.dispose()

    admin_run(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin_run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def new_database(tmp_path_factory):
    """A factory of empty databases of the run's kind (SQLite file or PostgreSQL database)."""
    droppers = []
    base = os.environ.get("GATEWAY_TEST_DATABASE_URL", "").strip()

    def make(prefix: str = "gw_test") -> str:
        if base:
            url, drop = _postgres_database(base, prefix)
            droppers.append(drop)
            return url
        path = tmp_path_factory.mktemp(prefix) / "gateway.db"
        return f"sqlite:///{path}"

    yield make
    for drop in droppers:
        drop()


@pytest.fixture(scope="session")
def database_url(new_database) -> str:
    return new_database("gw_test")


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    return Settings.from_env(
        {},
        instance_path=tmp_path_factory.mktemp("instance"),
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture(scope="session")
def runtime(settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings, migrate=True)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def engine(runtime):
    return runtime.engine


@pytest.fixture(scope="session")
def app(runtime):
    application = create_app(runtime=runtime)
    application.config["TESTING"] = True
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


class TenantHandle:
    """A tenant made for one test, with its admin key."""

    def __init__(self, id: str, name: str, key: str, key_id: str) -> None:
        self.id, self.name, self.key, self.key_id = id, name, key, key_id

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture()
def make_tenant(engine):
    def make(name: str = "Test shop") -> TenantHandle:
        with engine.begin() as conn:
            tenant = tenants.create_tenant(conn, name)
            new = keys.create_key(conn, tenant.id, "admin")
        return TenantHandle(tenant.id, tenant.name, new.api_key, new.info.id)

    return make


@pytest.fixture()
def tenant(make_tenant) -> TenantHandle:
    return make_tenant()


@pytest.fixture()
def gateway_env(runtime, database_url, tmp_path) -> dict[str, str]:
    """The environment for a gateway process the test starts: the run's (migrated) database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_SECRET_KEY=TEST_SECRET_KEY,
        GATEWAY_INSTANCE_PATH=str(tmp_path / "instance"),
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
