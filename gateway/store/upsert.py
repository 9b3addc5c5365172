"""INSERT ... ON CONFLICT for both databases."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(conn: Connection, table: Table):  # noqa: ANN201 - dialect-specific Insert
    """The dialect's INSERT construct, which knows ``on_conflict_do_update``/``do_nothing``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def upsert(conn: Connection, table: Table, values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
           keys: Sequence[str], update: Sequence[str] | None = None, returning=None):  # noqa: ANN001,ANN201
    """Insert ``values``; on a conflict on ``keys`` update the ``update`` columns (default: all
    non-key columns given) to the new values."""
    stmt = insert_for(conn, table).values(values)
    sample = values if isinstance(values, Mapping) else values[0]
    columns = update if update is not None else [c for c in sample if c not in keys]
    if columns:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in columns})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    if returning is not None:
        stmt = stmt.returning(*returning)
    return conn.execute(stmt)
