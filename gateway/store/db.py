"""Opening the database: engines for SQLite (WAL) and PostgreSQL, and applying migrations.

The embedded default keeps its files private to the owner: the instance folder is created
0700, and a SQLite database file is created 0600 before SQLite opens it. SQLite gives the
``-wal`` and ``-shm`` files it makes later the main file's permissions, so they are 0600 too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gateway.settings import Settings, SettingsError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


#: The files SQLite keeps beside a database file.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def sqlite_file(url: str) -> Path | None:
    """The database file a ``sqlite://`` URL names; None for in-memory and ``file:`` URIs."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only (0600) unless it exists (SQLite accepts an empty
    file as a new database). A missing folder is a :class:`SettingsError` naming the file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise SettingsError(f"cannot create the SQLite database {path}: "
                            f"{exc.strerror or exc}") from None
    os.close(fd)


def prepare_instance_folder(path: Path) -> None:
    """Create the instance folder owner-only (0700), or check that an existing one is a
    folder this process can write; anything else is a :class:`SettingsError`."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"GATEWAY_INSTANCE_PATH {str(path)!r} cannot be used as the "
                            f"instance folder: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"GATEWAY_INSTANCE_PATH {str(path)!r} is not writable by this "
                            "process")


def _restrict_existing(database: Path) -> None:
    """Tighten the embedded database's files left readable by others by an older release."""
    for suffix in SQLITE_COMPANIONS:
        path = database.with_name(database.name + suffix)
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(path, 0o600)
                log.warning("made %s owner-only (it was %o)", path, mode)
        except FileNotFoundError:
            continue


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout, and a new
    database file is created owner-only (0600) first."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            create_private_file(path)
        engine = create_engine(url, connect_args={"timeout": LOCK_WAIT_SECONDS,
                                                  "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Deleted and overwritten content is zeroed, so an erased customer's data does not
            # linger in free space (gateway/store/erasure.py).
            cursor.execute("PRAGMA secure_delete=ON")
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
    """The configured database, created and migrated on first start when it is SQLite (the
    embedded default or a file ``GATEWAY_DATABASE_URL`` names).

    ``migrate`` None means: migrate automatically on SQLite only; a server database
    (PostgreSQL) is migrated by ``python app.py db upgrade`` (or ``migrate=True``), so that
    several processes of a new release never race to migrate it.
    """
    if settings.embedded:
        prepare_instance_folder(settings.instance_path)
        _restrict_existing(settings.sqlite_path)
    engine = make_engine(settings.effective_database_url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
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


#: SQLite: how often a writer tries for the write lock while another writer holds it, and
#: for how long (the engine's busy timeout) before it gives up.
LOCK_POLL_SECONDS = 0.0005
LOCK_WAIT_SECONDS = 30.0
_SQLITE_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def begin_immediate(conn: Connection) -> None:
    """``BEGIN IMMEDIATE`` on a SQLite connection whose busy timeout is 0, tried every
    :data:`LOCK_POLL_SECONDS` until the write lock is free (at most
    :data:`LOCK_WAIT_SECONDS`). SQLite's own busy handler sleeps up to 100 ms between tries,
    and so misses the short gaps a busy writer (the webhook drainer) leaves between its
    transactions. Used by the accept path's group commit, on a connection of its own; other
    writers keep the busy handler (polling from every writer starved some of them).

    The tries go to the driver's connection (a refused one costs a few microseconds instead
    of SQLAlchemy's handling of an error); the last, at the deadline, goes through ``conn``,
    so that a lock never freed raises SQLAlchemy's :class:`OperationalError` as before."""
    driver = conn.connection.driver_connection
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _SQLITE_BUSY:
                break  # not the lock: raised below, as SQLAlchemy's
        time.sleep(LOCK_POLL_SECONDS)
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError:
        conn.rollback()
        raise


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement, committed at the end
    of the block (rolled back on an error).

    On SQLite it starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then
    writes can find another writer got there first and fail with "database is locked" instead
    of waiting; an immediate one waits for the lock (the busy timeout) before it reads. On
    PostgreSQL it is a plain transaction (row locks do the work there).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()
