"""Fault knobs a sandbox applies before it serves a request.

``POST /_sandbox/faults`` takes a JSON object of :class:`FaultSettings` fields and merges it onto
the current settings; ``GET`` shows them; ``POST /_sandbox/reset`` restores the defaults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class FaultSettings:
    error_rate: float = 0.0  # share of requests answered `error_status`
    error_status: int = 500
    latency_ms: int = 0  # added to every request
    burst_429: int = 0  # the next N requests answer 429 (with Retry-After)
    retry_after: int | None = None  # Retry-After on injected 429s (default: the service's own)
    reset_rate: float = 0.0  # share of requests whose connection is dropped unanswered
    hang_rate: float = 0.0  # share of requests that hang `hang_seconds` first
    hang_seconds: float = 30.0
    reject_keys: dict[str, str] = field(default_factory=dict)  # record key -> message
    seed: int | None = None  # for reproducible fault draws

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_RATES = ("error_rate", "reset_rate", "hang_rate")
_TYPES: dict[str, tuple[type, ...]] = {
    "error_rate": (int, float),
    "error_status": (int,),
    "latency_ms": (int,),
    "burst_429": (int,),
    "retry_after": (int, type(None)),
    "reset_rate": (int, float),
    "hang_rate": (int, float),
    "hang_seconds": (int, float),
    "reject_keys": (dict,),
    "seed": (int, type(None)),
}


class FaultPlan:
    """The current :class:`FaultSettings` and the seeded draws made from them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        self._random = random.Random()

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        """Merge ``changes`` onto the settings; ``ValueError`` names any bad field."""
        known = {f.name for f in fields(FaultSettings)}
        errors = {}
        for name, value in changes.items():
            if name not in known:
                errors[name] = "unknown fault setting"
            elif isinstance(value, bool) or not isinstance(value, _TYPES[name]):
                errors[name] = f"wrong type {type(value).__name__}"
            elif name in _RATES and not 0.0 <= value <= 1.0:
                errors[name] = "must be between 0 and 1"
            elif name in ("latency_ms", "burst_429", "hang_seconds") and value < 0:
                errors[name] = "must not be negative"
            elif name == "error_status" and not 100 <= value <= 599:
                errors[name] = "not an HTTP status"
        if errors:
            raise ValueError(errors)
        with self._lock:
            for name, value in changes.items():
                setattr(self.settings, name, dict(value) if name == "reject_keys" else value)
            if "seed" in changes:
                self._random = random.Random(self.settings.seed)
        return self.settings

    def reset(self) -> None:
        with self._lock:
            self.settings = FaultSettings()
            self._random = random.Random()

    def take_burst(self) -> bool:
        """True (and one fewer left) while an injected 429 burst lasts."""
        with self._lock:
            if self.settings.burst_429 > 0:
                self.settings.burst_429 -= 1
                return True
            return False

    def draw(self, rate: float) -> bool:
        """A seeded coin that comes up True with probability ``rate``."""
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def rejects(self, key: str) -> str | None:
        """The message the service rejects the record ``key`` with, if the tests asked for one."""
        return self.settings.reject_keys.get(key)

    def __getattr__(self, name: str) -> Any:
        """The current settings read through: ``faults.reject_keys``, ``faults.error_rate``."""
        if name.startswith("_") or name == "settings":
            raise AttributeError(name)
        return getattr(self.settings, name)
