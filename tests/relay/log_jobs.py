"""A job for tests/relay/test_structured_logs.py, registered when ``python -m gateway.schedule``
imports this module (``GATEWAY_TEST_JOBS=tests.relay.log_jobs``): route ``log-leak`` runs every
second for every tenant, logs a line carrying the credentials it was given in
``GATEWAY_TEST_LEAK`` (a key, a signing secret, the process's secret key) and then fails with
them in its error, as a careless connector might."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

from gateway.schedule import register

ROUTE = "log-leak"


def leaking_job(runtime: Any, tenant_id: str, now: datetime) -> dict[str, Any]:
    leak = os.environ["GATEWAY_TEST_LEAK"]
    logging.getLogger("gateway.tests").warning("calling the service with %s", leak)
    raise RuntimeError(f"the service refused {leak}")


register(ROUTE, leaking_job, interval=lambda _settings: 1)
