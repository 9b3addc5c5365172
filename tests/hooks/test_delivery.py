"""A REST-hook subscriber on 127.0.0.1 receives every event once in effect, signed, across
500s and 429s; a 410 deletes the subscription; redirects are not followed; retries follow the
schedule; a long-failing subscription is disabled with a ``hook.disabled`` event."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from gateway.hooks import store as hook_store
from gateway.store.events import list_trigger_page
from gateway.store.tables import events as events_table
from tests.hooks.conftest import hook_rows, status_item, subscribe, write_events


def _drain(sender, clock, step: float = 1.0, passes: int = 40) -> None:
    for _ in range(passes):
        sender.run_once()
        clock.advance(step)


def test_every_event_arrives_signed_across_500s_and_429s_then_410_deletes(
        client, engine, clock, make_hook_tenant, subscriber, make_sender):
    tenant = make_hook_tenant(allow_private=True)
    answer = subscribe(client, tenant, subscriber.url)
    assert answer.status_code == 201, answer.get_json()
    hook = answer.get_json()
    assert hook["secret"].startswith("whsec_") and hook["event"] == "customer.status_changed"
    subscriber.script = [(500, {}), (200, {}), (429, {"Retry-After": "3"}), (500, {}),
                         (200, {}), (503, {}), (429, {"Retry-After": "1"})]
    events = write_events(engine, tenant.id, [
        ("customer.status_changed", f"cus_{n}", status_item(f"cus_{n}", "lapsed", "at_risk"))
        for n in range(6)], clock)
    sender = make_sender()
    _drain(sender, clock)

    signer = Webhook(hook["secret"])
    accepted: dict[str, list[str]] = {}
    stamps: dict[str, set[str]] = {}
    for request in subscriber.received:
        headers = {k.lower(): v for k, v in request.headers.items()}
        signer.verify(request.body, headers)  # every attempt, every signature
        stamps.setdefault(headers["webhook-id"], set()).add(headers["webhook-timestamp"])
        if request.answered == 200:
            accepted.setdefault(headers["webhook-id"], []).append(request.body)
    assert sorted(accepted) == sorted(e.id for e in events)
    assert all(len(bodies) == 1 for bodies in accepted.values())
    retried = [i for i, s in stamps.items() if len(s) > 1]
    assert retried, "a retried event is signed afresh with the time of each attempt"
    with engine.connect() as conn:
        items, _ = list_trigger_page(conn, tenant.id, "customer-status")
    by_id = {item["id"]: item for item in items}
    for event_id, [body] in accepted.items():
        assert json.loads(body) == by_id[event_id]  # the polling trigger's item, as is
    assert {row.status for row in hook_rows(engine, tenant.id)} == {"done"}

    subscriber.script = [(410, {})]
    write_events(engine, tenant.id, [("customer.status_changed", "cus_9",
                                      status_item("cus_9", "lost", "lapsed"))], clock)
    report = sender.run_once()
    assert report.deleted == [hook["id"]]
    listed = client.get("/api/v1/hooks", headers=tenant.auth).get_json()
    assert listed == []
    before = len(hook_rows(engine, tenant.id))
    write_events(engine, tenant.id, [("customer.status_changed", "cus_10",
                                      status_item("cus_10", "lost", "lapsed"))], clock)
    assert len(hook_rows(engine, tenant.id)) == before  # nothing queued for a deleted hook


def test_a_429_retry_after_is_honoured_and_not_counted(client, engine, clock, make_hook_tenant,
                                                      subscriber, make_sender):
    tenant = make_hook_tenant(allow_private=True)
    assert subscribe(client, tenant, subscriber.url).status_code == 201
    subscriber.script = [(429, {"Retry-After": "30"})]
    [event] = write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                                status_item("cus_1", "lapsed", "at_risk"))],
                           clock)
    sender = make_sender()
    sender.run_once()
    [row] = hook_rows(engine, tenant.id)
    assert row.status == "pending" and row.attempt == 0
    assert row.next_attempt_at.timestamp() == clock.now + 30
    clock.advance(29)
    sender.run_once()
    assert len(subscriber.received) == 1
    clock.advance(1)
    sender.run_once()
    assert [r.answered for r in subscriber.received] == [429, 200]
    assert hook_rows(engine, tenant.id)[0].status == "done"


def test_retries_follow_the_schedule_and_end_dead(client, engine, clock, make_hook_tenant,
                                                 subscriber, make_sender):
    tenant = make_hook_tenant(allow_private=True)
    assert subscribe(client, tenant, subscriber.url).status_code == 201
    subscriber.script = [(500, {})] * 10
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    sender = make_sender(retry_schedule=(5.0, 50.0))
    start = clock.now
    sender.run_once()
    assert hook_rows(engine, tenant.id)[0].next_attempt_at.timestamp() == start + 5
    clock.advance(4.9)
    sender.run_once()
    assert len(subscriber.received) == 1
    clock.advance(0.1)
    sender.run_once()
    row = hook_rows(engine, tenant.id)[0]
    assert len(subscriber.received) == 2 and row.attempt == 2
    assert row.next_attempt_at.timestamp() == clock.now + 50
    clock.advance(50)
    sender.run_once()
    row = hook_rows(engine, tenant.id)[0]
    assert row.status == "dead" and row.attempt == 3 and "500" in row.last_error
    clock.advance(1000)
    sender.run_once()
    assert len(subscriber.received) == 3


def test_jitter_stays_within_its_band(runtime, clock):
    from gateway.hooks.config import HookSettings
    from gateway.hooks.sender import HookSender

    low = HookSender(runtime, config=HookSettings(jitter=0.2), clock=clock, rng=lambda: 0.0)
    high = HookSender(runtime, config=HookSettings(jitter=0.2), clock=clock, rng=lambda: 1.0)
    assert low._delay(0) == pytest.approx(4.0) and high._delay(0) == pytest.approx(6.0)
    assert low._delay(6) == pytest.approx(36000 * 0.8)
    assert high._delay(99) == pytest.approx(36000 * 1.2)  # past the schedule: its last wait


def test_a_redirect_is_a_failure_and_is_not_followed(client, engine, clock, make_hook_tenant,
                                                    subscriber_factory, make_sender):
    tenant = make_hook_tenant(allow_private=True)
    first, elsewhere = subscriber_factory(), subscriber_factory()
    assert subscribe(client, tenant, first.url).status_code == 201
    first.script = [(302, {"Location": elsewhere.url}), (307, {"Location": elsewhere.url})]
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    sender = make_sender()
    sender.run_once()
    row = hook_rows(engine, tenant.id)[0]
    assert row.status == "pending" and row.attempt == 1 and "redirect" in row.last_error
    clock.advance(1)
    sender.run_once()
    clock.advance(1)
    sender.run_once()
    assert [r.answered for r in first.received] == [302, 307, 200]
    assert elsewhere.connections == 0 and elsewhere.received == []


def test_throttled_per_target(client, engine, clock, make_hook_tenant, subscriber,
                              make_sender):
    tenant = make_hook_tenant(allow_private=True)
    assert subscribe(client, tenant, subscriber.url).status_code == 201
    assert subscribe(client, tenant, subscriber.url, event="customer.returned"
                     ).status_code == 201
    write_events(engine, tenant.id, [
        ("customer.status_changed" if n % 2 else "customer.returned", f"cus_{n}",
         status_item(f"cus_{n}", "active", "lost")) for n in range(7)], clock)
    sender = make_sender(rate_per_second=3.0)
    sender.run_once()
    assert len(subscriber.received) == 3  # the two subscriptions share one target's budget
    sender.run_once()
    assert len(subscriber.received) == 3
    clock.advance(1.0)
    sender.run_once()
    assert len(subscriber.received) == 6
    clock.advance(1.0)
    sender.run_once()
    assert len(subscriber.received) == 7


def test_a_filter_narrows_what_is_sent(client, engine, clock, make_hook_tenant, subscriber,
                                      make_sender):
    tenant = make_hook_tenant(allow_private=True)
    assert subscribe(client, tenant, subscriber.url, filter={"status": ["lost", "lapsed"]}
                     ).status_code == 201
    events = write_events(engine, tenant.id, [
        ("customer.status_changed", "cus_1", status_item("cus_1", "at_risk", "active")),
        ("customer.status_changed", "cus_2", status_item("cus_2", "lapsed", "at_risk")),
        ("order.placed", "O-1", {"order_id": "O-1", "customer_id": "cus_2"}),
        ("customer.status_changed", "cus_3", status_item("cus_3", "lost", "lapsed"))], clock)
    make_sender().run_once()
    sent = [json.loads(r.body)["id"] for r in subscriber.received]
    assert sorted(sent) == sorted([events[1].id, events[3].id])


def test_a_type_without_its_own_trigger_gets_the_events_item(client, engine, clock,
                                                             make_hook_tenant, subscriber,
                                                             make_sender):
    tenant = make_hook_tenant(allow_private=True)
    assert subscribe(client, tenant, subscriber.url, event="product.updated").status_code == 201
    [event] = write_events(engine, tenant.id, [("product.updated", "P-1", {
        "product_id": "P-1", "name": "Tea", "taxonomy": None, "variant_count": 1,
        "available_count": 1})], clock)
    make_sender().run_once()
    with engine.connect() as conn:
        items, _ = list_trigger_page(conn, tenant.id, "events", types=["product.updated"])
    assert [json.loads(r.body) for r in subscriber.received] == items
    assert items[0]["type"] == "product.updated" and items[0]["id"] == event.id


def test_failing_for_the_disable_period_disables_and_writes_hook_disabled(
        client, engine, clock, make_hook_tenant, subscriber, make_sender):
    tenant = make_hook_tenant(allow_private=True)
    hook = subscribe(client, tenant, subscriber.url).get_json()
    watcher = subscribe(client, tenant, subscriber.url + "/watch", event="hook.disabled")
    assert watcher.status_code == 201
    subscriber.script = [(500, {})] * 4  # the first post of each pass, 4 s apart
    write_events(engine, tenant.id, [
        ("customer.status_changed", f"cus_{n}", status_item(f"cus_{n}", "lapsed", "at_risk"))
        for n in range(3)], clock)
    sender = make_sender(retry_schedule=(4.0,) * 10, disable_after_seconds=10.0)
    for _ in range(3):
        sender.run_once()
        clock.advance(4.0)
    report = sender.run_once()  # 12 s after the first failure
    assert report.disabled == [hook["id"]]
    listed = {h["id"]: h for h in client.get("/api/v1/hooks", headers=tenant.auth).get_json()}
    assert listed[hook["id"]]["status"] == "disabled"
    assert {r.status for r in hook_rows(engine, tenant.id)
            if r.operation == hook["id"]} == {"cancelled"}
    with engine.connect() as conn:
        [disabled] = conn.execute(select(events_table.c.item).where(
            events_table.c.tenant_id == tenant.id,
            events_table.c.type == "hook.disabled")).scalars().all()
    assert disabled["hook_id"] == hook["id"] and disabled["target_host"] == "127.0.0.1"
    # the watcher of hook.disabled is told (once the sender comes round to it)
    subscriber.script = []
    sender.run_once()
    told = [r for r in subscriber.received if r.path.endswith("/watch")]
    assert [(json.loads(t.body)["hook_id"], t.answered) for t in told] == [(hook["id"], 200)]
    with engine.connect() as conn:
        watch = hook_store.get_subscription(conn, tenant.id, watcher.get_json()["id"])
    assert watch.status == "active" and watch.failing_since is None


def test_a_success_ends_the_failure_run(client, engine, clock, make_hook_tenant, subscriber,
                                       make_sender):
    tenant = make_hook_tenant(allow_private=True)
    hook = subscribe(client, tenant, subscriber.url).get_json()
    subscriber.script = [(500, {}), (200, {}), (500, {})]
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    sender = make_sender(disable_after_seconds=10.0, retry_schedule=(8.0,) * 5)
    sender.run_once()
    clock.advance(8)
    sender.run_once()  # the 200
    with engine.connect() as conn:
        assert hook_store.get_subscription(conn, tenant.id, hook["id"]).failing_since is None
    clock.advance(8)
    write_events(engine, tenant.id, [("customer.status_changed", "cus_2",
                                      status_item("cus_2", "lapsed", "at_risk"))], clock)
    sender.run_once()  # fails: a new run, 16 s after the first failure, but not disabled
    with engine.connect() as conn:
        sub = hook_store.get_subscription(conn, tenant.id, hook["id"])
    assert sub.status == "active" and sub.failing_since.timestamp() == clock.now


def test_rows_of_a_gone_or_disabled_subscription_are_cancelled_not_sent(
        engine, runtime, clock, make_hook_tenant, subscriber, make_sender):
    from gateway.store.tables import hook_subscriptions

    tenant = make_hook_tenant(allow_private=True)
    with engine.begin() as conn:
        gone, _ = hook_store.create_subscription(conn, runtime.vault, tenant.id,
                                                 event="order.placed", target_url=subscriber.url)
        off, _ = hook_store.create_subscription(conn, runtime.vault, tenant.id,
                                                event="order.placed", target_url=subscriber.url)
    [event] = write_events(engine, tenant.id, [("order.placed", "O-1", {
        "order_id": "O-1", "customer_id": "cus_1"})], clock)
    with engine.begin() as conn:  # behind the store's back: rows left pending
        conn.execute(hook_subscriptions.delete().where(hook_subscriptions.c.id == gone.id))
        conn.execute(hook_subscriptions.update().where(hook_subscriptions.c.id == off.id)
                     .values(status="disabled"))
    report = make_sender().run_once()
    assert len(report.cancelled) == 2 and subscriber.received == []
    rows = hook_rows(engine, tenant.id)
    assert {r.status for r in rows} == {"cancelled"}
    assert {r.subject_id for r in rows} == {"cus_1"}  # erasure finds them by customer
    assert {r.record_key for r in rows} == {event.id}


def test_a_slow_target_does_not_hold_up_another(client, engine, clock, make_hook_tenant,
                                                subscriber_factory, make_sender):
    import threading

    tenant = make_hook_tenant(allow_private=True)
    slow, quick = subscriber_factory(), subscriber_factory()
    slow.gate = threading.Event()
    assert subscribe(client, tenant, slow.url).status_code == 201
    assert subscribe(client, tenant, quick.url.replace("127.0.0.1", "localhost")
                     ).status_code == 201
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    sender = make_sender()
    passing = threading.Thread(target=sender.run_once)
    passing.start()
    try:
        assert slow.arrived.wait(20)
        assert quick.arrived.wait(20)  # answered while the slow target still holds its post
        assert len(quick.received) == 1 and not slow.received
    finally:
        slow.gate.set()
        passing.join(20)
    assert not passing.is_alive()
    assert {r.status for r in hook_rows(engine, tenant.id)} == {"done"}


def test_a_secret_that_cannot_be_decrypted_is_a_failed_attempt(
        engine, runtime, clock, make_hook_tenant, subscriber, make_sender):
    from gateway.crypto import Vault
    from gateway.store.tables import hook_subscriptions

    tenant = make_hook_tenant(allow_private=True)
    with engine.begin() as conn:
        sub, _ = hook_store.create_subscription(conn, runtime.vault, tenant.id,
                                                event="order.placed", target_url=subscriber.url)
        other = Vault("another-key-that-is-long-enough-" + "y" * 32)
        conn.execute(hook_subscriptions.update().where(hook_subscriptions.c.id == sub.id)
                     .values(secret=other.encrypt({"secret": "whsec_AAAA"})))
    write_events(engine, tenant.id, [("order.placed", "O-1", {"order_id": "O-1",
                                                              "customer_id": "cus_1"})], clock)
    make_sender().run_once()
    [row] = hook_rows(engine, tenant.id)
    assert row.status == "pending" and row.attempt == 1 and "decrypt" in row.last_error
    assert subscriber.received == []
