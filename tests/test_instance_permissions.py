"""The embedded default's files are the owner's alone: the instance folder 0700, the SQLite
database and its -wal/-shm files 0600, like ``secret.key``, whatever the process umask."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Iterator

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import tenants

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def permissive_umask() -> Iterator[None]:
    """The common default umask, under which files are made world-readable unless the code
    asks for less."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_fresh_instance_is_owner_only(tmp_path, permissive_umask):
    instance = tmp_path / "deploy" / "instance"
    rt = Runtime.open(Settings.from_env({"GATEWAY_INSTANCE_PATH": str(instance)}))
    try:
        with rt.engine.begin() as conn:  # a write, so SQLite has its -wal and -shm files
            tenants.create_tenant(conn, "Private shop")
        database = rt.settings.sqlite_path
        companions = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in companions)
        assert mode(instance) == 0o700
        assert {p.name: mode(p) for p in [database, *companions, instance / "secret.key"]} == {
            "gateway.db": 0o600, "gateway.db-wal": 0o600, "gateway.db-shm": 0o600,
            "secret.key": 0o600}
    finally:
        rt.close()


def test_a_database_left_world_readable_is_made_owner_only(tmp_path, permissive_umask):
    instance = tmp_path / "instance"
    instance.mkdir()
    old = sqlite3.connect(instance / "gateway.db")  # as an older release left it: 0644
    old.execute("CREATE TABLE leftover (x)")
    old.commit()
    old.close()
    assert mode(instance / "gateway.db") == 0o644
    rt = Runtime.open(Settings.from_env({"GATEWAY_INSTANCE_PATH": str(instance)}))
    try:
        assert mode(instance / "gateway.db") == 0o600
    finally:
        rt.close()


def test_a_new_sqlite_file_elsewhere_is_owner_only(tmp_path, permissive_umask):
    path = tmp_path / "elsewhere.db"
    settings = Settings.from_env({"GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"),
                                  "GATEWAY_DATABASE_URL": f"sqlite:///{path}"})
    rt = Runtime.open(settings, migrate=True)
    try:
        assert mode(path) == 0o600
    finally:
        rt.close()
