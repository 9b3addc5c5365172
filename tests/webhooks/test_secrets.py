"""Webhook secrets: the command prints and rotates them, and they are encrypted at rest (a
raw-bytes scan of the SQLite file, as tests/test_secrets_at_rest.py does for credentials)."""

from __future__ import annotations

import subprocess

from sqlalchemy import text

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import tenants
from gateway.store.db import write_transaction
from gateway.webhooks.secrets import ensure_secret, load_secrets, rotate_secret
from tests.conftest import ROOT


def run(python, env, *args):  # noqa: ANN001, ANN201
    return subprocess.run([python, "-m", "gateway.webhooks.commands", "webhooks", *args],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_command_prints_and_rotates_the_secret(python, gateway_env, engine, runtime,
                                                   signed_tenant):
    shown = run(python, gateway_env, "secret", signed_tenant.id)
    assert shown.returncode == 0 and shown.stdout.strip() == signed_tenant.secret
    rotated = run(python, gateway_env, "secret", signed_tenant.id, "--rotate")
    new = rotated.stdout.strip()
    assert rotated.returncode == 0 and new.startswith("whsec_") and new != signed_tenant.secret
    with engine.connect() as conn:
        stored = load_secrets(conn, runtime.vault, signed_tenant.id)
    assert (stored.current, stored.previous) == (new, signed_tenant.secret)
    unknown = run(python, gateway_env, "secret", "ten_nobody")
    assert unknown.returncode != 0 and "no such tenant" in unknown.stderr


def test_no_webhook_secret_in_the_database_file(tmp_path):
    settings = Settings.from_env({}, instance_path=tmp_path, database_url=None, secret_key=None)
    rt = Runtime.open(settings)
    try:
        with write_transaction(rt.engine) as conn:
            tenant = tenants.create_tenant(conn, "Canary shop site-1")
            first = ensure_secret(conn, rt.vault, tenant.id).current
            second = rotate_secret(conn, rt.vault, tenant.id).current
        with rt.engine.connect() as conn:
            assert load_secrets(conn, rt.vault, tenant.id).previous == first
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        rt.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert b"Canary shop site-1" in raw  # the scan sees stored text at all
    for secret in (first, second):
        assert secret.encode() not in raw
        assert secret[len("whsec_"):].encode() not in raw  # nor its base64 part alone
