"""Waking this process's workers when it writes deliveries.

Each worker holds a :class:`Wakeup` (a ``threading.Event``) registered here; :func:`after_commit`
arranges for every registered one to be set once the caller's transaction commits (not
before: a worker woken early would find nothing yet). Workers in other processes do not hear
this and find the rows at their next short poll.
"""

from __future__ import annotations

import threading
import weakref

from sqlalchemy import Connection, event

_WAKEUPS: "weakref.WeakSet[Wakeup]" = weakref.WeakSet()
_ARMED: "weakref.WeakSet[object]" = weakref.WeakSet()
_LOCK = threading.Lock()


class Wakeup(threading.Event):
    """One worker's alarm: set when this process commits deliveries."""

    def __init__(self) -> None:
        super().__init__()
        with _LOCK:
            _WAKEUPS.add(self)


def notify() -> None:
    """Wake every worker of this process now."""
    with _LOCK:
        wakeups = list(_WAKEUPS)
    for wakeup in wakeups:
        wakeup.set()


def after_commit(conn: Connection) -> None:
    """Wake this process's workers when ``conn``'s current transaction commits (once, however
    many times this is called in it)."""
    transaction = conn.get_transaction()
    if transaction is None:  # autocommit: the write is visible already
        notify()
        return
    with _LOCK:
        if transaction in _ARMED:
            return
        _ARMED.add(transaction)
    event.listen(conn, "commit", _on_commit, once=True)


def _on_commit(conn: Connection) -> None:
    notify()
