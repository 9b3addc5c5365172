"""The commands, run as a user would: ``python app.py ...`` in a new process.

A result is one JSON line on stdout; every failure is one JSON line on stderr, exit status 2,
nothing on stdout and never a traceback.
"""

import json
import os
import socket
import subprocess
import time

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import ROOT, postgres_base_url


def run(python, env, *args, check=True):
    result = subprocess.run([python, str(ROOT / "app.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def one_json_line(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def one_json_error(result):
    """The failure's one JSON line on stderr (exit 2, no output, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])
    assert isinstance(error["error"], str) and error["error"]
    return error


def fails(python, env, *args):
    return one_json_error(run(python, env, *args, check=False))


def test_tenants_keys_and_settings_commands(python, gateway_env):
    created = one_json_line(run(python, gateway_env, "tenants", "create", "Corner shop"))
    assert set(created) == {"tenant_id", "key_id", "api_key", "scope"}
    assert created["api_key"].startswith("gk_live_") and created["scope"] == "admin"
    tenant = created["tenant_id"]

    zapier = one_json_line(run(python, gateway_env, "keys", "create", tenant, "--scope", "zapier"))
    assert set(zapier) == {"tenant_id", "key_id", "api_key", "scope"}
    assert zapier["scope"] == "zapier" and zapier["api_key"] != created["api_key"]

    listed = run(python, gateway_env, "keys", "list", tenant)
    assert created["api_key"] not in listed.stdout and zapier["api_key"] not in listed.stdout
    rows = json.loads(listed.stdout)
    assert {r["key_id"] for r in rows} == {created["key_id"], zapier["key_id"]}
    assert all(r["prefix"] and "last_used_at" in r for r in rows)

    revoked = one_json_line(run(python, gateway_env, "keys", "revoke", zapier["key_id"]))
    assert revoked == {"key_id": zapier["key_id"], "revoked": True}
    assert zapier["key_id"] in fails(python, gateway_env, "keys", "revoke", zapier["key_id"])[
        "error"]

    defaults = one_json_line(run(python, gateway_env, "tenants", "settings", tenant))
    assert defaults["base_currency"] == "USD" and defaults["default_gap_days"] == 60
    changed = one_json_line(run(python, gateway_env, "tenants", "settings", tenant,
                                "base_currency=BHD", "lost_after=8",
                                'pull_interval_minutes={"rekindle-poll": 5}'))
    assert changed["base_currency"] == "BHD" and changed["lost_after"] == 8
    assert changed["pull_interval_minutes"]["rekindle-poll"] == 5
    refused = fails(python, gateway_env, "tenants", "settings", tenant, "consent_basis=whenever")
    assert "consent_basis" in refused["errors"]
    unchanged = one_json_line(run(python, gateway_env, "tenants", "settings", tenant))
    assert unchanged == changed

    assert "ten_nope" in fails(python, gateway_env, "tenants", "settings", "ten_nope")["error"]


def test_db_upgrade_command(python, gateway_env):
    result = run(python, gateway_env, "db", "upgrade")
    assert one_json_line(result)["database"] == "migrated"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_with_a_key_made_by_the_command(python, gateway_env):
    created = one_json_line(run(python, gateway_env, "tenants", "create", "Served shop"))
    port = _free_port()
    server = subprocess.Popen([python, str(ROOT / "app.py"), "serve", "--port", str(port)],
                              env=gateway_env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        me = requests.get(f"{base}/api/v1/me", timeout=5,
                          headers={"Authorization": f"Bearer {created['api_key']}"})
        assert me.status_code == 200 and me.json()["tenant_id"] == created["tenant_id"]
        assert requests.get(f"{base}/api/v1/me", timeout=5).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_unmigrated_external_database_is_a_clear_error_at_start(python, gateway_env,
                                                                  new_database):
    if not os.environ.get("GATEWAY_TEST_DATABASE_URL", "").strip():
        pytest.skip("a SQLite database migrates itself (tests/test_sqlite_url_migrates.py); "
                    "only a server database needs `db upgrade`")
    env = {**gateway_env, "GATEWAY_DATABASE_URL": new_database("gw_unmigrated")}
    assert "db upgrade" in fails(python, env, "tenants", "create", "Too early")["error"]
    run(python, env, "db", "upgrade")
    assert one_json_line(run(python, env, "tenants", "create", "In time"))["tenant_id"]


# --- every failure is one JSON line on stderr ---------------------------------------------

UNREACHABLE_POSTGRES = "postgresql+psycopg://gateway:hunter2-not-shown@127.0.0.1:1/gateway"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["tenants", "create", "Shop"],
                                     ["keys", "list", "ten_x"]])
def test_an_unreachable_postgresql_is_a_json_error_without_the_password(python, gateway_env,
                                                                        command):
    env = {**gateway_env, "GATEWAY_DATABASE_URL": UNREACHABLE_POSTGRES}
    result = run(python, env, *command, check=False)
    error = one_json_error(result)["error"]
    assert error.startswith("database error:") and "127.0.0.1" in error
    assert "hunter2" not in result.stderr


@pytest.mark.skipif(not postgres_base_url(), reason="needs a PostgreSQL server")
def test_a_missing_database_on_a_live_server_is_a_json_error(python, gateway_env):
    url = make_url(postgres_base_url()).set(database="gw_no_such_database_here")
    env = {**gateway_env, "GATEWAY_DATABASE_URL": url.render_as_string(hide_password=False)}
    error = fails(python, env, "db", "upgrade")["error"]
    assert "gw_no_such_database_here" in error and "does not exist" in error


def test_a_malformed_database_url_is_a_json_error_without_the_password(python, gateway_env):
    env = {**gateway_env,
           "GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:hunter2-not-shown@h:port/db"}
    result = run(python, env, "db", "upgrade", check=False)
    assert "GATEWAY_DATABASE_URL" in one_json_error(result)["error"]
    assert "hunter2" not in result.stderr


def test_sqlite_errors_are_json_errors(python, gateway_env, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file, but it is long enough to look like one " * 20)
    for url in (f"sqlite:///{junk}", f"sqlite:///{tmp_path}",  # a file, then a folder
                f"sqlite:///{tmp_path}/missing/folder/gateway.db"):
        error = fails(python, {**gateway_env, "GATEWAY_DATABASE_URL": url}, "db", "upgrade")
        assert "database" in error["error"], url


def _embedded(gateway_env, instance) -> dict:
    env = {k: v for k, v in gateway_env.items()
           if k not in ("GATEWAY_DATABASE_URL", "GATEWAY_SECRET_KEY")}
    return {**env, "GATEWAY_INSTANCE_PATH": str(instance)}


def test_an_instance_path_that_cannot_be_a_folder_is_a_json_error(python, gateway_env, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for instance in (a_file, a_file / "below"):
        error = fails(python, _embedded(gateway_env, instance), "tenants", "create", "Shop")
        assert "GATEWAY_INSTANCE_PATH" in error["error"] and str(instance) in error["error"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions that bind this user (not root)")
def test_an_unwritable_instance_path_is_a_json_error(python, gateway_env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        for instance in (locked, locked / "instance"):
            error = fails(python, _embedded(gateway_env, instance), "tenants", "create", "Shop")
            assert "GATEWAY_INSTANCE_PATH" in error["error"]
    finally:
        locked.chmod(0o700)


def test_bad_setting_values_are_json_errors(python, gateway_env):
    tenant = one_json_line(run(python, gateway_env, "tenants", "create", "Values"))["tenant_id"]
    nested = "pull_interval_minutes=" + "[" * 1000 + "1" + "]" * 1000
    cases = {
        nested: "pull_interval_minutes",
        "pull_interval_minutes=" + "[" * 100000: "pull_interval_minutes",
        "default_gap_days=" + "9" * 5000: "default_gap_days",
        "default_gap_days=1e999": "default_gap_days",
        "lost_after=NaN": "lost_after",
        "at_risk_after=Infinity": "at_risk_after",
        'pull_interval_minutes={"rescore": ': "pull_interval_minutes",
        'pull_interval_minutes={"rescore": 1e400}': "pull_interval_minutes",
        "base_currency=[]": "base_currency",
        "no_such_setting=1": "no_such_setting",
        "=5": "=5",
        "just-a-word": "just-a-word",
    }
    for assignment, key in cases.items():
        error = fails(python, gateway_env, "tenants", "settings", tenant, assignment)
        assert error["error"] == "invalid settings" and key in error["errors"], assignment
    assert one_json_line(run(python, gateway_env, "tenants", "settings", tenant))[
        "pull_interval_minutes"]["rescore"] == 1440


def test_an_unknown_tenant_is_a_json_error_for_every_command(python, gateway_env):
    for command in (["tenants", "settings", "ten_nope"],
                    ["tenants", "settings", "ten_nope", "default_gap_days=5"],
                    ["keys", "create", "ten_nope"], ["keys", "list", "ten_nope"],
                    ["rescore", "--tenant", "ten_nope"]):
        assert "ten_nope" in fails(python, gateway_env, *command)["error"], command


@pytest.mark.parametrize("command", [[], ["nonsense"], ["tenants"], ["tenants", "settings"],
                                     ["keys", "create", "t", "--scope", "root"],
                                     ["serve", "--port", "99999"], ["serve", "--bogus"],
                                     ["sandbox", "nobody"]])
def test_usage_errors_are_one_json_line(python, gateway_env, command):
    error = fails(python, gateway_env, *command)
    assert error["error"].startswith("python app.py") and error["usage"].startswith("usage:")


def test_help_still_prints_help(python, gateway_env):
    result = run(python, gateway_env, "--help")
    assert "tenants" in result.stdout and result.stderr == ""


def test_an_unexpected_failure_is_a_generic_json_error(python, gateway_env, database_url):
    """Stored settings an older or hand-edited database left in a shape no release wrote."""
    tenant = one_json_line(run(python, gateway_env, "tenants", "create", "Odd"))["tenant_id"]
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE tenants SET settings = :bad WHERE id = :id"),
                         {"bad": "[1, 2, 3]", "id": tenant})
    finally:
        engine.dispose()
    error = fails(python, gateway_env, "tenants", "settings", tenant)
    assert error == {"error": "the command failed unexpectedly", "type": "TypeError"}

