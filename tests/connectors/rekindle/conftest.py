"""A Rekindle sandbox on 127.0.0.1 per test, on a clock pinned to the reference's examples."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from connectors.base import ConnectionConfig
from connectors.rekindle import RekindleClient
from connectors.rekindle.sandbox import BASE_PATH, create_sandbox
from connectors.sandbox_kit import SandboxClock, SandboxConfig, start_sandbox
from tests.connectors.conftest import fast_retry

API_KEY = "rk_live_test_5f2a9c0d1e"
FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rekindle" / "fixtures"
#: The moment of the reference's customer-status example (its updated_at).
REFERENCE_NOW = datetime(2025, 3, 15, 10, 22, tzinfo=timezone.utc)
FAST_RETRY = fast_retry(4, max_elapsed=10.0)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Sandbox:
    """A running sandbox plus raw-HTTP helpers (for the service's own answers)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.app = create_sandbox(config)
        self.running = start_sandbox(self.app)
        self.url = self.running.url
        self.api = self.url + BASE_PATH
        self.http = requests.Session()

    def call(self, method: str, path: str, *, key: str | None = API_KEY, **kwargs: Any
             ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.http.request(method, self.api + path, headers=headers, timeout=10, **kwargs)

    def upsert(self, body: dict) -> requests.Response:
        return self.call("POST", "/actions/update-customer", json=body)

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.url}/_sandbox/{path}", timeout=10, **kwargs)

    def advance(self, seconds: float) -> None:
        self.control("POST", "clock", json={"advance": seconds}).raise_for_status()

    def client(self, *, api_key: str = API_KEY, currency: str = "USD", **kwargs: Any
               ) -> RekindleClient:
        kwargs.setdefault("retry", FAST_RETRY)
        config = ConnectionConfig(self.api, {"api_key": api_key}, {"currency": currency})
        return RekindleClient(config, **kwargs)

    def stop(self) -> None:
        self.http.close()
        self.running.stop()


@pytest.fixture
def make_sandbox(closing) -> Callable[..., Sandbox]:
    def make(**overrides: Any) -> Sandbox:
        overrides.setdefault("clock", SandboxClock(start=REFERENCE_NOW.timestamp(),
                                                   rate_scale=overrides.get("rate_scale", 1.0)))
        return closing(Sandbox(SandboxConfig(**{"api_key": API_KEY, **overrides})))

    return make


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox()
