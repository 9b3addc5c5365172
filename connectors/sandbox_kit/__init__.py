"""What the four sandboxes share: rate limits, fault knobs, a clock, stats, seeding, the command.

See docs/connector-kit.md for the contract and :mod:`connectors.sandbox_kit.app` for the
``/_sandbox/*`` endpoints (stats, requests-log, faults, reset, records, clock).
"""

from .app import (
    SandboxConfig,
    SandboxSpec,
    SandboxState,
    build_sandbox,
    default_limit_key,
    kit_state,
)
from .cli import add_arguments, run
from .clock import SandboxClock
from .faults import FaultPlan, FaultSettings
from .ratelimit import RateDecision, RateLimiter, SlidingWindow
from .server import RunningSandbox, start_sandbox
from .stats import Stats
from .synthetic import Synthetic, SyntheticLine, SyntheticOrder, synthetic_customers

__all__ = [
    "FaultPlan",
    "FaultSettings",
    "RateDecision",
    "RateLimiter",
    "RunningSandbox",
    "SandboxClock",
    "SandboxConfig",
    "SandboxSpec",
    "SandboxState",
    "SlidingWindow",
    "Stats",
    "Synthetic",
    "SyntheticLine",
    "SyntheticOrder",
    "add_arguments",
    "build_sandbox",
    "default_limit_key",
    "kit_state",
    "run",
    "start_sandbox",
    "synthetic_customers",
]
