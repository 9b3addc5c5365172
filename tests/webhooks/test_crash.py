"""A kill -9 of the serving process during a burst of signed posts: every post that got a 2xx
is stored, ingested and delivered to a Replenit sandbox after a restart (one record per order
key there), and the sender's retries of the others are accepted once.

The server is a subprocess (the API on waitress and the drainer on a thread, as ``serve`` runs
them) on this test's own database; the delivery worker runs here, against the sandbox on
127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from gateway.store import tenants
from gateway.store.db import write_transaction
from gateway.store.tables import deliveries, orders, webhook_inbox
from gateway.webhooks.secrets import ensure_secret
from tests.conftest import ROOT
from tests.connectors.conftest import kit_root, sandbox_stats
from tests.relay.conftest import all_settled
from tests.relay.conftest import drain as drain_deliveries
from tests.webhooks.conftest import API, SignedTenant, body_of, order

POSTS = 60
KILL_AFTER = 15


def start_server(python, env):  # noqa: ANN001, ANN201
    proc = subprocess.Popen([python, "-m", "tests.webhooks.serve_drainer"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = proc.stdout.readline().strip()
    assert port.isdigit(), "the server did not start"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not answer /healthz")


def stop(proc) -> None:  # noqa: ANN001
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _inbox_settled(engine, tenant_id: str) -> bool:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(webhook_inbox).where(
            webhook_inbox.c.tenant_id == tenant_id,
            webhook_inbox.c.state != "done")).scalar() == 0


def test_kill_9_during_a_burst_loses_no_acknowledged_post(python, relay_db, new_tenant,
                                                         start_service, make_worker):
    engine = relay_db.engine
    tenant_id = new_tenant("Crash shop")
    with write_transaction(engine) as conn:
        tenants.update_settings(conn, tenant_id, {"consent_basis": "lawful_basis"})
        secret = ensure_secret(conn, relay_db.runtime.vault, tenant_id).current
    signed_tenant = SignedTenant(tenant_id, secret, key="")
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(engine, relay_db.runtime.vault, tenant_id)
    gateway_env = relay_db.env()
    posts = [(f"msg_crash_{i}", body_of(order(f"C-{i}", f"c{i}@example.com")))
             for i in range(POSTS)]
    proc, base = start_server(python, gateway_env)
    acknowledged: dict[str, int] = {}
    lock, enough = threading.Lock(), threading.Event()

    def send(item, url):  # noqa: ANN001, ANN202
        webhook_id, body = item
        try:
            answer = requests.post(url, data=body, timeout=30,
                                   headers=signed_tenant.headers(body, webhook_id))
        except requests.RequestException:
            return
        with lock:
            if 200 <= answer.status_code < 300:
                acknowledged[webhook_id] = answer.status_code
            if len(acknowledged) >= KILL_AFTER:
                enough.set()

    url = f"{API}/webhooks/{signed_tenant.id}/orders"
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(send, item, base + url) for item in posts]
            assert enough.wait(timeout=120), "too few posts were answered before the kill"
            os.kill(proc.pid, signal.SIGKILL)
            for future in futures:
                future.result(timeout=120)
    finally:
        stop(proc)
    assert len(acknowledged) < POSTS, "the kill came after the burst; nothing was tested"

    proc, base = start_server(python, gateway_env)
    try:
        retried: dict[str, int] = {}
        for webhook_id, body in posts:  # the sender retries what got no 2xx (and, here, all)
            answer = requests.post(base + url, data=body, timeout=30,
                                   headers=signed_tenant.headers(body, webhook_id))
            retried[webhook_id] = answer.status_code
        assert all(retried[w] == 200 for w in acknowledged), retried  # duplicates
        assert all(200 <= s < 300 for s in retried.values()), retried
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _inbox_settled(engine, signed_tenant.id):
            time.sleep(0.2)
    finally:
        stop(proc)
    drain_deliveries(make_worker(), until=all_settled(engine, tenant_id))
    with engine.connect() as conn:
        rows = conn.execute(select(webhook_inbox.c.webhook_id, webhook_inbox.c.state).where(
            webhook_inbox.c.tenant_id == signed_tenant.id)).all()
        stored = conn.execute(select(orders.c.external_id).where(
            orders.c.tenant_id == signed_tenant.id)).scalars().all()
        sent = conn.execute(select(deliveries.c.record_key, deliveries.c.status).where(
            deliveries.c.tenant_id == tenant_id, deliveries.c.connector == "replenit",
            deliveries.c.operation == "orders.upsert")).all()
    assert sorted(w for w, _ in rows) == sorted(w for w, _ in posts)  # each once
    assert {s for _, s in rows} == {"done"}
    keys = sorted(f"C-{i}" for i in range(POSTS))
    assert sorted(stored) == keys
    assert sorted(sent) == [(key, "done") for key in keys]  # one delivery per order key
    assert sandbox_stats(replenit.url)["records"]["orders"] == POSTS
    acknowledged_keys = {f"C-{w.rsplit('_', 1)[1]}" for w in acknowledged}
    for key in sorted(acknowledged_keys):  # every acknowledged post is at the sandbox
        found = requests.get(f"{kit_root(replenit.url)}/_sandbox/records/orders/{key}",
                             timeout=10)
        assert found.status_code == 200, key
