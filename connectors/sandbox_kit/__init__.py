"""What the four sandboxes share: rate limits, fault knobs, a clock, stats, seeding, the command,
how a service reads its credential, and one bounded JSON body parser.

See docs/connector-kit.md for the contract and :mod:`connectors.sandbox_kit.app` for the
``/_sandbox/*`` endpoints (stats, requests-log, faults, reset, records, clock).
"""

from .app import (
    SandboxConfig,
    SandboxSpec,
    SandboxState,
    build_sandbox,
    kit_state,
)
from .cli import add_arguments, run
from .clock import ManualClock, SandboxClock
from .credentials import BEARER, HeaderCredential
from .faults import FaultPlan, FaultSettings
from .jsonbody import BodyError, parse_json_body
from .ratelimit import RateDecision, RateLimiter, SlidingWindow
from .server import RunningSandbox, start_sandbox
from .stats import Stats
from .synthetic import Synthetic, SyntheticLine, SyntheticOrder, synthetic_customers

__all__ = [
    "BEARER",
    "BodyError",
    "FaultPlan",
    "FaultSettings",
    "HeaderCredential",
    "ManualClock",
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
    "kit_state",
    "parse_json_body",
    "run",
    "start_sandbox",
    "synthetic_customers",
]
