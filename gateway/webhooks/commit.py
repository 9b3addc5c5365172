"""Group commit for the accept path: concurrent posts in one process share one transaction.

A request thread hands its post to :meth:`GroupCommitter.accept` and waits; one writer thread
per process takes every post waiting at that moment, inserts them in one write transaction
(:func:`gateway.webhooks.inbox.accept_many`: one multi-row INSERT) and commits it, then wakes each
request with what became of its post. So the answer (a 202, or a 200 for a repeated
webhook-id) still comes only after its row is committed, but N concurrent posts cost one
commit (one SQLite write lock, one PostgreSQL WAL flush) instead of N. Nothing waits on
purpose: a batch is whatever arrived while the previous one was being committed, one post when
the process is quiet.

A batch whose transaction fails is retried one post a transaction, so one post the database
refuses does not take the others with it; each request then gets its own outcome (the error,
re-raised in the request thread, or its row).

The writer thread is started on first use in the process that uses it (so a committer made
before a fork, in a gunicorn master, starts afresh in each worker).
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

from gateway.store.db import LOCK_WAIT_SECONDS, begin_immediate, write_transaction
from gateway.webhooks import inbox

log = logging.getLogger(__name__)

#: The most posts one transaction takes (the rest wait for the next one).
MAX_BATCH = 256
#: How long a request waits for its batch's commit before it gives up (and answers 503).
WAIT_SECONDS = 60.0


class CommitUnavailable(Exception):
    """The post's commit did not finish within :data:`WAIT_SECONDS` (it may still land; the
    sender's retry is then answered as a duplicate)."""


@dataclass(eq=False)
class _Post:
    post: inbox.NewPost
    done: threading.Event = field(default_factory=threading.Event)
    result: inbox.Accepted | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Inserts concurrent posts into the inbox in shared transactions (see the module)."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH,
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self.engine, self.max_batch, self.wait_seconds = engine, max_batch, wait_seconds
        self._cond = threading.Condition()
        self._queue: list[_Post] = []
        self._pid: int | None = None
        self._conn: Connection | None = None  # SQLite: the writer thread's own
        #: Batches committed, the posts in them and the seconds their transactions took
        #: (for the benchmark).
        self.batches = 0
        self.posts = 0
        self.seconds = 0.0

    def accept(self, tenant_id: str, webhook_id: str, topic: str, fmt: str, body: str, *,
               received_at: datetime) -> inbox.Accepted:
        """Store the post (as :func:`gateway.webhooks.inbox.accept`), committed on return."""
        post = _Post(inbox.NewPost(tenant_id, webhook_id, topic, fmt, body, received_at))
        with self._cond:
            self._ensure_writer()
            self._queue.append(post)
            self._cond.notify()
        if not post.done.wait(self.wait_seconds):
            raise CommitUnavailable("the inbox commit did not finish in time")
        if post.error is not None:
            raise post.error
        assert post.result is not None
        return post.result

    def _ensure_writer(self) -> None:
        """Start this process's writer thread (the caller holds ``_cond``)."""
        if self._pid == os.getpid():
            return
        # Posts queued and a connection opened before a fork are not this process's (the
        # connection is dropped, not closed: closing a SQLite file inherited from the parent
        # would release the parent's locks on it).
        self._pid, self._queue, self._conn = os.getpid(), [], None
        threading.Thread(target=self._run, name="webhook-commit", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a request waiting for nothing
                log.exception("the webhook commit thread failed")
                for post in batch:
                    if not post.done.is_set():
                        post.error = exc
                        post.done.set()

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
            batch[0].error = exc
            batch[0].done.set()
            return
        self.batches += 1
        self.posts += len(batch)
        self.seconds += time.perf_counter() - started
        for post, result in zip(batch, results):
            post.result = result
            post.done.set()


    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction, committed at the end of the block. On SQLite, on a connection
        of the writer's own whose busy timeout is 0, so that the write lock is polled for
        (:func:`gateway.store.db.begin_immediate`) without switching the timeout for each
        transaction."""
        if self.engine.dialect.name != "sqlite":
            with write_transaction(self.engine) as conn:
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
