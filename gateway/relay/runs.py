"""Runs: each drain of the outbox is recorded in ``sync_runs`` (route ``drain``), one row per
tenant it delivered for, with the counts per connector; other routes record their runs in
the same table. Listed by ``python app.py runs`` and ``GET /api/v1/runs``.

A drain's ``counts``::

    {"worker": "host:pid:abc123", "sent": 12, "failed": 1, "dead": 0,
     "connectors": {"replenit": {"sent": 12, "failed": 1, "dead": 0}}}

``sent`` counts rows this worker completed (fenced: rows it still owned), ``failed`` rows put
back for a retry (an attempt counted), ``dead`` rows dead-lettered. A drain whose connection
failed has status ``failed`` and says why in ``error``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from gateway.relay.scope import AllTenants, TenantScope
from gateway.store.tables import sync_runs
from gateway.store.types import utcnow

DRAIN = "drain"
COUNTERS = ("sent", "failed", "dead")


@dataclass
class Drain:
    """The counts of one drain pass, per tenant and connector (thread-safe)."""

    worker: str
    started_at: datetime
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, tenant_id: str, connector: str, **counts: int) -> None:
        with self._lock:
            per = self.counts.setdefault(tenant_id, {}).setdefault(
                connector, dict.fromkeys(COUNTERS, 0))
            for name, value in counts.items():
                per[name] += value

    def error(self, tenant_id: str, message: str) -> None:
        with self._lock:
            self.errors.setdefault(tenant_id, []).append(message)
            self.counts.setdefault(tenant_id, {})

    def total(self, name: str) -> int:
        with self._lock:
            return sum(per[name] for connectors in self.counts.values()
                       for per in connectors.values())

    @property
    def busy(self) -> bool:
        """True when this drain did anything worth a row."""
        return bool(self.counts)

    def rows(self, finished_at: datetime) -> list[dict[str, Any]]:
        rows = []
        with self._lock:
            for tenant_id, connectors in self.counts.items():
                totals = {name: sum(per[name] for per in connectors.values())
                          for name in COUNTERS}
                errors = self.errors.get(tenant_id)
                rows.append({
                    "tenant_id": tenant_id, "route": DRAIN, "started_at": self.started_at,
                    "finished_at": finished_at, "status": "failed" if errors else "ok",
                    "counts": {"worker": self.worker, **totals,
                               "connectors": {c: dict(per) for c, per in connectors.items()}},
                    "error": "; ".join(errors) if errors else None,
                })
        return rows


def record(engine: Engine, drain: Drain, finished_at: datetime | None = None) -> int:
    """Write the drain's rows (none for an idle drain); how many."""
    rows = drain.rows(finished_at or utcnow())
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(sync_runs), rows)
    return len(rows)


def list_runs(conn: Connection, tenant: TenantScope, *, route: str | None = None,
              limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first; ``before`` (a run id) pages back."""
    c = sync_runs.c
    query = select(sync_runs).order_by(c.id.desc()).limit(limit)
    if not isinstance(tenant, AllTenants):
        query = query.where(c.tenant_id == tenant)
    if route:
        query = query.where(c.route == route)
    if before is not None:
        query = query.where(c.id < before)
    return [dict(row._mapping) for row in conn.execute(query)]
