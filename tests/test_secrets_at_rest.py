"""No API key and no connector credential is stored in plaintext: scan the SQLite file's bytes."""

from sqlalchemy import text

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import connections, keys, tenants

KNOWN_CREDENTIALS = {
    "rekindle": {"api_key": "rk_live_PLAINTEXT_CANARY_rekindle_0123456789"},
    "rejoiner": {"api_key": "rj_PLAINTEXT_CANARY_rejoiner_0123456789"},
    "rci": {"api_key": "rci_PLAINTEXT_CANARY_0123456789"},
    "replenit": {"api_key": "rp_PLAINTEXT_CANARY_replenit_0123456789"},
}


def test_no_secret_in_the_database_file(tmp_path):
    # Always a SQLite file, whatever database the run uses: the test reads the file's bytes.
    settings = Settings.from_env({}, instance_path=tmp_path, database_url=None, secret_key=None)
    rt = Runtime.open(settings)
    try:
        with rt.engine.begin() as conn:
            tenant = tenants.create_tenant(conn, "Canary shop")
            made = [keys.create_key(conn, tenant.id, scope).api_key
                    for scope in ("admin", "zapier")]
            for connector, secret in KNOWN_CREDENTIALS.items():
                connections.save_connection(conn, rt.vault, tenant.id, connector,
                                            "https://example.test", secret,
                                            {"site_id": "site-1"})
        with rt.engine.connect() as conn:
            assert connections.get_connection(conn, rt.vault, tenant.id, "rci").credentials == \
                KNOWN_CREDENTIALS["rci"]
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        rt.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert raw, "the database file is missing"
    assert b"site-1" in raw  # the scan sees stored text at all
    for secret in [*made, *(v["api_key"] for v in KNOWN_CREDENTIALS.values())]:
        assert secret.encode() not in raw
    for key in made:  # nor a key's secret part on its own (after gk_live_<prefix>_)
        secret_part = key[len(keys.KEY_PREFIX) + 9:]
        assert len(secret_part) == 32 and secret_part.encode() not in raw
    key_file = tmp_path / "secret.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o077) == 0


def test_no_rest_hook_secret_in_the_database_file(tmp_path):
    """REST-hook signing secrets are stored as Fernet tokens, like connection credentials."""
    from gateway.hooks import store as hook_store

    settings = Settings.from_env({}, instance_path=tmp_path, database_url=None, secret_key=None)
    rt = Runtime.open(settings)
    try:
        with rt.engine.begin() as conn:
            tenant = tenants.create_tenant(conn, "Canary hooks")
            made = [hook_store.create_subscription(
                conn, rt.vault, tenant.id, event="order.placed",
                target_url=f"https://hooks.example.test/canary-{n}")
                for n in range(3)]
        with rt.engine.connect() as conn:
            for sub, secret in made:
                assert hook_store.secret_of(conn, rt.vault, tenant.id, sub.id) == secret
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    finally:
        rt.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("gateway.db*"))
    assert b"hooks.example.test/canary-0" in raw  # the scan sees the subscription rows
    for _, secret in made:
        assert secret.startswith("whsec_")
        assert secret.encode() not in raw
        assert secret[len("whsec_"):].encode() not in raw  # nor its key material alone
