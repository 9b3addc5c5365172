"""Migrations apply to an empty database, again change nothing, and match the tables."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from gateway.store import db
from gateway.store.tables import metadata


def _schema(engine) -> dict:
    insp = inspect(engine)
    return {
        table: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)),
            sorted(str(sorted(i["column_names"])) for i in insp.get_indexes(table)),
            sorted(str(sorted(u["column_names"])) for u in insp.get_unique_constraints(table)),
        )
        for table in sorted(insp.get_table_names())
    }


def test_migrations_apply_to_an_empty_database_and_again_change_nothing(new_database):
    engine = db.make_engine(new_database("gw_migrate"))
    try:
        assert inspect(engine).get_table_names() == []
        db.upgrade(engine)
        first = _schema(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert {"tenants", "customers", "orders", "events", "deliveries", "schedules",
                "dedupe_keys", "connections", "sync_runs", "api_keys"} <= set(first)
        db.upgrade(engine)
        assert _schema(engine) == first
        assert db.current_revision(engine) == db.head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"tables.py and the migrations disagree: {diff}"
    finally:
        engine.dispose()
