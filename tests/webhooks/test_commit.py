"""The accept path's group commit and the drainer's batches, on the real database.

What a batch holds is made deterministic by holding the writer inside its first transaction
until the other posts have queued behind it; nothing here depends on timing.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.store.db import write_transaction
from gateway.store.types import utcnow
from gateway.webhooks import drain, inbox
from gateway.webhooks.commit import CommitUnavailable, GroupCommitter
from tests.webhooks.conftest import body_of, order


def new_post(tenant_id: str, webhook_id: str, body: str | None = None) -> inbox.NewPost:
    return inbox.NewPost(tenant_id, webhook_id, "orders", "canonical",
                         body or body_of(order(f"O-{webhook_id}")).decode(), utcnow())


def test_accept_many_stores_new_posts_and_names_every_duplicate(engine, signed_tenant):
    tenant = signed_tenant.id
    with write_transaction(engine) as conn:
        [earlier] = inbox.accept_many(conn, [new_post(tenant, "m-old")])
    with write_transaction(engine) as conn:
        answers = inbox.accept_many(conn, [new_post(tenant, "m-1"), new_post(tenant, "m-old"),
                                           new_post(tenant, "m-2"), new_post(tenant, "m-1")])
    assert [a.duplicate for a in answers] == [False, True, False, True]
    assert answers[1].entry_id == earlier.entry_id
    assert answers[3].entry_id == answers[0].entry_id
    assert len({answers[0].entry_id, answers[2].entry_id, earlier.entry_id}) == 3
    with engine.connect() as conn:
        listed = inbox.list_entries(conn, tenant)
    assert sorted(e.webhook_id for e in listed) == ["m-1", "m-2", "m-old"]


class HeldWriter:
    """Holds the committer's first transaction open until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self.go = threading.Event(), threading.Event()
        self.calls: list[int] = []
        real = inbox.accept_many

        def held(conn, posts):  # noqa: ANN001, ANN202
            self.calls.append(len(posts))
            if len(self.calls) == 1:
                self.entered.set()
                assert self.go.wait(60)
            return real(conn, posts)

        monkeypatch.setattr(inbox, "accept_many", held)

    def release(self) -> None:
        self.go.set()


def post(committer: GroupCommitter, tenant_id: str, webhook_id: str) -> inbox.Accepted:
    return committer.accept(tenant_id, webhook_id, "orders", "canonical", "{}",
                            received_at=utcnow())


def first_held(pool: ThreadPoolExecutor, held: HeldWriter, committer: GroupCommitter,
               tenant_id: str, webhook_id: str) -> Future:
    """A post sent from ``pool`` whose commit is held (see :class:`HeldWriter`)."""
    future = pool.submit(post, committer, tenant_id, webhook_id)
    assert held.entered.wait(60)
    return future


def queued(committer: GroupCommitter) -> int:
    with committer._lock:
        return len(committer._queue)


def wait_queued(committer: GroupCommitter, n: int) -> None:
    event, deadline = threading.Event(), time.monotonic() + 60
    while queued(committer) < n:
        assert time.monotonic() < deadline, f"{queued(committer)} posts queued, not {n}"
        event.wait(0.01)


def test_posts_arriving_during_a_commit_share_the_next_one(engine, signed_tenant,
                                                           monkeypatch):
    held, committer = HeldWriter(monkeypatch), GroupCommitter(engine, max_leaders=1)
    tenant = signed_tenant.id
    with ThreadPoolExecutor(max_workers=12) as pool:
        first = first_held(pool, held, committer, tenant, "g-0")
        rest = [pool.submit(post, committer, tenant, f"g-{i}") for i in range(1, 11)]
        wait_queued(committer, 10)
        assert not first.done()  # its transaction is not committed yet
        held.release()
        answers = [first.result(60)] + [f.result(60) for f in rest]
    assert held.calls == [1, 10]
    assert (committer.batches, committer.posts) == (2, 11)
    assert not any(a.duplicate for a in answers)
    with engine.connect() as conn:
        stored = {e.webhook_id for e in inbox.list_entries(conn, tenant)}
    assert stored == {f"g-{i}" for i in range(11)}


def test_a_post_the_database_refuses_fails_alone(engine, signed_tenant, monkeypatch):
    held, committer = HeldWriter(monkeypatch), GroupCommitter(engine, max_leaders=1)
    tenant = signed_tenant.id
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = first_held(pool, held, committer, tenant, "r-0")
        good = pool.submit(post, committer, tenant, "r-1")
        wait_queued(committer, 1)
        bad = pool.submit(committer.accept, "no-such-tenant", "r-2", "orders", "canonical",
                          "{}", received_at=utcnow())  # the tenant's foreign key fails
        wait_queued(committer, 2)
        held.release()
        assert not first.result(60).duplicate and not good.result(60).duplicate
        with pytest.raises(IntegrityError):
            bad.result(60)
    assert held.calls[:2] == [1, 2]  # the shared batch failed, then one post a transaction
    with engine.connect() as conn:
        stored = {e.webhook_id for e in inbox.list_entries(conn, tenant)}
    assert {"r-0", "r-1"} <= stored and "r-2" not in stored


def test_with_two_commits_at_once_a_post_does_not_wait_for_the_one_under_way(
        engine, signed_tenant, monkeypatch):
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite takes one commit at a time (one write lock)")
    held, committer = HeldWriter(monkeypatch), GroupCommitter(engine, max_leaders=2)
    tenant = signed_tenant.id
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = first_held(pool, held, committer, tenant, "p-0")
        second = post(committer, tenant, "p-1")
        assert not first.done()  # the second was answered while the first is still held
        held.release()
        assert not first.result(60).duplicate and not second.duplicate
    assert (committer.batches, committer.posts) == (2, 2)


