"""A Rejoiner sandbox on 127.0.0.1 and a production client pointed at it."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import requests

from connectors.base import ConnectionConfig
from connectors.http import RetryPolicy
from connectors.rejoiner import CONNECTOR, RejoinerClient
from connectors.rejoiner.sandbox import base_path, create_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig, start_sandbox

API_KEY = "rj_test_5ecret_key_0123456789"
SITE_ID = "site_42"
SCALE = 20.0  # the sandbox clock runs 20x; the client keeps in step (100 requests a second)


def fast_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_elapsed=10)


@pytest.fixture
def start() -> Iterator[Callable[..., RunningSandbox]]:
    running: list[RunningSandbox] = []

    def _start(**overrides: Any) -> RunningSandbox:
        config = SandboxConfig(**{"api_key": API_KEY, "site_id": SITE_ID, "rate_scale": SCALE,
                                  **overrides})
        sandbox = start_sandbox(create_sandbox(config))
        running.append(sandbox)
        return sandbox

    yield _start
    for sandbox in running:
        sandbox.stop()


@pytest.fixture
def sandbox(start) -> RunningSandbox:
    return start()


@pytest.fixture
def make_client() -> Iterator[Callable[..., RejoinerClient]]:
    clients: list[RejoinerClient] = []

    def _make(url: str, *, api_key: str = API_KEY, site_id: str = SITE_ID,
              **kwargs: Any) -> RejoinerClient:
        kwargs.setdefault("retry", fast_retry())
        kwargs.setdefault("time_scale", SCALE)
        config = ConnectionConfig(base_url=url, credentials={"api_key": api_key},
                                  options={"site_id": site_id, "currency": "USD"})
        client = CONNECTOR.make_client(config, **kwargs)
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.close()


@pytest.fixture
def client(sandbox, make_client) -> RejoinerClient:
    return make_client(sandbox.url)


class Raw:
    """Plain requests to the sandbox (for the service's own error bodies)."""

    def __init__(self, url: str) -> None:
        self.root = url
        self.base = url + base_path(SITE_ID)

    def __call__(self, method: str, path: str, *, key: str | None = API_KEY,
                 headers: dict | None = None, **kw: Any) -> requests.Response:
        all_headers = {"Authorization": f"Rejoiner {key}"} if key is not None else {}
        all_headers.update(headers or {})
        target = path if path.startswith("http") else self.base + path
        return requests.request(method, target, headers=all_headers, timeout=10, **kw)

    def record(self, kind: str, key: str) -> dict | None:
        response = requests.get(f"{self.root}/_sandbox/records/{kind}/{key}", timeout=10)
        return response.json() if response.status_code == 200 else None


@pytest.fixture
def raw(sandbox) -> Raw:
    return Raw(sandbox.url)
