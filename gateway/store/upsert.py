"""INSERT ... ON CONFLICT for both databases."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(conn: Connection, table: Table):  # noqa: ANN201 - dialect-specific Insert
    """The dialect's INSERT construct, which knows ``on_conflict_do_update``/``do_nothing``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_MAX_STATEMENTS = 1024


def _on_conflict(stmt: Any, keys: Sequence[str], columns: Sequence[str],
                 returning: Sequence[Any] | None) -> Any:
    """``stmt`` (an INSERT) updating ``columns`` on a conflict on ``keys`` (doing nothing when
    there are none), returning ``returning``."""
    if columns:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in columns})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    if returning is not None:
        stmt = stmt.returning(*returning)
    return stmt


def _statement(conn: Connection, table: Table, keys: tuple[str, ...],
               columns: tuple[str, ...], returning: tuple[Any, ...] | None):  # noqa: ANN202
    """The INSERT ... ON CONFLICT construct for these columns, built once per shape (building
    ``excluded`` costs more than the execution; the values are bound at execution)."""
    shape = (conn.dialect.name, table, keys, columns, returning)
    stmt = _STATEMENTS.get(shape)
    if stmt is None:
        stmt = _on_conflict(insert_for(conn, table), keys, columns, returning)
        if len(_STATEMENTS) >= _MAX_STATEMENTS:  # shapes are few; never let them grow
            _STATEMENTS.clear()
        stmt = _STATEMENTS.setdefault(shape, stmt)
    return stmt


def upsert(conn: Connection, table: Table, values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
           keys: Sequence[str], update: Sequence[str] | None = None, returning=None):  # noqa: ANN001,ANN201
    """Insert ``values``; on a conflict on ``keys`` update the ``update`` columns (default: all
    non-key columns given) to the new values."""
    sample = values if isinstance(values, Mapping) else values[0]
    columns = update if update is not None else [c for c in sample if c not in keys]
    if isinstance(values, Mapping):
        stmt = _statement(conn, table, tuple(keys), tuple(columns),
                          tuple(returning) if returning is not None else None)
        return conn.execute(stmt, dict(values))
    return conn.execute(_on_conflict(insert_for(conn, table).values(values), keys, columns,
                                     returning))
