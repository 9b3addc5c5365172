"""A Replenit sandbox on 127.0.0.1 per test, and a production client pointed at it."""

from __future__ import annotations

import itertools
import secrets

import pytest

from connectors.base import ConnectionConfig
from connectors.replenit.client import ReplenitClient
from connectors.replenit.sandbox import BASE_PATH, create_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig
from tests.connectors.conftest import fast_retry

TENANT = "3f2c9a1e-5b7d-4c1a-9e8f-0a1b2c3d4e5f"
_keys = itertools.count()
_RUN = secrets.token_hex(4)


@pytest.fixture
def api_key() -> str:
    # A fresh key per test: the client's rate budget is per credential and process-wide.
    return f"rp_test_key_{_RUN}_{next(_keys)}"


@pytest.fixture
def sandbox(api_key, serve) -> RunningSandbox:
    return serve(create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT)))


@pytest.fixture
def base(sandbox) -> str:
    return sandbox.url + BASE_PATH


@pytest.fixture
def make_client(base, api_key, closing):
    def make(key: str | None = None, tenant: str = TENANT, **kwargs) -> ReplenitClient:
        kwargs.setdefault("retry", fast_retry(3, max_elapsed=5.0))
        return closing(ReplenitClient(ConnectionConfig(base, {"api_key": key or api_key},
                                                       {"tenant_id": tenant}), **kwargs))

    return make


@pytest.fixture
def client(make_client) -> ReplenitClient:
    return make_client()
