"""A SQLite database named by ``GATEWAY_DATABASE_URL`` is created and migrated on first use,
as the embedded default is; only a server database needs ``python app.py db upgrade`` first
(tests/test_cli.py holds PostgreSQL to its clear error)."""

from __future__ import annotations

import json
import stat
import subprocess

from gateway.store import db
from tests.conftest import ROOT


def _run(python, env, *args):
    result = subprocess.run([python, str(ROOT / "app.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_fresh_sqlite_url_is_created_and_migrated_on_first_use(python, gateway_env, tmp_path):
    path = tmp_path / "named.db"
    env = {**gateway_env, "GATEWAY_DATABASE_URL": f"sqlite:///{path}"}
    assert not path.exists()

    created = _run(python, env, "tenants", "create", "First use")
    assert created["tenant_id"] and created["api_key"].startswith("gk_live_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    listed = _run(python, env, "keys", "list", created["tenant_id"])
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    # Already at the head: `db upgrade` is harmless and says where it is.
    assert _run(python, env, "db", "upgrade")["revision"] == db.head_revision()
