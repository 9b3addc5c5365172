"""Signed and keyed posts through the API: refused at once, or committed (202) and ingested
by the drainer; duplicates, dead letters, limits, and the same post 50 times at once."""

from __future__ import annotations

import subprocess
import threading

import pytest
import requests
from sqlalchemy import func, select
from waitress.server import create_server

from gateway.store import keys, records
from gateway.store.db import write_transaction
from gateway.store.tables import deliveries, orders
from gateway.webhooks import drain, inbox
from tests.conftest import ROOT
from tests.webhooks.conftest import API, body_of, inbox_count, order


def count(engine, table, tenant_id):  # noqa: ANN001, ANN201
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(
            table.c.tenant_id == tenant_id)).scalar()


def post(client, tenant, topic, payload, webhook_id, *, query="", **kw):  # noqa: ANN001,ANN201
    body = payload if isinstance(payload, bytes) else body_of(payload)
    return client.post(f"{API}/webhooks/{tenant.id}/{topic}{query}", data=body,
                       headers=tenant.headers(body, webhook_id, **kw))


def test_a_signed_order_is_committed_then_ingested(client, engine, runtime, signed_tenant):
    answer = post(client, signed_tenant, "orders", order("O-100"), "msg_100")
    assert answer.status_code == 202
    got = answer.get_json()
    assert got["duplicate"] is False and got["state"] == "pending" and got["webhook_id"] == \
        "msg_100"
    assert count(engine, orders, signed_tenant.id) == 0  # not yet ingested: only the inbox
    assert drain.drain_inbox(runtime).done >= 1
    with engine.connect() as conn:
        assert records.get_order(conn, signed_tenant.id, "O-100") is not None
        entry = inbox.get_entry(conn, signed_tenant.id, got["inbox_id"])
    assert entry.state == "done" and entry.body == "" and \
        entry.result["records"][0]["id"] == "O-100"


def test_a_repeated_webhook_id_is_acknowledged_and_stores_nothing(client, engine, runtime,
                                                                   signed_tenant):
    first = post(client, signed_tenant, "orders", order("O-200"), "msg_200")
    drain.drain_inbox(runtime)
    again = post(client, signed_tenant, "orders", order("O-200-other"), "msg_200")
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True and \
        again.get_json()["inbox_id"] == first.get_json()["inbox_id"]
    drain.drain_inbox(runtime)
    assert inbox_count(engine, signed_tenant.id) == 1
    assert count(engine, orders, signed_tenant.id) == 1


@pytest.mark.parametrize("topic,query,accepted", [
    ("orders", "?format=rekindle", "canonical, rejoiner, replenit"),
    ("products", "?format=rejoiner", "canonical, replenit"),
    ("nonsense", "", None),
])
def test_a_topic_or_format_outside_the_table_answers_415(client, engine, signed_tenant, topic,
                                                         query, accepted):
    answer = post(client, signed_tenant, topic, order("O-1"), f"msg_415_{topic}", query=query)
    assert answer.status_code == 415
    if accepted:
        assert accepted in answer.get_json()["error"]
    assert inbox_count(engine, signed_tenant.id) == 0


def test_fields_that_fail_the_wire_schema_answer_400_naming_them(client, engine,
                                                                 signed_tenant):
    bad = [order("O-ok"), {**order("O-bad"), "total": "lots"}]
    answer = post(client, signed_tenant, "orders", bad, "msg_schema")
    assert answer.status_code == 400
    assert "1" in answer.get_json()["errors"] and "total" in answer.get_json()["errors"]["1"]
    assert inbox_count(engine, signed_tenant.id) == 0


