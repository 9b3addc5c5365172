"""Opening the database: engines for SQLite (WAL) and PostgreSQL, and applying migrations."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text

from gateway.settings import Settings, SettingsError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's config for our migrations; ``env.py`` runs them on ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; a database already there is left unchanged."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_engine(settings: Settings, *, migrate: bool | None = None) -> Engine:
    """The configured database, created and migrated on first start for the embedded default.

    ``migrate`` None means: migrate automatically on the embedded SQLite default only; an
    external database is migrated by ``python app.py db upgrade`` (or ``migrate=True``).
    """
    if settings.embedded:
        settings.instance_path.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    if migrate is None:
        migrate = settings.embedded
    at, head = current_revision(engine), head_revision()
    if at != head:
        if not migrate:
            engine.dispose()
            raise SettingsError(
                f"the database is at migration {at or 'none'} but this release needs {head}: "
                "run `python app.py db upgrade` first"
            )
        upgrade(engine)
    return engine


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any driver error means "not ready"
        log.warning("database ping failed", exc_info=True)
        return False
