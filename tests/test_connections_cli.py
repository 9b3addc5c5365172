"""``connections set|list|check|delete|reencrypt`` as real processes, against the four sandboxes
over real HTTP and the run's database: the credential only ever from GATEWAY_CONNECTION_KEY or
standard input, never in any output, and re-encryptable after a key rotation.

The commands run as ``python app.py connections ...`` once gateway/cli.py registers them
(:func:`gateway.connections_cli.add_commands`), and as ``python -m gateway.connections_cli
connections ...`` until then: the same commands, the same error handling.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import tenants
from tests.conftest import ROOT
from tests.test_connections_api import CASES, DOCUMENTED_PATHS, KEYS, WRONG_KEY, sandboxes

__all__ = ["sandboxes"]  # the module-scoped fixture, shared with the API tests

OLD_KEY = "old-rotation-key-" + "o" * 32
NEW_KEY = "new-rotation-key-" + "n" * 32


def command() -> list[str]:
    wired = "connections_cli" in (ROOT / "gateway" / "cli.py").read_text()
    if wired:
        return [sys.executable, str(ROOT / "app.py")]
    return [sys.executable, "-m", "gateway.connections_cli"]


class Cli:
    """Runs ``connections ...`` commands with the test's environment; every output is kept
    so a test can assert no secret ever appeared in any of it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.outputs: list[str] = []

    def __call__(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*command(), "connections", *args], input=stdin,
                              capture_output=True, text=True, timeout=120, cwd=self.cwd,
                              env={**self.env, **env})
        self.outputs += [done.stdout, done.stderr]
        return done

    def json(self, *args: str, stdin: str = "", status: int = 0, **env: str) -> Any:
        done = self(*args, stdin=stdin, **env)
        assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
        stream = done.stdout if status in (0, 1) else done.stderr
        return json.loads(stream.strip().splitlines()[-1])

    def assert_never_shown(self, *secrets: str) -> None:
        for text in self.outputs:
            for secret in secrets:
                assert secret not in text


@pytest.fixture
def cli(gateway_env, tmp_path) -> Cli:
    return Cli(gateway_env, tmp_path)


def set_args(name: str, tenant_id: str, base_url: str) -> list[str]:
    options = CASES[name][1]
    extra = []
    if "site_id" in options:
        extra += ["--site-id", options["site_id"]]
    if "tenant_id" in options:
        extra += ["--tenant-id", options["tenant_id"]]
    return ["set", tenant_id, name, "--base-url", base_url, *extra]


# ------------------------------------------------------------------ each sandbox


@pytest.mark.parametrize("name", list(CASES))
def test_set_then_check_with_the_right_and_the_wrong_key(cli, tenant, sandboxes, name):
    sandbox = sandboxes[name]
    made = cli.json(*set_args(name, tenant.id, sandbox.url), stdin=KEYS[name] + "\n")
    assert made["base_url"] == sandbox.url + DOCUMENTED_PATHS[name]
    assert made["credentials_set"] is True and made["set_via"] == "cli"

    good = cli.json("check", tenant.id, name)
    assert good["ok"] is True, good

    cli.json(*set_args(name, tenant.id, sandbox.url), GATEWAY_CONNECTION_KEY=WRONG_KEY)
    bad = cli.json("check", tenant.id, name, status=1)
    assert bad["ok"] is False and "refused" in bad["detail"] and "401" in bad["detail"]
    cli.assert_never_shown(KEYS[name], WRONG_KEY)


def test_rejoiner_gets_its_documented_path_whichever_way_the_url_is_written(cli, tenant,
                                                                           sandboxes):
    root = sandboxes["rejoiner"].url
    site = CASES["rejoiner"][1]["site_id"]
    for given in (root, root + "/", root + "/api/v1", f"{root}/api/v1/{site}/"):
        made = cli.json(*set_args("rejoiner", tenant.id, given), stdin=KEYS["rejoiner"])
        assert made["base_url"] == f"{root}/api/v1/{site}", given
    assert cli.json("check", tenant.id, "rejoiner")["ok"] is True
    refused = cli.json(*set_args("rejoiner", tenant.id, f"{root}/api/v1/other-site"),
                       stdin=KEYS["rejoiner"], status=2)
    assert "only scheme, host and port" in refused["error"]


def test_defaults_are_the_documented_urls(cli, tenant):
    made = cli.json("set", tenant.id, "rejoiner", "--site-id", "s9", "--currency", "gbp",
                    stdin="k" * 20)
    assert made["base_url"] == "https://rj2.rejoiner.com/api/v1/s9"
    assert made["options"] == {"site_id": "s9", "currency": "GBP"}
    made = cli.json("set", tenant.id, "rci", stdin="t" * 20)
    assert made["base_url"] == "https://repeat-customer-insights.littlestreamsoftware.com/api/v1"
    made = cli.json("set", tenant.id, "replenit", "--tenant-id", replenit_guid(),
                    stdin="k" * 20)
    assert made["base_url"] == "https://api.replen.it"


