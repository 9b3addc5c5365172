"""An RCI sandbox served over real HTTP on 127.0.0.1 for each test that asks for one."""

from __future__ import annotations

import itertools

import pytest

from connectors.rci.sandbox import BASE_PATH, create_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig

_keys = itertools.count()


@pytest.fixture
def api_key() -> str:
    # A fresh token per test: the client's rate budget is per credential and process-wide.
    return f"rci_test_token_{next(_keys)}"


@pytest.fixture
def sandbox(api_key, serve) -> RunningSandbox:
    return serve(create_sandbox(SandboxConfig(api_key=api_key, seed_customers=0)))


@pytest.fixture
def base(sandbox) -> str:
    return sandbox.url + BASE_PATH
