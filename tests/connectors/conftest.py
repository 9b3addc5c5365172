"""Fixtures for the connector tests: the four contract cases, sandboxes on 127.0.0.1, Redis.

Every case module ``tests/connectors/cases/<name>.py`` must exist and expose ``CASE``; a missing
one fails the suite (it is part of the contract, not an optional extra).
"""

from __future__ import annotations

import importlib
import os
from bisect import bisect_right
from typing import Any, Callable, Iterator, Sequence

import pytest
import requests

from connectors.http import RetryPolicy
from connectors.sandbox_kit import RunningSandbox, start_sandbox

CASE_NAMES = ("rekindle", "rejoiner", "rci", "replenit")


def load_case(name: str) -> Any:
    """The ``CASE`` of ``tests/connectors/cases/<name>.py``; a clear error if it is missing."""
    try:
        module = importlib.import_module(f"tests.connectors.cases.{name}")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"contract case tests/connectors/cases/{name}.py is missing or does not import "
            f"({exc}); every connector must provide one"
        ) from exc
    return module.CASE


def fast_retry(attempts: int = 8, max_elapsed: float = 30.0) -> RetryPolicy:
    """A retry policy that waits milliseconds, not seconds (Retry-After still wins)."""
    return RetryPolicy(max_attempts=attempts, backoff_base=0.01, backoff_cap=0.05,
                       max_elapsed=max_elapsed)


def max_in_window(timestamps: Sequence[float], seconds: float) -> int:
    """The most timestamps any window ``(t - seconds, t]`` holds (windows ending on a hit)."""
    ordered = sorted(timestamps)
    best = 0
    for j, end in enumerate(ordered):
        first = bisect_right(ordered, end - seconds)
        best = max(best, j - first + 1)
    return best


def kit_root(url: str) -> str:
    """``http://127.0.0.1:port`` of a sandbox URL (the kit's routes live at the root)."""
    parts = url.split("/")
    return "/".join(parts[:3])


def sandbox_stats(url: str) -> dict:
    return requests.get(f"{kit_root(url)}/_sandbox/stats", timeout=10).json()


def sandbox_log(url: str) -> dict:
    return requests.get(f"{kit_root(url)}/_sandbox/requests-log", timeout=30).json()


def set_faults(url: str, **settings: Any) -> dict:
    response = requests.post(f"{kit_root(url)}/_sandbox/faults", json=settings, timeout=10)
    response.raise_for_status()
    return response.json()


def reset_sandbox(url: str) -> None:
    requests.post(f"{kit_root(url)}/_sandbox/reset", timeout=10).raise_for_status()


@pytest.fixture(params=CASE_NAMES)
def case(request: pytest.FixtureRequest) -> Any:
    return load_case(request.param)


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Register what to shut at teardown, newest first: ``client = closing(make_client(...))``.
    Anything with ``close()`` (clients) or else ``stop()`` (running sandboxes)."""
    things: list[Any] = []

    def register(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield register
    for thing in reversed(things):
        (getattr(thing, "close", None) or thing.stop)()


@pytest.fixture
def serve(closing) -> Callable[[Any], RunningSandbox]:
    """``serve(app)``: a sandbox app served on 127.0.0.1, stopped at teardown."""
    return lambda app: closing(start_sandbox(app))


@pytest.fixture
def start_case_sandbox(serve) -> Callable[..., RunningSandbox]:
    """``start(case, **config_overrides)``: the case's sandbox served on 127.0.0.1."""

    def start(case: Any, **overrides: Any) -> RunningSandbox:
        module = importlib.import_module(f"connectors.{case.name}.sandbox")
        return serve(module.create_sandbox(case.sandbox_config(**overrides)))

    return start


def redis_url_or_skip(db: int = 14) -> str:
    """A reachable Redis URL; skip (fail when CI is set) when there is none."""
    url = os.environ.get("GATEWAY_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{db}")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        message = (f"Redis not reachable at {url} ({type(exc).__name__}); start one (e.g. "
                   "`redis-server --port 6379`) or set GATEWAY_TEST_REDIS_URL to run this test")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def redis_url() -> str:
    return redis_url_or_skip()