def replenit_guid() -> str:
    return CASES["replenit"][1]["tenant_id"]


# ------------------------------------------------------------------ the credential's ways in


def test_a_json_object_on_stdin_names_the_fields(cli, tenant, sandboxes):
    url = sandboxes["rci"].url
    body = json.dumps({"api_token": KEYS["rci"]})
    cli.json(*set_args("rci", tenant.id, url), stdin=body)
    assert cli.json("check", tenant.id, "rci")["ok"] is True
    wrong = cli.json(*set_args("rci", tenant.id, url),
                     stdin=json.dumps({"api_token": KEYS["rci"], "secret": "x" * 20}), status=2)
    assert "secret: not a credential of rci" in wrong["error"]
    broken = cli.json(*set_args("rci", tenant.id, url), stdin='{"api_token": ', status=2)
    assert "not a JSON object" in broken["error"]
    cli.assert_never_shown(KEYS["rci"])


def test_the_environment_variable_wins_over_stdin(cli, tenant, sandboxes):
    url = sandboxes["rekindle"].url
    cli.json(*set_args("rekindle", tenant.id, url), stdin=WRONG_KEY,
             GATEWAY_CONNECTION_KEY=KEYS["rekindle"])
    assert cli.json("check", tenant.id, "rekindle")["ok"] is True


def test_no_credential_is_an_error(cli, tenant):
    for stdin in ("", "  \n"):
        failed = cli.json("set", tenant.id, "rci", stdin=stdin, status=2)
        assert "no credential" in failed["error"] and "GATEWAY_CONNECTION_KEY" in failed["error"]
    assert cli.json("list", tenant.id) == []


def running_cmdline(pid: int) -> bytes:
    """The process's command line once it has started (right after the fork it is empty)."""
    deadline = time.monotonic() + 60
    while True:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"connections" in cmdline or time.monotonic() > deadline:
            return cmdline
        time.sleep(0.01)


