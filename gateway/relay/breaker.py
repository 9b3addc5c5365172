"""A circuit breaker per destination (tenant, connector), in the worker's memory.

Closed, it counts consecutive failed sends that say the service is down (5xx, timeouts, refused
or reset connections). After ``failures`` of them it opens: nothing is claimed for that
destination for ``cooldown`` seconds. Then it lets one probe through (a batch of one record);
while the probe is out nothing else goes. A probe that gets an answer closes the breaker; one
that fails opens it for another ``cooldown``. A probe's failure costs its record no attempt, so
an outage spends a few attempts (those that opened the breaker), not the records' retry caps.

Each worker process keeps its own breakers: two workers each probe, at most one probe each at
a time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from gateway import logs

log = logging.getLogger("gateway.relay")


@dataclass
class _State:
    consecutive: int = 0
    open_until: float | None = None  # None: closed
    probing: bool = False


class Breakers:
    def __init__(self, failures: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = max(1, int(failures))
        self.cooldown = float(cooldown)
        self.clock = clock
        self._states: dict[Hashable, _State] = {}
        self._lock = threading.Lock()

    def state(self, key: Hashable) -> str:
        """``closed``, ``open`` (cooling down, or a probe is out) or ``half_open`` (a probe may
        go)."""
        with self._lock:
            return self._state_of(self._states.get(key))

    def _state_of(self, state: _State | None) -> str:
        if state is None or state.open_until is None:
            return "closed"
        if state.probing or self.clock() < state.open_until:
            return "open"
        return "half_open"

    def blocked(self, key: Hashable) -> bool:
        """True while nothing may be claimed for ``key``."""
        return self.state(key) == "open"

    def begin(self, key: Hashable) -> bool:
        """Called when a batch for ``key`` is about to be claimed: True when it is the probe
        (the caller claims one record)."""
        with self._lock:
            state = self._states.get(key)
            if self._state_of(state) != "half_open":
                return False
            state.probing = True
            return True

    def abandon(self, key: Hashable, probe: bool) -> None:
        """A claim that got nothing: a probe that did not go out frees the slot."""
        if probe:
            with self._lock:
                state = self._states.get(key)
                if state is not None:
                    state.probing = False

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._states.pop(key, None)

    def failed(self, key: Hashable, probe: bool) -> bool:
        """Count a failed send; True when the breaker is open after it."""
        with self._lock:
            state = self._states.setdefault(key, _State())
            state.consecutive += 1
            if probe:
                state.probing = False
            opens = probe or (state.open_until is None and state.consecutive >= self.failures)
            if probe or state.consecutive >= self.failures:
                state.open_until = self.clock() + self.cooldown
            is_open, failures = state.open_until is not None, state.consecutive
        if opens:
            logs.event(log, "relay.breaker_open",
                       f"{_describe(key)} keeps failing: its breaker is open for "
                       f"{self.cooldown:g}s", level=logging.WARNING, **_key_fields(key),
                       failures=failures, cooldown_seconds=self.cooldown, after_probe=probe)
        return is_open

    def neutral(self, key: Hashable, probe: bool) -> None:
        """A send that proved nothing about the service (a deadline while waiting for the rate
        budget): a probe's slot is freed and the breaker stays as it was."""
        self.abandon(key, probe)


def _key_fields(key: Hashable) -> dict[str, Any]:
    """A destination key's log fields: (tenant, connector) by name, anything else as is."""
    if isinstance(key, tuple) and len(key) == 2:
        return {"tenant_id": key[0], "connector": key[1]}
    return {"destination": str(key)}


def _describe(key: Hashable) -> str:
    fields = _key_fields(key)
    if "connector" in fields:
        return f"{fields['connector']} for tenant {fields['tenant_id']}"
    return fields["destination"]