def test_formats_other_than_canonical_are_accepted(client, engine, runtime, signed_tenant):
    replenit = [{"OrderId": "R-1", "CustomerId": "C-1", "Email": "r@example.com",
                 "OrderDate": "2026-11-20T10:00:00Z", "TotalRevenue": 10.0, "Currency": "USD",
                 "OrderItems": [{"ProductId": "P-1", "Sku": "S", "Quantity": 1,
                                 "Price": 10.0}]}]
    rejoiner = {"email": "j@example.com", "cart_data": {"cart_value": 2000,
                "cart_item_count": 1, "order_number": "J-1"},
                "cart_items": [{"product_id": "P-1", "price": 2000, "item_qty": 1,
                                "qty_price": 2000}]}
    assert post(client, signed_tenant, "orders", replenit, "msg_rp",
                query="?format=replenit").status_code == 202
    assert post(client, signed_tenant, "orders", rejoiner, "msg_rj",
                query="?format=rejoiner").status_code == 202
    drain.drain_inbox(runtime)
    with engine.connect() as conn:
        assert records.get_order(conn, signed_tenant.id, "R-1") is not None
        assert records.get_order(conn, signed_tenant.id, "J-1") is not None


def test_a_wrong_secret_or_an_unknown_tenant_answers_401(client, engine, signed_tenant):
    from gateway.webhooks.signatures import new_secret
    body = body_of(order("O-x"))
    wrong = client.post(f"{API}/webhooks/{signed_tenant.id}/orders", data=body,
                        headers=signed_tenant.headers(body, "m1", secret=new_secret()))
    assert wrong.status_code == 401 and wrong.get_json()["error"]
    unknown = client.post(f"{API}/webhooks/ten_nobody/orders", data=body,
                          headers=signed_tenant.headers(body, "m2"))
    assert unknown.status_code == 401 and "secret" in unknown.get_json()["error"]
    assert inbox_count(engine, signed_tenant.id) == 0


def test_a_post_that_cannot_be_ingested_is_dead_lettered_and_listed(client, engine, runtime,
                                                                    signed_tenant, python,
                                                                    gateway_env):
    # Two customers, then B's id with A's email: the wire schema passes it, storing it
    # contradicts what is stored.
    made = post(client, signed_tenant, "customers",
                [{"email": "a@example.com"}, {"email": "b@example.com"}], "msg_c")
    assert made.status_code == 202
    drain.drain_inbox(runtime)
    with engine.connect() as conn:
        result = inbox.get_entry(conn, signed_tenant.id, made.get_json()["inbox_id"]).result
    b_id = result["records"][1]["id"]
    answer = post(client, signed_tenant, "customers", {"id": b_id, "email": "a@example.com"},
                  "msg_clash")
    assert answer.status_code == 202
    report = drain.drain_inbox(runtime)
    assert report.dead == 1, report
    listed = client.get(f"{API}/webhooks/inbox?state=dead", headers=signed_tenant.auth)
    assert listed.status_code == 200
    [dead] = listed.get_json()["entries"]
    assert dead["webhook_id"] == "msg_clash" and "another customer" in str(dead["reason"])
    assert b_id in dead["body"]
    printed = subprocess.run(
        [python, "-m", "gateway.webhooks.commands", "webhooks", "inbox", signed_tenant.id,
         "--dead"], env=gateway_env, capture_output=True, text=True, timeout=120, check=True,
        cwd=ROOT).stdout
    assert "msg_clash" in printed and '"msg_c"' not in printed


def test_a_keyed_sender_posts_without_a_signature(client, engine, runtime, signed_tenant):
    with write_transaction(engine) as conn:
        zapier = keys.create_key(conn, signed_tenant.id, "zapier").api_key
    auth = {"Authorization": f"Bearer {zapier}"}
    answer = client.post(f"{API}/webhooks/orders", json=order("K-1"),
                         headers={**auth, "webhook-id": "key_1"})
    assert answer.status_code == 202
    again = client.post(f"{API}/webhooks/orders", json=order("K-1"),
                        headers={**auth, "webhook-id": "key_1"})
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert client.post(f"{API}/webhooks/orders", json=order("K-1")).status_code == 401
    assert client.post(f"{API}/webhooks/orders?format=rci", json=order("K-1"),
                       headers=auth).status_code == 415
    drain.drain_inbox(runtime)
    with engine.connect() as conn:
        assert records.get_order(conn, signed_tenant.id, "K-1") is not None


