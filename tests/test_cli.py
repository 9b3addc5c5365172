"""The commands, run as a user would: ``python app.py ...`` in a new process."""

import json
import socket
import subprocess
import time

import requests

from tests.conftest import ROOT


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
    again = run(python, gateway_env, "keys", "revoke", zapier["key_id"], check=False)
    assert again.returncode != 0 and "error" in json.loads(again.stdout)

    defaults = one_json_line(run(python, gateway_env, "tenants", "settings", tenant))
    assert defaults["base_currency"] == "USD" and defaults["default_gap_days"] == 60
    changed = one_json_line(run(python, gateway_env, "tenants", "settings", tenant,
                                "base_currency=BHD", "lost_after=8",
                                'pull_interval_minutes={"rekindle-poll": 5}'))
    assert changed["base_currency"] == "BHD" and changed["lost_after"] == 8
    assert changed["pull_interval_minutes"]["rekindle-poll"] == 5
    refused = run(python, gateway_env, "tenants", "settings", tenant, "consent_basis=whenever",
                  check=False)
    assert refused.returncode == 2
    assert "consent_basis" in json.loads(refused.stdout)["errors"]
    unchanged = one_json_line(run(python, gateway_env, "tenants", "settings", tenant))
    assert unchanged == changed

    unknown = run(python, gateway_env, "tenants", "settings", "ten_nope", check=False)
    assert unknown.returncode == 2 and "ten_nope" in json.loads(unknown.stdout)["error"]


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
    env = {**gateway_env, "GATEWAY_DATABASE_URL": new_database("gw_unmigrated")}
    refused = run(python, env, "tenants", "create", "Too early", check=False)
    assert refused.returncode == 2
    assert "db upgrade" in json.loads(refused.stdout)["error"]
    assert "Traceback" not in refused.stderr
    run(python, env, "db", "upgrade")
    assert one_json_line(run(python, env, "tenants", "create", "In time"))["tenant_id"]
