"""A Replenit sandbox on 127.0.0.1 per test, and a production client pointed at it."""

from __future__ import annotations

import itertools
import secrets
from typing import Iterator

import pytest

from connectors.base import ConnectionConfig
from connectors.http import RetryPolicy
from connectors.replenit.client import ReplenitClient
from connectors.replenit.sandbox import BASE_PATH, create_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig, start_sandbox

TENANT = "3f2c9a1e-5b7d-4c1a-9e8f-0a1b2c3d4e5f"
_keys = itertools.count()
_RUN = secrets.token_hex(4)


@pytest.fixture
def api_key() -> str:
    # A fresh key per test: the client's rate budget is per credential and process-wide.
    return f"rp_test_key_{_RUN}_{next(_keys)}"


@pytest.fixture
def sandbox(api_key) -> Iterator[RunningSandbox]:
    running = start_sandbox(create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT)))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def base(sandbox) -> str:
    return sandbox.url + BASE_PATH


def fast_retry(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=0.01, backoff_cap=0.05,
                       max_elapsed=5.0)


@pytest.fixture
def make_client(base, api_key):
    made = []

    def make(key: str | None = None, tenant: str = TENANT, **kwargs) -> ReplenitClient:
        kwargs.setdefault("retry", fast_retry())
        client = ReplenitClient(ConnectionConfig(base, {"api_key": key or api_key},
                                                 {"tenant_id": tenant}), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client) -> ReplenitClient:
    return make_client()