def test_per_sender_and_per_tenant_limits_answer_429_with_retry_after(app, client,
                                                                       signed_tenant):
    app.config["WEBHOOK_TENANT_PER_MINUTE"] = 3
    try:
        answers = [post(client, signed_tenant, "orders", order(f"L-{i}"), f"msg_l{i}")
                   for i in range(4)]
    finally:
        del app.config["WEBHOOK_TENANT_PER_MINUTE"]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1 and answers[-1].get_json()["error"]
    app.config["WEBHOOK_SENDER_PER_MINUTE"] = 0
    try:
        refused = post(client, signed_tenant, "orders", order("L-9"), "msg_l9")
    finally:
        del app.config["WEBHOOK_SENDER_PER_MINUTE"]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


@pytest.fixture()
def served(app):
    """The app on a real HTTP server on 127.0.0.1 (waitress, 8 threads), stopped after."""
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)


def test_the_same_post_50_times_at_once_stores_one_record(served, engine, runtime,
                                                          signed_tenant):
    body = body_of(order("O-fifty"))
    headers = signed_tenant.headers(body, "msg_fifty")
    start = threading.Barrier(50)
    statuses: list[int] = []

    def send() -> None:
        start.wait()
        statuses.append(requests.post(f"{served}{API}/webhooks/{signed_tenant.id}/orders",
                                      data=body, headers=headers, timeout=60).status_code)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(statuses) == 50 and all(200 <= s < 300 for s in statuses), statuses
    assert statuses.count(202) == 1
    drain.drain_inbox(runtime)
    assert inbox_count(engine, signed_tenant.id) == 1
    assert count(engine, orders, signed_tenant.id) == 1
    planned = count(engine, deliveries, signed_tenant.id)
    # the same order ingested once more directly plans nothing new: one set of deliveries
    from gateway import ingest
    with write_transaction(engine) as conn:
        ingest.ingest(conn, signed_tenant.id, "orders", "canonical", order("O-fifty"))
    assert count(engine, deliveries, signed_tenant.id) == planned


def test_prune_keeps_ids_seven_days(engine, signed_tenant):
    from datetime import timedelta

    from gateway.store.types import utcnow
    now = utcnow()
    with write_transaction(engine) as conn:
        old = inbox.accept(conn, signed_tenant.id, "old", "orders", "canonical", "{}",
                           received_at=now - timedelta(days=8))
        recent = inbox.accept(conn, signed_tenant.id, "recent", "orders", "canonical", "{}",
                              received_at=now - timedelta(days=6, hours=23))
        for accepted in (old, recent):
            inbox.mark_done(conn, signed_tenant.id, accepted.entry_id, {})
        assert inbox.prune(conn, signed_tenant.id, now=now) == 1
        with pytest.raises(ValueError):
            inbox.prune(conn, signed_tenant.id, now=now, retention_days=3)
        assert inbox.accept(conn, signed_tenant.id, "recent", "orders", "canonical",
                            "{}").duplicate
        assert not inbox.accept(conn, signed_tenant.id, "old", "orders", "canonical",
                                "{}").duplicate


def test_long_path_segments_answer_as_documented_not_404(client, signed_tenant):
    """The fuzzer found 404s (undocumented) for a topic or tenant id over a length limit."""
    body = body_of(order("O-long"))
    long_topic = client.post(f"{API}/webhooks/{signed_tenant.id}/{'o' * 40}", data=body,
                             headers=signed_tenant.headers(body, "msg_long"))
    assert long_topic.status_code == 415 and long_topic.get_json()["error"]
    long_tenant = client.post(f"{API}/webhooks/{'t' * 60}/orders", data=body,
                              headers=signed_tenant.headers(body, "msg_long"))
    assert long_tenant.status_code == 401
    keyed = client.post(f"{API}/webhooks/{'o' * 40}", json=order("O-long"),
                        headers=signed_tenant.auth)
    assert keyed.status_code == 415


def test_the_inbox_listing_is_not_a_topic(client, signed_tenant):
    """The fuzzer found ``Allow: POST`` on ``/webhooks/inbox`` (the keyed route matched)."""
    answer = client.post(f"{API}/webhooks/inbox", json=order("O-inbox"),
                         headers=signed_tenant.auth)
    assert answer.status_code == 405 and answer.get_json()["error"]
    assert "POST" not in answer.headers["Allow"]
    assert client.post(f"{API}/webhooks/inboxes", json=order("O-inbox"),
                       headers=signed_tenant.auth).status_code == 415
