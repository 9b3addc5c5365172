"""Group commit for the accept path: concurrent posts in one process share one transaction.

A request thread hands its post to :meth:`GroupCommitter.accept`. When no commit is under way
(on PostgreSQL: fewer than :data:`SERVER_LEADERS`) it leads: it inserts every post waiting at
that moment (its own among them) in one write transaction
(:func:`gateway.webhooks.inbox.accept_many`: one multi-row INSERT) and commits it. Posts that
arrive while the commits are under way wait; a leader wakes each post of its batch with what
became of it, then hands the lead to the oldest post still waiting, which commits the next
batch. So the answer (a 202, or a 200 for a repeated webhook-id) still comes only after its
row is committed, N concurrent posts cost one commit (one SQLite write lock, one PostgreSQL
WAL flush) instead of N, and a post arriving at a quiet moment is committed by its own
thread, with no hand-off to another thread and back. Nothing waits on purpose: a batch is
whatever arrived while the previous one was being committed, one post when the process is
quiet.

A batch whose transaction fails is retried one post a transaction, so one post the database
refuses does not take the others with it; each request then gets its own outcome (the error,
re-raised in the request thread, or its row). A post that waits longer than
:data:`WAIT_SECONDS` is withdrawn if it is still waiting (so it is not stored: the 503 is
true), or else answered 503 while its batch's commit goes on.

The state is per process: a committer inherited through a fork (a gunicorn master's) starts
afresh in the child, without the parent's queue or connection.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

from sqlalchemy import Connection, Engine

from gateway.store.db import LOCK_WAIT_SECONDS, begin_immediate
from gateway.webhooks import inbox

log = logging.getLogger(__name__)

#: The most posts one transaction takes (the rest wait for the next one); one INSERT of
#: :func:`gateway.webhooks.inbox.accept_many` takes them all.
MAX_BATCH = 256
#: Server connections a forked process inherited from its parent's committer (see
#: :meth:`GroupCommitter._forget_parent`).
_INHERITED: list[Connection] = []
#: How long a request waits for its batch's commit before it gives up (and answers 503).
WAIT_SECONDS = 60.0
#: Commits under way at once on a database server (PostgreSQL); SQLite has one.
SERVER_LEADERS = 4


class CommitUnavailable(Exception):
    """The post's commit did not finish within :data:`WAIT_SECONDS`."""


@dataclass(eq=False)
class _Post:
    post: inbox.NewPost
    #: Set when the post is answered (``finished``) or is to lead the next commit (``leads``).
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    leads: bool = False
    result: inbox.Accepted | None = None
    error: BaseException | None = None

    def finish(self, result: inbox.Accepted | None, error: BaseException | None) -> None:
        self.result, self.error, self.finished = result, error, True
        self.wake.set()


