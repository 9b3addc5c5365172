"""The REST-hook sender's timings, from the environment (``GATEWAY_HOOK_*``), so tests can
run them in seconds.

===================================  =========================================  ============
variable                             meaning                                    default
===================================  =========================================  ============
``GATEWAY_HOOK_RETRY_SCHEDULE``      seconds before each retry, comma-separated  5,300,1800,
                                     (one retry per entry, then dead)           7200,18000,
                                                                                36000,36000
``GATEWAY_HOOK_JITTER``              each wait is scaled by a random factor in  0.2
                                     1 +/- this
``GATEWAY_HOOK_RATE_PER_SECOND``     posts per target host and second           30
``GATEWAY_HOOK_DISABLE_AFTER_HOURS`` a subscription failing this long is        120 (5 days)
                                     disabled
``GATEWAY_HOOK_TIMEOUT_SECONDS``     connect and read timeout of one post       10
``GATEWAY_HOOK_LEASE_SECONDS``       the lease on claimed hook deliveries       60
===================================  =========================================  ============
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from gateway.settings import SettingsError

DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number (got {raw!r})") from None
    if value != value or value < minimum:
        raise SettingsError(f"{name} must be a number of at least {minimum:g}")
    return value


def _schedule(env: Mapping[str, str]) -> tuple[float, ...]:
    raw = (env.get("GATEWAY_HOOK_RETRY_SCHEDULE") or "").strip()
    if not raw:
        return DEFAULT_SCHEDULE
    try:
        steps = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError("GATEWAY_HOOK_RETRY_SCHEDULE must be seconds separated by commas"
                            ) from None
    if any(step != step or step < 0 for step in steps):
        raise SettingsError("GATEWAY_HOOK_RETRY_SCHEDULE entries must be 0 or more seconds")
    return steps


@dataclass(frozen=True)
class HookSettings:
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2
    rate_per_second: float = 30.0
    disable_after_seconds: float = 5 * 86_400.0
    timeout_seconds: float = 10.0
    lease_seconds: float = 60.0

    @property
    def max_attempts(self) -> int:
        """The first attempt and one retry per schedule entry."""
        return len(self.retry_schedule) + 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object
                 ) -> "HookSettings":
        env = os.environ if env is None else env
        values: dict[str, object] = dict(
            retry_schedule=_schedule(env),
            jitter=min(1.0, _number(env, "GATEWAY_HOOK_JITTER", 0.2)),
            rate_per_second=_number(env, "GATEWAY_HOOK_RATE_PER_SECOND", 30.0, 0.001),
            disable_after_seconds=3600.0 * _number(env, "GATEWAY_HOOK_DISABLE_AFTER_HOURS",
                                                   120.0),
            timeout_seconds=_number(env, "GATEWAY_HOOK_TIMEOUT_SECONDS", 10.0, 0.01),
            lease_seconds=_number(env, "GATEWAY_HOOK_LEASE_SECONDS", 60.0, 1.0),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