def test_the_credential_is_not_in_the_process_list(gateway_env, tenant, tmp_path):
    secret = "rk_live_process_list_canary_0123456789"
    process = subprocess.Popen([*command(), "connections", "set", tenant.id, "rekindle"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=gateway_env, cwd=tmp_path)
    try:
        cmdline = running_cmdline(process.pid)  # while it waits for the credential
        out, err = process.communicate(secret, timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert secret.encode() not in cmdline and b"rekindle" in cmdline
    assert secret not in out and secret not in err


def test_the_credential_is_never_an_argument(cli, tenant):
    failed = cli("set", tenant.id, "rekindle", "--api-key", "x" * 20)
    assert failed.returncode == 2 and "usage" in json.loads(failed.stderr.splitlines()[-1])


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("args, words", [
    (["rejoiner"], "site_id: required"),
    (["rejoiner", "--site-id", "a b"], "site_id: must be"),
    (["replenit"], "tenant_id: required"),
    (["replenit", "--tenant-id", "1234"], "tenant_id: must be a GUID"),
    (["rekindle", "--currency", "ZZZ"], "currency: must be an ISO 4217"),
    (["rekindle", "--site-id", "s1"], "site_id: not an option of rekindle"),
    (["rci", "--currency", "USD"], "currency: not an option of rci"),
    (["rekindle", "--base-url", "https://rekindle.business/api/v2"], "only scheme, host"),
    (["rekindle", "--base-url", "https://me:pw@rekindle.business"], "user name or password"),
    (["rekindle", "--base-url", "ftp://rekindle.business"], "https://"),
    (["rekindle", "--base-url", "https://rekindle.business/?x=1"], "query"),
])
def test_invalid_settings_fail_before_anything_is_stored(cli, tenant, args, words):
    failed = cli.json("set", tenant.id, *args, stdin="k" * 20, status=2)
    assert failed["error"].startswith("invalid connection") and words in failed["error"]
    assert cli.json("list", tenant.id) == []


def test_an_unknown_tenant_or_connector(cli):
    assert cli.json("set", "ten_nope", "rci", stdin="k" * 20,
                    status=2)["error"] == "no tenant 'ten_nope'"
    assert "invalid choice" in cli.json("set", "ten_nope", "mailchimp", stdin="k",
                                        status=2)["error"]
    assert cli.json("list", "ten_nope", status=2)["error"] == "no tenant 'ten_nope'"


# ------------------------------------------------------------------ list and delete


def test_list_and_delete_never_show_the_secret(cli, tenant):
    cli.json("set", tenant.id, "rci", stdin="rci_listing_secret_0123456789")
    cli.json("set", tenant.id, "rekindle", GATEWAY_CONNECTION_KEY="rk_listing_secret_012345")
    listed = cli.json("list", tenant.id)
    assert [c["connector"] for c in listed] == ["rci", "rekindle"]
    assert listed[0]["credential_hints"] == {"api_token": "…6789"}
    assert cli.json("delete", tenant.id, "rci") == {"tenant_id": tenant.id, "connector": "rci",
                                                   "deleted": True}
    assert [c["connector"] for c in cli.json("list", tenant.id)] == ["rekindle"]
    assert "no rci connection" in cli.json("delete", tenant.id, "rci", status=2)["error"]
    assert "no rci connection" in cli.json("check", tenant.id, "rci", status=2)["error"]
    cli.assert_never_shown("rci_listing_secret_0123456789", "rk_listing_secret_012345")


# ------------------------------------------------------------------ key rotation


@pytest.fixture
def rotation_db(new_database, tmp_path) -> tuple[str, str]:
    """A database of its own (re-encryption touches every tenant's rows), with a tenant."""
    url = new_database("gw_rotate")
    rt = Runtime.open(Settings.from_env({}, instance_path=tmp_path / "rot", database_url=url,
                                        secret_key=OLD_KEY), migrate=True)
    try:
        with rt.engine.begin() as conn:
            tenant = tenants.create_tenant(conn, "Rotating shop")
    finally:
        rt.close()
    return url, tenant.id


def test_reencrypt_after_a_rotation_lets_the_old_key_go(cli, rotation_db, sandboxes):
    url, tenant_id = rotation_db
    cli.env = {**cli.env, "GATEWAY_DATABASE_URL": url}
    for name in ("rci", "replenit"):
        cli.json(*set_args(name, tenant_id, sandboxes[name].url), stdin=KEYS[name],
                 GATEWAY_SECRET_KEY=OLD_KEY)

    # Only the new key, before re-encrypting: the credentials cannot be read.
    unread = cli.json("list", tenant_id, GATEWAY_SECRET_KEY=NEW_KEY)
    assert [c["credentials_readable"] for c in unread] == [False, False]
    failed = cli.json("check", tenant_id, "rci", status=1, GATEWAY_SECRET_KEY=NEW_KEY)
    assert "cannot be decrypted" in failed["detail"]

    assert cli.json("reencrypt", GATEWAY_SECRET_KEY=f"{NEW_KEY},{OLD_KEY}") == {
        "reencrypted": 2}

    readable = cli.json("list", tenant_id, GATEWAY_SECRET_KEY=NEW_KEY)
    assert [c["credentials_readable"] for c in readable] == [True, True]
    for name in ("rci", "replenit"):
        assert cli.json("check", tenant_id, name, GATEWAY_SECRET_KEY=NEW_KEY)["ok"] is True
    assert cli.json("list", tenant_id, GATEWAY_SECRET_KEY=OLD_KEY)[0][
        "credentials_readable"] is False
    cli.assert_never_shown(OLD_KEY, NEW_KEY, KEYS["rci"], KEYS["replenit"])


def test_reencrypt_reports_what_no_key_decrypts(cli, rotation_db):
    url, tenant_id = rotation_db
    cli.env = {**cli.env, "GATEWAY_DATABASE_URL": url}
    cli.json("set", tenant_id, "rci", stdin="t" * 20, GATEWAY_SECRET_KEY=OLD_KEY)
    failed = cli.json("reencrypt", status=2, GATEWAY_SECRET_KEY=NEW_KEY)
    assert "re-encrypted 0; 1 cannot be decrypted" in failed["error"]
    assert cli.json("reencrypt", GATEWAY_SECRET_KEY=OLD_KEY) == {"reencrypted": 1}
    cli.assert_never_shown(OLD_KEY, NEW_KEY)


def test_reencrypt_keeps_what_it_does_not_need_to_touch(cli, rotation_db):
    url, tenant_id = rotation_db
    cli.env = {**cli.env, "GATEWAY_DATABASE_URL": url}
    made = cli.json("set", tenant_id, "rci", stdin="t" * 20, GATEWAY_SECRET_KEY=OLD_KEY)
    cli.json("reencrypt", GATEWAY_SECRET_KEY=f"{NEW_KEY},{OLD_KEY}")
    after = cli.json("list", tenant_id, GATEWAY_SECRET_KEY=NEW_KEY)[0]
    assert after["updated_at"] == made["updated_at"] and after["options"] == made["options"]
