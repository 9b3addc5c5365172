"""Trigger pages: membership written with each event, one index range per page, newest first,
and a keyset cursor that stays safe while several connections commit events."""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from gateway import ingest, triggers
from gateway.scoring import rescore_customer
from gateway.store.events import append_event, append_events, list_trigger_page

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def _order(order_id: str, email: str, placed_at: datetime) -> dict:
    return {"id": order_id, "placed_at": placed_at.isoformat(), "total": "20.00",
            "currency": "USD", "customer_email": email,
            "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "20.00"}]}


def test_the_table_says_which_triggers_an_event_belongs_to():
    assert triggers.triggers_for("customer.status_changed", {"status": "lapsed"}) == [
        "customer-status", "events"]
    assert triggers.triggers_for("customer.status_changed", {"status": "active"}) == ["events"]
    assert triggers.triggers_for("order.placed", {}) == ["new-order", "events"]
    assert triggers.triggers_for("order.cancelled", {}) == ["events"]
    assert triggers.triggers_for("customer.opted_in", {}) == ["consent-changed", "events"]
    assert triggers.triggers_for("customer.returned", {}) == ["customer-returned", "events"]
    assert triggers.triggers_for("customer.created", {}) == ["new-customer", "events"]


def test_at_risk_then_lapsed_gives_two_items_with_their_own_ids(engine, make_tenant):
    tenant = make_tenant()
    email = "walker@example.com"
    with engine.begin() as conn:
        result = ingest.ingest(conn, tenant.id, "orders", "canonical",
                               [_order("O-1", email, NOW - 30 * DAY), _order("O-2", email, NOW)],
                               now=NOW)
        customer_id = result.records[0].customer_id
    for days in (50, 95):  # a 30-day gap: at risk from day 45, lapsed from day 90
        with engine.begin() as conn:
            rescore_customer(conn, tenant.id, customer_id, now=NOW + days * DAY)
    with engine.connect() as conn:
        items, cursor = list_trigger_page(conn, tenant.id, "customer-status")
        lapsed, _ = list_trigger_page(conn, tenant.id, "customer-status", status="lapsed")
        at_risk, _ = list_trigger_page(conn, tenant.id, "customer-status", status="at_risk")
        everything, _ = list_trigger_page(conn, tenant.id, "events")
        only_status, _ = list_trigger_page(conn, tenant.id, "events",
                                           types=["customer.status_changed"])
    assert [(i["previous_status"], i["status"]) for i in items] == [
        ("at_risk", "lapsed"), ("active", "at_risk")]
    assert items[0]["id"] != items[1]["id"] and cursor is None
    assert items[0]["customer_id"] == items[1]["customer_id"] == customer_id
    assert [i["id"] for i in lapsed] == [items[0]["id"]]
    assert [i["id"] for i in at_risk] == [items[1]["id"]]
    # the events trigger serves every event, the envelope added to the stored item
    assert everything[0]["id"] == items[0]["id"]
    assert everything[0]["type"] == "customer.status_changed"
    assert everything[0]["subject_id"] == customer_id and everything[0]["source"] == "gateway"
    assert everything[0]["occurred_at"] == (NOW + 95 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {i["type"] for i in everything} >= {"customer.created", "order.placed"}
    assert [i["id"] for i in only_status] == [i["id"] for i in items]


def test_pages_are_newest_first_and_the_cursor_pages_back_once_through(engine, make_tenant):
    tenant = make_tenant()
    with engine.begin() as conn:
        ids = append_events(conn, tenant.id, [("order.placed", f"O-{i}", {"order_id": f"O-{i}"})
                                              for i in range(7)],
                            occurred_at=NOW, source="test")
    seen, before = [], None
    with engine.connect() as conn:
        while True:
            items, before = list_trigger_page(conn, tenant.id, "new-order", before=before,
                                              limit=3)
            seen.extend(i["id"] for i in items)
            if before is None:
                break
    assert seen == ids[::-1]
    with engine.connect() as conn:
        items, cursor = list_trigger_page(conn, tenant.id, "new-order", limit=7)
    assert len(items) == 7 and cursor is None


def test_items_are_served_as_stored(engine, make_tenant):
    tenant = make_tenant()
    item = {"customer_id": "c1", "email": "x@example.com", "channel": "sms", "consent": True,
            "changed_at": "2026-03-02T09:30:00Z"}
    with engine.begin() as conn:
        event = append_event(conn, tenant.id, "customer.opted_in", "c1", item,
                             occurred_at=NOW)
    with engine.connect() as conn:
        [served], _ = list_trigger_page(conn, tenant.id, "consent-changed")
    assert served == {"id": event.id, **item}


def test_bad_page_arguments_are_refused(engine, tenant):
    with engine.connect() as conn:
        with pytest.raises(KeyError):
            list_trigger_page(conn, tenant.id, "no-such-trigger")
        with pytest.raises(ValueError):
            list_trigger_page(conn, tenant.id, "customer-status", status="active")
        with pytest.raises(ValueError):
            list_trigger_page(conn, tenant.id, "new-order", status="lapsed")
        with pytest.raises(ValueError):
            list_trigger_page(conn, tenant.id, "events", types=["no.such"])
        for limit in (0, 101, True):
            with pytest.raises(ValueError):
                list_trigger_page(conn, tenant.id, "events", limit=limit)


def test_another_tenants_events_are_not_on_its_pages(engine, make_tenant):
    a, b = make_tenant("A"), make_tenant("B")
    with engine.begin() as conn:
        append_event(conn, a.id, "order.placed", "O-1", {"order_id": "O-1"})
    with engine.connect() as conn:
        assert list_trigger_page(conn, b.id, "new-order") == ([], None)
        assert list_trigger_page(conn, b.id, "events") == ([], None)


# --- concurrent writers --------------------------------------------------------------------------


class Walker:
    """A polling client: walks the newest-first cursor down to the newest id it saw last time
    (its high-water mark), keeping every id it sees, in the order it first saw them."""

    def __init__(self, engine, tenant_id: str, page: int = 2) -> None:
        self.engine, self.tenant_id, self.page = engine, tenant_id, page
        self.seen: list[str] = []
        self.high_water: str | None = None

    def poll(self) -> list[str]:
        new, before = [], None
        with self.engine.connect() as conn:
            while True:
                items, before = list_trigger_page(conn, self.tenant_id, "events",
                                                  before=before, limit=self.page)
                fresh = []
                for item in items:
                    if item["id"] == self.high_water:
                        before = None
                        break
                    fresh.append(item["id"])
                new.extend(fresh)
                if before is None:
                    break
        if new:
            self.high_water = new[0]
        self.seen.extend(new)
        return new


def _postgres(engine) -> bool:
    return engine.dialect.name == "postgresql"


def _waiting_on_a_lock(engine, pid: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                            {"pid": pid}).scalar_one() > 0


def test_an_event_committed_after_a_newer_one_is_still_seen_by_a_cursor_walker(
        engine, make_tenant):
    """T1 writes an event and holds its transaction open; T2 writes one and commits; a walker
    polls; T1 commits; the walker polls again. It must see both events, each once."""
    tenant = make_tenant()
    walker = Walker(engine, tenant.id)
    walker.poll()
    t1 = engine.connect()
    t1_tx = t1.begin()
    [first] = append_events(t1, tenant.id, [("order.placed", "T1", {"order_id": "T1"})],
                            occurred_at=NOW, source="t1")
    started, out, errors = threading.Event(), {}, []

    def second_writer() -> None:
        try:
            with engine.begin() as conn:
                if _postgres(engine):
                    out["pid"] = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                started.set()
                [out["id"]] = append_events(conn, tenant.id,
                                            [("order.placed", "T2", {"order_id": "T2"})],
                                            occurred_at=NOW, source="t2")
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=second_writer, daemon=True)
    thread.start()
    assert started.wait(30)
    if _postgres(engine):  # T2 either waits for T1's tenant lock or (without it) is done
        for _ in range(3000):
            if not thread.is_alive() or _waiting_on_a_lock(engine, out["pid"]):
                break
            threading.Event().wait(0.01)
    walker.poll()
    t1_tx.commit()
    t1.close()
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    walker.poll()
    assert sorted(walker.seen) == sorted([first, out["id"]])
    assert len(walker.seen) == len(set(walker.seen))


def test_a_walker_sees_every_event_exactly_once_while_writers_commit(engine, make_tenant):
    """Several connections commit (and sometimes roll back) events in random interleavings
    while a walker polls; at the end it has seen every committed event once, and no other."""
    tenant = make_tenant()
    walker = Walker(engine, tenant.id, page=3)
    committed: list[str] = []
    lock = threading.Lock()
    errors: list[Exception] = []
    done = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for round_ in range(15):
                with engine.connect() as conn:
                    tx = conn.begin()
                    planned = [("order.placed", f"W{seed}-{round_}-{k}", {"order_id": "x"})
                               for k in range(rng.randint(1, 3))]
                    ids = append_events(conn, tenant.id, planned, occurred_at=NOW,
                                        source=f"w{seed}")
                    if rng.random() < 0.2:
                        tx.rollback()
                        continue
                    tx.commit()
                with lock:
                    committed.extend(ids)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,), daemon=True) for seed in range(3)]
    for thread in threads:
        thread.start()

    def stop_when_done() -> None:
        for thread in threads:
            thread.join(120)
        done.set()

    threading.Thread(target=stop_when_done, daemon=True).start()
    polls = 0
    while not done.is_set():
        walker.poll()
        polls += 1
    walker.poll()
    assert not errors, errors
    assert len(walker.seen) == len(set(walker.seen)), "an event was seen twice"
    assert set(walker.seen) == set(committed)
    assert polls >= 1


