"""A Rejoiner sandbox on 127.0.0.1 and a production client pointed at it."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import requests

from connectors.base import ConnectionConfig
from connectors.rejoiner import CONNECTOR, RejoinerClient
from connectors.rejoiner.sandbox import base_path, create_sandbox
from connectors.sandbox_kit import RunningSandbox, SandboxConfig
from tests.connectors.conftest import fast_retry

API_KEY = "rj_test_5ecret_key_0123456789"
SITE_ID = "site_42"
SCALE = 20.0  # the sandbox clock runs 20x; the client keeps in step (100 requests a second)


@pytest.fixture
def start(serve) -> Callable[..., RunningSandbox]:
    def _start(**overrides: Any) -> RunningSandbox:
        return serve(create_sandbox(SandboxConfig(
            **{"api_key": API_KEY, "site_id": SITE_ID, "rate_scale": SCALE, **overrides})))

    return _start


@pytest.fixture
def sandbox(start) -> RunningSandbox:
    return start()


@pytest.fixture
def make_client(closing) -> Callable[..., RejoinerClient]:
    def _make(url: str, *, api_key: str = API_KEY, site_id: str = SITE_ID,
              **kwargs: Any) -> RejoinerClient:
        kwargs.setdefault("retry", fast_retry(4, max_elapsed=10))
        kwargs.setdefault("time_scale", SCALE)
        config = ConnectionConfig(base_url=url, credentials={"api_key": api_key},
                                  options={"site_id": site_id, "currency": "USD"})
        return closing(CONNECTOR.make_client(config, **kwargs))

    return _make


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