def test_a_post_that_waits_too_long_is_withdrawn_and_the_next_ones_are_committed(
        engine, signed_tenant, monkeypatch):
    held = HeldWriter(monkeypatch)
    committer = GroupCommitter(engine, wait_seconds=0.2, max_leaders=1)
    tenant = signed_tenant.id
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(committer.accept, tenant, "w-0", "orders", "canonical", "{}",
                            received_at=utcnow())
        assert held.entered.wait(60)  # the leader's commit is held: the next post must wait
        with pytest.raises(CommitUnavailable, match="not stored"):
            post(committer, tenant, "w-1")
        assert queued(committer) == 0
        held.release()
        assert not first.result(60).duplicate
    later = post(committer, tenant, "w-2")
    assert not later.duplicate  # the lead was given up, not lost
    with engine.connect() as conn:
        stored = {e.webhook_id for e in inbox.list_entries(conn, tenant)}
    assert stored == {"w-0", "w-2"}
    retried = post(committer, tenant, "w-1")
    assert not retried.duplicate  # the sender's retry of the withdrawn post is stored once


def test_the_writer_starts_afresh_in_a_forked_process(engine, signed_tenant):
    committer = GroupCommitter(engine)
    committer.accept(signed_tenant.id, "f-0", "orders", "canonical", "{}", received_at=utcnow())
    committer._pid = -1  # as a child of a fork sees it: the writer thread is the parent's
    answer = committer.accept(signed_tenant.id, "f-1", "orders", "canonical", "{}",
                              received_at=utcnow())
    assert not answer.duplicate and committer.posts == 2


def test_the_sqlite_writer_waits_for_a_held_write_lock(engine, signed_tenant):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    committer = GroupCommitter(engine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with write_transaction(engine):  # another writer holds the lock
            pending = pool.submit(committer.accept, signed_tenant.id, "l-0", "orders",
                                  "canonical", "{}", received_at=utcnow())
            assert not pending.done()
        assert not pending.result(60).duplicate


def test_a_drain_batch_dead_letters_one_post_and_ingests_the_others(engine, runtime,
                                                                    signed_tenant,
                                                                    monkeypatch):
    monkeypatch.setattr(drain, "SLICE_SECONDS", 600.0)  # the batch is cut by size only
    monkeypatch.setattr(drain, "SQLITE_SLICE_SECONDS", 600.0)
    tenant = signed_tenant.id
    drain.drain_inbox(runtime, 10_000)  # what other tests left pending
    with write_transaction(engine) as conn:
        inbox.accept_many(conn, [new_post(tenant, "d-1"), new_post(tenant, "d-2", "{not json"),
                                 new_post(tenant, "d-3")])
    report = drain.drain_batch(runtime, 10)
    assert report is not None and (report.done, report.dead) == (2, 1)
    with engine.connect() as conn:
        states = {e.webhook_id: e.state for e in inbox.list_entries(conn, tenant)}
    assert states == {"d-1": "done", "d-2": "dead", "d-3": "done"}


def test_a_post_contradicting_what_is_stored_is_dead_and_its_batch_is_ingested(
        engine, runtime, signed_tenant, monkeypatch):
    monkeypatch.setattr(drain, "SLICE_SECONDS", 600.0)
    monkeypatch.setattr(drain, "SQLITE_SLICE_SECONDS", 600.0)
    tenant = signed_tenant.id
    drain.drain_inbox(runtime, 10_000)
    with write_transaction(engine) as conn:
        inbox.accept_many(conn, [
            inbox.NewPost(tenant, "k-a", "customers", "canonical",
                          '{"email": "k-a@example.com"}', utcnow()),
            inbox.NewPost(tenant, "k-b", "customers", "canonical",
                          '{"email": "k-b@example.com"}', utcnow())])
    drain.drain_inbox(runtime, 10_000)
    with engine.connect() as conn:
        [a] = [e.result["records"][0]["customer_id"] for e in inbox.list_entries(conn, tenant)
               if e.webhook_id == "k-a"]
    clash = '{"id": "%s", "email": "k-b@example.com", "first_name": "Clash"}' % a
    with write_transaction(engine) as conn:
        inbox.accept_many(conn, [new_post(tenant, "k-1"),
                                 inbox.NewPost(tenant, "k-2", "customers", "canonical", clash,
                                               utcnow()),
                                 new_post(tenant, "k-3")])
    report = drain.drain_batch(runtime, 10)
    assert report is not None and (report.done, report.dead) == (2, 1)
    with engine.connect() as conn:
        entries = {e.webhook_id: e for e in inbox.list_entries(conn, tenant)}
    assert [entries[k].state for k in ("k-1", "k-2", "k-3")] == ["done", "dead", "done"]
    assert "contradicts what is stored" in entries["k-2"].reason
    assert entries["k-1"].result["records"][0]["outcome"] == "created"


def test_the_drainer_keeps_up_with_light_traffic_and_gives_way_to_a_burst():
    pace = drain._Pace()
    pace.seconds_a_post = 0.002  # it ingests 500 posts a second with the whole time
    assert pace.share(0) == 1.0  # nothing arriving: full speed
    for arriving in (5, 50, 120, 200, 330):  # posts/s needing 1% to 66% of its time
        share = pace.share(arriving)
        can_ingest = share / pace.seconds_a_post
        if arriving * pace.seconds_a_post <= 0.5:
            assert can_ingest >= drain.KEEP_UP_MARGIN * arriving * (1 - 1e-9)
            assert share <= max(drain.BURST_SHARE,
                                drain.KEEP_UP_MARGIN * arriving * 0.002 * (1 + 1e-9))
        else:  # a burst: the accept path comes first, the inbox grows for a while
            assert share == drain.BURST_SHARE
