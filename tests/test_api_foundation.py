"""The API's foundation: key auth and scopes, settings, errors as JSON, health, docs."""

import base64

import pytest
from flask import abort

from gateway.store import keys


def _basic(key: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{key}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_me_with_bearer_and_basic(client, tenant):
    for headers in (tenant.auth, _basic(tenant.key), _basic(tenant.key, "ignored")):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 200, response.json
        assert response.json == {"tenant_id": tenant.id, "tenant_name": tenant.name,
                                 "key_id": tenant.key_id, "scope": "admin"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer gk_live_00000000_not-a-real-key"},
    {"Authorization": "Bearer something-else"},
    {"Authorization": "Basic !!!notbase64"},
    {"Authorization": "Token abc"},
])
def test_me_refuses_missing_malformed_and_unknown_keys(client, headers):
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.is_json and response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_with_a_real_prefix_is_refused(client, tenant):
    forged = tenant.key[:-4] + ("AAAA" if not tenant.key.endswith("AAAA") else "BBBB")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_revoked_key_is_refused(client, engine, tenant):
    assert client.get("/api/v1/me", headers=tenant.auth).status_code == 200
    with engine.begin() as conn:
        assert keys.revoke_key(conn, tenant.key_id)
    response = client.get("/api/v1/me", headers=tenant.auth)
    assert response.status_code == 401
    assert tenant.key not in response.get_data(as_text=True)


def test_zapier_key_may_use_me_but_not_admin_routes(client, engine, tenant):
    with engine.begin() as conn:
        zapier = keys.create_key(conn, tenant.id, "zapier").api_key
    headers = {"Authorization": f"Bearer {zapier}"}
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.json["scope"] == "zapier"
    for method in ("get", "patch"):
        response = getattr(client, method)("/api/v1/settings", headers=headers, json={})
        assert response.status_code == 403
        assert "admin" in response.json["error"]


def test_settings_defaults_change_and_refusal(client, tenant):
    got = client.get("/api/v1/settings", headers=tenant.auth)
    assert got.status_code == 200
    assert got.json["base_currency"] == "USD"
    assert got.json["consent_basis"] == "consent"
    assert got.json["default_gap_days"] == 60
    assert (got.json["at_risk_after"], got.json["lapsed_after"], got.json["lost_after"]) == \
        (1.5, 3.0, 6.0)
    assert got.json["attribution_window_days"] == 30
    assert got.json["scoring_authority"] == "gateway"
    assert got.json["api_rate_limit_per_minute"] == 120
    assert got.json["allow_private_targets"] is False
    assert got.json["pull_interval_minutes"]["rci-customers"] == 60
    assert got.json["pull_interval_minutes"]["rekindle-poll"] == 15

    changed = client.patch("/api/v1/settings", headers=tenant.auth,
                           json={"base_currency": "jpy", "default_gap_days": 45,
                                 "pull_interval_minutes": {"rci-customers": 30}})
    assert changed.status_code == 200, changed.json
    assert changed.json["base_currency"] == "JPY"
    assert changed.json["default_gap_days"] == 45
    assert changed.json["pull_interval_minutes"] == {"rci-customers": 30, "rekindle-poll": 15,
                                                     "rescore": 1440}

    for bad, field in (({"consent_basis": "maybe"}, "consent_basis"),
                       ({"default_gap_days": "soon"}, "default_gap_days"),
                       ({"no_such_setting": 1}, "no_such_setting"),
                       ({"base_currency": "XXX1"}, "base_currency")):
        refused = client.patch("/api/v1/settings", headers=tenant.auth, json=bad)
        assert refused.status_code == 422, refused.json
        assert field in refused.json["errors"]
    # Valid on its own, but the merged thresholds would not rise: a conflict with the settings.
    conflict = client.patch("/api/v1/settings", headers=tenant.auth, json={"at_risk_after": 9})
    assert conflict.status_code == 409, conflict.json
    assert "at_risk_after" in conflict.json["errors"]
    assert client.patch("/api/v1/settings", headers=tenant.auth, data="[1]",
                        content_type="application/json").status_code == 400
    after = client.get("/api/v1/settings", headers=tenant.auth).json
    assert after == changed.json  # nothing changed by the refused requests


def test_errors_are_json_never_html(app, client, tenant):
    not_found = client.get("/no/such/page")
    assert not_found.status_code == 404 and not_found.is_json and not_found.json["error"]
    wrong_method = client.delete("/api/v1/me", headers=tenant.auth)
    assert wrong_method.status_code == 405 and wrong_method.is_json
    too_big = client.patch("/api/v1/settings", headers=tenant.auth,
                           data=b"{" + b" " * (app.config["MAX_CONTENT_LENGTH"] + 10) + b"}",
                           content_type="application/json")
    assert too_big.status_code == 413 and too_big.is_json


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(runtime):
    from gateway import create_app

    app = create_app(runtime=runtime)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/teapot")
    def teapot():
        abort(418)

    response = app.test_client().get("/boom")
    assert response.status_code == 500 and response.is_json
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert app.test_client().get("/teapot").json["error"]


def test_health_readiness_and_docs(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["database"] == "ok"
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/me" in spec.json["paths"] and "/api/v1/settings" in spec.json["paths"]
    assert client.get("/docs").status_code == 200


def test_per_key_rate_limit(client, tenant):
    assert client.patch("/api/v1/settings", headers=tenant.auth,
                        json={"api_rate_limit_per_minute": 3}).status_code == 200
    from gateway.runtime import runtime as current

    with client.application.app_context():
        current().forget_settings(tenant.id)
    statuses = [client.get("/api/v1/me", headers=tenant.auth).status_code for _ in range(5)]
    assert statuses.count(429) >= 1 and statuses[0] == 200
    limited = client.get("/api/v1/me", headers=tenant.auth)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.is_json
