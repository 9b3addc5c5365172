"""The demo's world: the four sandboxes, served in this process on free ports of 127.0.0.1.

Each runs its service's documented rate limits on a clock :data:`RATE_SCALE` times faster than
the wall clock, and the gateway's own rate budgets are scaled the same way (the process
setting ``rate_time_scale``), so the gateway paces itself exactly as it would against the real
services, only sooner. Credentials are random, made for this run.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
from flask import Flask

from connectors.sandbox_kit import RunningSandbox, SandboxConfig, start_sandbox

#: How many times faster than real time the services' rate windows pass (and the gateway's
#: budgets with them): Rekindle's 120 requests a minute become 120 every 3 seconds.
RATE_SCALE = 20.0
#: The order the tables list the services in.
NAMES = ("rci", "replenit", "rekindle", "rejoiner")
TITLES = {"rci": "Repeat Customer Insights", "replenit": "Replenit", "rekindle": "Rekindle",
          "rejoiner": "Rejoiner"}
REJOINER_SITE = "demo-shop"


@dataclass
class DemoSandbox:
    """One running sandbox and what a connection to it needs."""

    name: str
    running: RunningSandbox
    credentials: dict[str, str] = field(repr=False)
    options: dict[str, Any]

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def app(self) -> Flask:
        return self.running.app

    def stats(self) -> dict[str, Any]:
        """The sandbox's own account of what it holds and answered (``/_sandbox/stats``),
        asked over HTTP like any client would."""
        answer = requests.get(f"{self.url}/_sandbox/stats", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.running.stop()


def _factories() -> dict[str, Callable[[SandboxConfig], Flask]]:
    from connectors.rci.sandbox import create_sandbox as rci
    from connectors.rejoiner.sandbox import create_sandbox as rejoiner
    from connectors.rekindle.sandbox import create_sandbox as rekindle
    from connectors.replenit.sandbox import create_sandbox as replenit

    return {"rci": rci, "replenit": replenit, "rekindle": rekindle, "rejoiner": rejoiner}


def start_sandboxes(rate_scale: float = RATE_SCALE) -> dict[str, DemoSandbox]:
    """Start the four sandboxes (empty; :mod:`gateway.demo.seed` fills RCI)."""
    started: dict[str, DemoSandbox] = {}
    factories = _factories()
    try:
        for name in NAMES:
            key = f"demo_{name}_{secrets.token_hex(12)}"
            config = SandboxConfig(api_key=key, rate_scale=rate_scale)
            options: dict[str, Any] = {}
            if name == "replenit":
                config.tenant_id = options["tenant_id"] = str(uuid.uuid4())
            elif name == "rejoiner":
                config.site_id = options["site_id"] = REJOINER_SITE
            field_name = "api_token" if name == "rci" else "api_key"
            running = start_sandbox(factories[name](config))
            started[name] = DemoSandbox(name, running, {field_name: key}, options)
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(sandboxes: dict[str, DemoSandbox]) -> None:
    for sandbox in reversed(list(sandboxes.values())):
        sandbox.stop()
