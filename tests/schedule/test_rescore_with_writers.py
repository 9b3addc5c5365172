"""The scheduled re-score beside other writers (the API, the delivery worker, retention).

On SQLite a transaction that reads and then writes must take the writer first: a deferred one
that read before another writer committed fails with "database is locked" at its first write
(WAL's stale-snapshot rule), whatever the busy timeout."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from gateway.scoring.rescore import rescore_tenant
from gateway.store.tables import customers
from tests.test_scoring import add_customer, add_order

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def test_a_rescore_that_starts_while_another_writer_holds_sqlite_waits_and_sees_its_commit(
        sched_db, new_tenant):
    engine = sched_db.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer; PostgreSQL has row locks")
    tenant = new_tenant()
    with engine.begin() as conn:
        customer = add_customer(conn, tenant, "c1")
        for days in (400, 300, 200):
            add_order(conn, tenant, customer, NOW - days * DAY)

    outcome: dict = {}
    with engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")
        add_order(holder, tenant, customer, NOW - DAY)  # a new order: the customer is back

        def rescore() -> None:
            try:
                outcome["result"] = rescore_tenant(engine, tenant, now=NOW)
            except Exception as exc:  # noqa: BLE001 - asserted below
                outcome["error"] = exc

        thread = threading.Thread(target=rescore)
        thread.start()
        time.sleep(0.5)  # let the re-score begin while the writer is held (either way is valid)
        holder.commit()
    thread.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    with engine.connect() as conn:
        status = conn.execute(select(customers.c.gateway_status).where(
            customers.c.id == customer)).scalar_one()
    assert status == "active"  # the re-score ran after the commit and saw the new order
