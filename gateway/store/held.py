"""Rows a transaction holds back to write all at once (a batch's events, its new order lines,
its re-scores' updates).

A batch of small ingests would otherwise write each of its rows with a statement (a round trip
on PostgreSQL) of its own. A :class:`HeldWrites` names one kind of row and how to write many of
them; inside :meth:`HeldWrites.holding` the writers append their rows instead
(:meth:`HeldWrites.rows` says whether to), and they are written together when the block ends
or at :meth:`HeldWrites.write` (which anything that must read them calls first). Rows of work
rolled back to a savepoint are forgotten with :meth:`HeldWrites.drop`, so a caller that rolls
back to savepoints writes what is held before each one begins: what the work inside writes out
of the held rows is then only its own. The rows belong to the transaction that began holding
them; on an exception nothing is written (the transaction must roll back).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sqlalchemy import Connection


class _Rows:
    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction
        self.rows: list[Any] = []


class HeldWrites:
    """One kind of row held back: ``name`` (where the connection keeps them) and ``write``,
    which writes a list of them in the caller's transaction."""

    def __init__(self, name: str, write: Callable[[Connection, list[Any]], None]) -> None:
        self.key, self._write = f"gateway.held.{name}", write

    def _held(self, conn: Connection) -> _Rows | None:
        held = conn.info.get(self.key)
        return held if held is not None and held.transaction is conn.get_transaction() else None

    @contextmanager
    def holding(self, conn: Connection) -> Iterator[None]:
        """Hold the rows back for the block."""
        transaction = conn.get_transaction()
        if transaction is None or conn.info.get(self.key) is not None:
            raise RuntimeError(f"{self.key}: a transaction, and not already holding")
        conn.info[self.key] = _Rows(transaction)
        try:
            yield
            self.write(conn)
        finally:
            conn.info.pop(self.key, None)

    def rows(self, conn: Connection) -> list[Any] | None:
        """The list to append rows to while holding in this transaction, else ``None`` (the
        writer writes them itself)."""
        held = self._held(conn)
        return held.rows if held is not None else None

    def drop(self, conn: Connection) -> None:
        """Forget the rows held now (their work was rolled back)."""
        held = self._held(conn)
        if held is not None:
            held.rows = []

    def write(self, conn: Connection) -> None:
        """Write the rows held now (nothing when none is held)."""
        held = self._held(conn)
        if held is not None and held.rows:
            rows, held.rows = held.rows, []
            self._write(conn, rows)
