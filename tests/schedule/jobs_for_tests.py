"""Jobs for the schedules' process tests, registered when ``python -m gateway.schedule``
imports this module (``GATEWAY_TEST_JOBS=tests.schedule.jobs_for_tests``).

- ``GATEWAY_TEST_ROUTES``: comma-separated routes, each every
  ``GATEWAY_TEST_INTERVAL_SECONDS`` (default 1) for every tenant;
- ``GATEWAY_TEST_RUNS_FILE``: every run appends one JSON line (pid, owner, tenant, route, slot,
  now) when it starts, in one ``write`` to a file opened for appending, so lines of several
  processes never mix;
- ``GATEWAY_TEST_BLOCK_ROUTE``: runs of this route, once recorded, wait until the process stops
  (or is killed).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from gateway.schedule import current_run, register


def _record(line: dict[str, Any]) -> None:
    fd = os.open(os.environ["GATEWAY_TEST_RUNS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def recording_job(runtime: Any, tenant_id: str, now: datetime) -> dict[str, Any]:
    run = current_run()
    _record({"pid": os.getpid(), "owner": run.owner, "tenant": tenant_id, "route": run.route,
             "slot": run.slot.isoformat(), "now": now.isoformat()})
    if run.route == os.environ.get("GATEWAY_TEST_BLOCK_ROUTE"):
        while not run.stopping.wait(0.05):
            pass
    return {"recorded": 1}


def _interval(_settings: Any) -> int:
    return int(os.environ.get("GATEWAY_TEST_INTERVAL_SECONDS") or 1)


for _route in filter(None, (os.environ.get("GATEWAY_TEST_ROUTES") or "").split(",")):
    register(_route.strip(), recording_job, interval=_interval)