def test_the_migration_gives_existing_events_their_triggers_and_customer(new_database):
    from gateway.store import db

    engine = db.make_engine(new_database("gw_backfill"))
    try:
        db.upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, settings, created_at, updated_at) "
                              "VALUES ('ten_1', 'old', '{}', :t, :t)"), {"t": NOW})
            old = [("e1", "customer.status_changed", "c1", {"status": "lapsed"}),
                   ("e2", "customer.status_changed", "c1", {"status": "active"}),
                   ("e3", "order.placed", "O-1", {"customer_id": "c2"}),
                   ("e4", "product.updated", "P-1", {})]
            for seq, (event_id, type_, subject, item) in enumerate(old, start=1):
                conn.execute(text(
                    "INSERT INTO events (seq, id, tenant_id, type, subject_id, item, "
                    "occurred_at) VALUES (:seq, :id, 'ten_1', :type, :subject, :item, :t)"),
                    {"seq": seq, "id": event_id, "type": type_, "subject": subject,
                     "item": json.dumps({"id": event_id, **item}), "t": NOW})
        db.upgrade(engine)
        with engine.connect() as conn:
            status, _ = list_trigger_page(conn, "ten_1", "customer-status", status="lapsed")
            orders_, _ = list_trigger_page(conn, "ten_1", "new-order")
            customers_ = dict(conn.execute(text("SELECT id, customer_id FROM events")).all())
        assert [i["id"] for i in status] == ["e1"] and [i["id"] for i in orders_] == ["e3"]
        assert customers_ == {"e1": "c1", "e2": "c1", "e3": "c2", "e4": None}
    finally:
        engine.dispose()


def test_types_narrow_a_trigger_of_several_types(engine, make_tenant):
    tenant = make_tenant()
    with engine.begin() as conn:
        ids = append_events(conn, tenant.id, [
            ("customer.opted_in", "c1", {"customer_id": "c1", "consent": True}),
            ("customer.unsubscribed", "c1", {"customer_id": "c1", "consent": False}),
            ("customer.opted_in", "c2", {"customer_id": "c2", "consent": True}),
        ], occurred_at=NOW, source="test")
    with engine.connect() as conn:
        opted, cursor = list_trigger_page(conn, tenant.id, "consent-changed",
                                          types=["customer.opted_in"], limit=1)
        older, last = list_trigger_page(conn, tenant.id, "consent-changed",
                                        types=["customer.opted_in"], before=cursor, limit=1)
        with pytest.raises(ValueError):
            list_trigger_page(conn, tenant.id, "consent-changed", types=["order.placed"])
    assert [i["id"] for i in opted + older] == [ids[2], ids[0]] and last is None
