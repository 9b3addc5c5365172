"""``python -m gateway.schedule``: run a schedule ticker until SIGTERM or SIGINT.

The database and timings come from the environment (``GATEWAY_*``), as for every command.
``GATEWAY_TEST_JOBS`` may name modules (comma-separated import paths) to import first, which
register more jobs: the tests' hook for jobs of their own. Only this entry reads it; the worker
and ``serve`` never import modules an environment variable names.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Any

from gateway import logs
from gateway.runtime import Runtime
from gateway.schedule.ticker import default_owner, run_ticker
from gateway.settings import Settings, SettingsError


def main() -> int:
    logs.configure()  # as every command: plain or JSON lines (GATEWAY_LOG_JSON), masked
    for name in filter(None, (os.environ.get("GATEWAY_TEST_JOBS") or "").split(",")):
        importlib.import_module(name.strip())
    try:
        runtime = Runtime.open(Settings.from_env())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    owner = default_owner()
    print(f"schedule ticker {owner} ready", flush=True)
    try:
        run_ticker(runtime, stop, owner=owner)
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