class GroupCommitter:
    """Inserts concurrent posts into the inbox in shared transactions (see the module).

    ``max_leaders`` is how many commits may be under way at once on a database server
    (:data:`SERVER_LEADERS` unless given; always one on SQLite, which has one write lock and
    whose leader uses the committer's one connection), whose own group commit makes
    concurrent transactions share a WAL flush (so a post need not wait for the commit before
    its own to end)."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH,
                 wait_seconds: float = WAIT_SECONDS, max_leaders: int | None = None) -> None:
        self.engine, self.wait_seconds = engine, wait_seconds
        self.max_batch = min(max_batch, inbox.MAX_ROWS_A_STATEMENT)  # one INSERT a batch
        self.max_leaders = 1 if engine.dialect.name == "sqlite" else \
            max_leaders or SERVER_LEADERS
        self._lock = threading.Lock()  # guards the queue, the leads, the connections, the pid
        self._queue: list[_Post] = []
        self._leaders = 0  # commits under way, and posts told to lead the next ones
        self._pid: int | None = None
        self._conn: Connection | None = None  # SQLite: the leader's own
        self._idle: list[Connection] = []  # a server's: the leaders', between their batches
        #: Batches committed, the posts in them and the seconds their transactions took
        #: (for the benchmark).
        self.batches = 0
        self.posts = 0
        self.seconds = 0.0

    def accept(self, tenant_id: str, webhook_id: str, topic: str, fmt: str, body: str, *,
               received_at: datetime) -> inbox.Accepted:
        """Store the post (as :func:`gateway.webhooks.inbox.accept`), committed on return."""
        post = _Post(inbox.NewPost(tenant_id, webhook_id, topic, fmt, body, received_at))
        deadline = time.monotonic() + self.wait_seconds
        with self._lock:
            self._forget_parent()
            self._queue.append(post)
            leads = self._leaders < self.max_leaders
            self._leaders += leads
        while True:
            if leads:
                self._lead()
            if post.finished:
                break
            leads = self._follow(post, deadline)
        if post.error is not None:
            raise post.error
        assert post.result is not None
        return post.result

    def _forget_parent(self) -> None:
        """In a process forked from the one that made this committer, drop the parent's queue,
        leads and connection (the caller holds ``_lock``). The connection is dropped, not
        closed: closing a SQLite file inherited from the parent would release the parent's
        locks on it."""
        if self._pid != os.getpid():
            _INHERITED.extend(self._idle)  # kept, never used: closing would end the parent's
            self._pid, self._queue, self._leaders, self._conn = os.getpid(), [], 0, None
            self._idle = []

    def _follow(self, post: _Post, deadline: float) -> bool:
        """Wait until ``post`` is answered (False) or is to lead (True); at the deadline,
        withdraw it if it is still queued, and raise :class:`CommitUnavailable`."""
        while True:
            post.wake.wait(max(0.0, deadline - time.monotonic()))
            post.wake.clear()  # before the flags are read: a later finish() sets it again
            with self._lock:
                if post.finished:
                    return False
                if post.leads:
                    post.leads = False
                    return True
                if time.monotonic() < deadline:
                    continue
                if post in self._queue:
                    self._queue.remove(post)
                    raise CommitUnavailable("the inbox commit did not start in time; the post "
                                            "was not stored")
            raise CommitUnavailable("the inbox commit did not finish in time (it may still "
                                    "land: a retry is then answered as a duplicate)")

    def _lead(self) -> None:
        """Commit the oldest waiting posts (at most :attr:`max_batch`), then hand the lead to
        the oldest post still waiting that is not already told to lead, or give it up."""
        try:
            with self._lock:
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
            try:
                if batch:  # none when another leader took them all
                    self._commit(batch)
            except BaseException as exc:  # never leave a request waiting for nothing
                log.exception("a webhook inbox commit failed")
                for post in batch:
                    if not post.finished:
                        post.finish(None, exc)
                raise
        finally:
            with self._lock:
                heir = next((p for p in self._queue if not p.leads), None)
                if heir is None:
                    self._leaders -= 1
                else:
                    heir.leads = True
                    heir.wake.set()

    def _commit(self, batch: list[_Post]) -> None:
        started = time.perf_counter()
        try:
            with self._transaction() as conn:
                results = inbox.accept_many(conn, [p.post for p in batch])
        except Exception as exc:
            if len(batch) > 1:  # find the post the database refuses: one a transaction
                for post in batch:
                    self._commit([post])
                return
            log.warning("committing a webhook post failed: %s", type(exc).__name__)
            batch[0].finish(None, exc)
            return
        with self._lock:
            self.batches += 1
            self.posts += len(batch)
            self.seconds += time.perf_counter() - started
        for post, result in zip(batch, results):
            post.finish(result, None)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction, committed at the end of the block. On SQLite, on a connection
        of the committer's own (used by one leader at a time) whose busy timeout is 0, so that
        the write lock is polled for (:func:`gateway.store.db.begin_immediate`) without
        switching the timeout for each transaction."""
        if self.engine.dialect.name != "sqlite":
            with self._server_connection() as conn:
                yield conn
            return
        conn = self._sqlite_connection()
        try:
            begin_immediate(conn)
            yield conn
            conn.commit()
        except BaseException:
            self._drop_sqlite_connection()
            raise

    @contextmanager
    def _server_connection(self) -> Iterator[Connection]:
        """On a database server, a connection of the committer's own (one a leader at a time)
        in autocommit: a batch is one INSERT (:data:`MAX_BATCH` posts fit in one statement),
        so that statement is its transaction, committed when it returns: one round trip
        instead of BEGIN, INSERT and COMMIT, and no pool check-out and ping a batch. One that
        fails goes back to the pool (which resets it, or throws it away)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
            conn.commit()  # ends SQLAlchemy's own (autobegun) transaction; nothing is sent
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._idle.append(conn)

    def _sqlite_connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect()
            conn.exec_driver_sql("PRAGMA busy_timeout = 0")
            conn.commit()
            self._conn = conn
        return self._conn

    def _drop_sqlite_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(LOCK_WAIT_SECONDS * 1000)}")
                conn.commit()
                conn.close()
            except Exception:  # a broken connection: the pool throws it away
                conn.invalidate()


_COMMITTERS_LOCK = threading.Lock()


def committer(runtime: object) -> GroupCommitter:
    """The process's committer for ``runtime`` (one per runtime, kept on it)."""
    with _COMMITTERS_LOCK:
        found = vars(runtime).get("_webhook_committer")
        if found is None:
            found = GroupCommitter(runtime.engine)  # type: ignore[attr-defined]
            vars(runtime)["_webhook_committer"] = found
        return found
