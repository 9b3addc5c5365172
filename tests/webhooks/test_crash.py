"""A kill -9 of the serving process during a burst of signed posts: every post that got a 2xx
is stored and ingested after a restart, and the sender's retries of the others are accepted
once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from gateway.store.tables import orders, webhook_inbox
from tests.conftest import ROOT
from tests.webhooks.conftest import API, body_of, order

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


def test_kill_9_during_a_burst_loses_no_acknowledged_post(python, gateway_env, engine,
                                                         signed_tenant):
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
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.execute(select(func.count()).select_from(webhook_inbox).where(
                    webhook_inbox.c.tenant_id == signed_tenant.id,
                    webhook_inbox.c.state != "done")).scalar()
            if pending == 0:
                break
            time.sleep(0.2)
    finally:
        stop(proc)
    with engine.connect() as conn:
        rows = conn.execute(select(webhook_inbox.c.webhook_id, webhook_inbox.c.state).where(
            webhook_inbox.c.tenant_id == signed_tenant.id)).all()
        stored = conn.execute(select(orders.c.external_id).where(
            orders.c.tenant_id == signed_tenant.id)).scalars().all()
    assert sorted(w for w, _ in rows) == sorted(w for w, _ in posts)  # each once
    assert {s for _, s in rows} == {"done"}
    assert sorted(stored) == sorted(f"C-{i}" for i in range(POSTS))
