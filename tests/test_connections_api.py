"""``/api/v1/connections``: set, read, check and delete a tenant's connections over the API,
against the four sandboxes over real HTTP; secrets never answered or logged; a base URL set
here must pass the private-address check, when set and again at every connect."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from typing import Any, Iterator

import pytest
import requests

from connectors.http import Decision, decide
from connectors.sandbox_kit import RunningSandbox, start_sandbox
from gateway import connections as service
from gateway import create_app
from gateway.netguard import TargetRefused
from gateway.runtime import Runtime
from gateway.store import connections as store
from gateway.store import keys
from tests.connectors.cases import rci, rejoiner, rekindle, replenit

#: Per connector: its contract case (sandbox config, key) and the options a connection needs.
CASES: dict[str, tuple[Any, dict[str, str]]] = {
    "rekindle": (rekindle.CASE, {}),
    "rejoiner": (rejoiner.CASE, {"site_id": rejoiner.SITE_ID}),
    "rci": (rci.CASE, {}),
    "replenit": (replenit.CASE, {"tenant_id": replenit.TENANT}),
}
KEYS = {"rekindle": rekindle.API_KEY, "rejoiner": rejoiner.API_KEY, "rci": rci.API_KEY,
        "replenit": replenit.API_KEY}
DOCUMENTED_PATHS = {"rekindle": "/api/zapier", "rejoiner": f"/api/v1/{rejoiner.SITE_ID}",
                    "rci": "/api/v1", "replenit": ""}
WRONG_KEY = "wrong_key_0123456789abcdefWRONG"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, RunningSandbox]]:
    """The four sandboxes on 127.0.0.1, each with its contract case's key."""
    running: dict[str, RunningSandbox] = {}
    try:
        for name, (case, _) in CASES.items():
            module = importlib.import_module(f"connectors.{name}.sandbox")
            running[name] = start_sandbox(module.create_sandbox(case.sandbox_config()))
        yield running
    finally:
        for sandbox in running.values():
            sandbox.stop()


def arrivals(sandbox: RunningSandbox) -> int:
    """How many service requests reached the sandbox so far (its own log)."""
    log = requests.get(f"{sandbox.url}/_sandbox/requests-log", timeout=10).json()
    return len(log["timestamps"]) + log["dropped"]


def allow_private(client, tenant, allowed: bool = True) -> None:
    answer = client.patch("/api/v1/settings", json={"allow_private_targets": allowed},
                          headers=tenant.auth)
    assert answer.status_code == 200, answer.json


def put(client, tenant, name: str, **body: Any):
    return client.put(f"/api/v1/connections/{name}", json=body, headers=tenant.auth)


def assert_no_secret(answer, *secrets: str) -> None:
    text = answer.get_data(as_text=True)
    for secret in secrets:
        assert secret not in text


# ------------------------------------------------------------------ each sandbox


@pytest.mark.parametrize("name", list(CASES))
def test_set_read_check_with_the_right_and_the_wrong_key(client, tenant, sandboxes, name,
                                                         caplog):
    caplog.set_level(logging.DEBUG)
    sandbox, (_, options) = sandboxes[name], CASES[name]
    allow_private(client, tenant)

    answer = put(client, tenant, name, api_key=KEYS[name], base_url=sandbox.url,
                 options=options)
    assert answer.status_code == 200, answer.json
    assert_no_secret(answer, KEYS[name])
    body = answer.json
    assert body["base_url"] == sandbox.url + DOCUMENTED_PATHS[name]
    assert body["credentials_set"] is True and body["credentials_readable"] is True
    field = "api_token" if name == "rci" else "api_key"
    assert body["credential_hints"] == {field: "…" + KEYS[name][-4:]}
    assert body["set_via"] == "api"

    got = client.get(f"/api/v1/connections/{name}", headers=tenant.auth)
    assert got.status_code == 200 and got.json == body
    listed = client.get("/api/v1/connections", headers=tenant.auth)
    assert [c["connector"] for c in listed.json] == [name]
    assert_no_secret(listed, KEYS[name])

    check = client.post(f"/api/v1/connections/{name}/check", headers=tenant.auth)
    assert check.status_code == 200 and check.json["ok"] is True, check.json

    assert put(client, tenant, name, api_key=WRONG_KEY, base_url=sandbox.url,
               options=options).status_code == 200
    check = client.post(f"/api/v1/connections/{name}/check", headers=tenant.auth)
    assert check.status_code == 200 and check.json["ok"] is False
    assert "refused" in check.json["detail"] and "401" in check.json["detail"]
    assert_no_secret(check, WRONG_KEY, KEYS[name])
    assert KEYS[name] not in caplog.text and WRONG_KEY not in caplog.text


def test_rejoiner_check_names_an_unknown_site(client, tenant, sandboxes):
    allow_private(client, tenant)
    assert put(client, tenant, "rejoiner", api_key=KEYS["rejoiner"],
               base_url=sandboxes["rejoiner"].url + "/api/v1",
               options={"site_id": "no-such-site"}).status_code == 200
    check = client.post("/api/v1/connections/rejoiner/check", headers=tenant.auth)
    assert check.json["ok"] is False and "no-such-site" in check.json["detail"]


# ------------------------------------------------------------------ the private-address check


@pytest.mark.parametrize("base_url", [
    "http://127.0.0.1:{port}", "https://127.0.0.1:{port}", "https://localhost:{port}",
    "https://169.254.169.254", "https://[::1]:{port}", "https://10.0.0.1",
    "https://100.64.0.1", "https://[::ffff:127.0.0.1]:{port}", "https://[64:ff9b::a9fe:a9fe]",
    "https://2130706433:{port}",
])
def test_a_private_base_url_is_refused_with_the_reason(client, tenant, sandboxes, base_url):
    sandbox = sandboxes["rekindle"]
    before = arrivals(sandbox)
    answer = put(client, tenant, "rekindle", api_key=KEYS["rekindle"],
                 base_url=base_url.format(port=sandbox.port))
    assert answer.status_code == 422
    reasons = " ".join(answer.json["errors"]["base_url"])
    assert "https" in reasons or "only public addresses" in reasons
    assert client.get("/api/v1/connections/rekindle", headers=tenant.auth).status_code == 404
    assert arrivals(sandbox) == before


def test_an_unresolvable_base_url_is_refused(client, tenant):
    answer = put(client, tenant, "rci", api_key="t" * 20, base_url="https://rci.host.invalid")
    assert answer.status_code == 422 and "does not resolve" in answer.json["errors"][
        "base_url"][0]


def test_the_process_setting_allows_private_targets(runtime, make_tenant, sandboxes):
    allowing = Runtime(settings=dataclasses.replace(runtime.settings,
                                                    allow_private_targets=True),
                       engine=runtime.engine)
    app = create_app(runtime=allowing)
    client, tenant = app.test_client(), make_tenant()
    answer = put(client, tenant, "rci", api_key=KEYS["rci"], base_url=sandboxes["rci"].url)
    assert answer.status_code == 200, answer.json
    check = client.post("/api/v1/connections/rci/check", headers=tenant.auth)
    assert check.json == {"ok": True, "detail": "the API token works"}


def test_an_api_set_base_url_is_checked_again_at_connect_time(client, tenant, sandboxes):
    sandbox = sandboxes["replenit"]
    allow_private(client, tenant)
    assert put(client, tenant, "replenit", api_key=KEYS["replenit"], base_url=sandbox.url,
               options=CASES["replenit"][1]).status_code == 200
    allow_private(client, tenant, False)  # as if the name now resolved somewhere private
    before = arrivals(sandbox)
    check = client.post("/api/v1/connections/replenit/check", headers=tenant.auth)
    assert check.json["ok"] is False
    assert check.json["detail"].startswith("the base URL was refused")
    assert arrivals(sandbox) == before


def test_a_command_line_base_url_is_the_operators_choice(engine, runtime, client, tenant,
                                                       sandboxes):
    service.set_connection(engine, runtime.vault, tenant.id, "rci",
                           credentials={"api_token": KEYS["rci"]},
                           base_url=sandboxes["rci"].url, set_via="cli")
    check = client.post("/api/v1/connections/rci/check", headers=tenant.auth)
    assert check.json["ok"] is True


def test_the_engines_client_of_an_api_set_connection_is_guarded(engine, runtime, client,
                                                                tenant, sandboxes):
    sandbox = sandboxes["rekindle"]
    allow_private(client, tenant)
    assert put(client, tenant, "rekindle", api_key=KEYS["rekindle"],
               base_url=sandbox.url).status_code == 200
    with engine.connect() as conn:
        stored = store.get_connection(conn, runtime.vault, tenant.id, "rekindle")
    built = service.make_client_for(stored, runtime)
    try:
        assert built.check().ok  # allowed: it connects
        allow_private(client, tenant, False)
        runtime.forget_settings(tenant.id)
        before = arrivals(sandbox)
        guarded = service.make_client_for(stored, runtime)
        try:
            with pytest.raises(TargetRefused) as refused:
                guarded.customer_returned_wire()
            assert decide(refused.value) is Decision.FAIL  # the relay fails the connection
        finally:
            guarded.close()
        assert arrivals(sandbox) == before
    finally:
        built.close()


# ------------------------------------------------------------------ validation


def field_names(errors: dict, prefix: str = "") -> set[str]:
    """Every field named in a (nested) error mapping, as ``options.site_id`` and ``site_id``."""
    names = set()
    for key, value in errors.items():
        names |= {key, f"{prefix}{key}"}
        if isinstance(value, dict):
            names |= field_names(value, f"{prefix}{key}.")
    return names


@pytest.mark.parametrize("name, body, field", [
    ("rejoiner", {"api_key": "k" * 20}, "options.site_id"),
    ("rejoiner", {"api_key": "k" * 20, "options": {"site_id": "a/b"}}, "site_id"),
    ("replenit", {"api_key": "k" * 20}, "options.tenant_id"),
    ("replenit", {"api_key": "k" * 20, "options": {"tenant_id": "not-a-guid"}}, "tenant_id"),
    ("rekindle", {"api_key": "k" * 20, "options": {"currency": "ZZZ"}}, "currency"),
    ("rci", {"api_key": "k" * 20, "options": {"currency": "USD"}}, "options.currency"),
    ("rci", {"credentials": {"api_key": "k" * 20}}, "credentials.api_token"),
    ("rekindle", {"credentials": {"api_token": "k" * 20}}, "credentials.api_key"),
    ("rekindle", {"api_key": "with space"}, "api_key"),
    ("rekindle", {"api_key": "k" * 20, "base_url": "https://rekindle.business/other"},
     "base_url"),
    ("rekindle", {"api_key": "k" * 20, "base_url": "https://u:p@rekindle.business"},
     "base_url"),
    ("rekindle", {"api_key": "k", "credentials": {"api_key": "k"}}, "api_key"),
    ("rekindle", {"api_key": "k" * 20, "colour": "blue"}, "colour"),
    ("rekindle", {}, "credentials"),
])
def test_invalid_connections_are_422_naming_the_field(client, tenant, name, body, field):
    answer = put(client, tenant, name, **body)
    assert answer.status_code == 422, answer.json
    assert field in field_names(answer.json["errors"]), answer.json
    assert client.get(f"/api/v1/connections/{name}", headers=tenant.auth).status_code == 404


def test_a_body_that_is_not_an_object_is_400(client, tenant):
    answer = client.put("/api/v1/connections/rci", data="[1]", headers={
        **tenant.auth, "Content-Type": "application/json"})
    assert answer.status_code == 400 and "JSON object" in answer.json["error"]


def test_stored_credentials_are_kept_only_for_the_same_base_url(client, tenant, sandboxes):
    allow_private(client, tenant)
    url = sandboxes["rci"].url
    assert put(client, tenant, "rci", api_key=KEYS["rci"], base_url=url).status_code == 200
    kept = put(client, tenant, "rci", base_url=url + "/api/v1")
    assert kept.status_code == 200, kept.json
    assert client.post("/api/v1/connections/rci/check", headers=tenant.auth).json["ok"]
    moved = put(client, tenant, "rci", base_url="http://localhost:1")
    assert moved.status_code == 422 and "credentials" in moved.json["errors"]
    still = client.get("/api/v1/connections/rci", headers=tenant.auth).json
    assert still["base_url"] == url + "/api/v1"


def test_the_currency_defaults_to_the_tenants_base_currency(client, tenant):
    client.patch("/api/v1/settings", json={"base_currency": "EUR"}, headers=tenant.auth)
    answer = put(client, tenant, "rekindle", api_key="k" * 20)
    assert answer.json["options"] == {"currency": "EUR"}
    assert answer.json["base_url"] == "https://rekindle.business/api/zapier"
    given = put(client, tenant, "rejoiner", api_key="k" * 20,
                options={"site_id": "s1", "currency": "jpy"})
    assert given.json["options"] == {"site_id": "s1", "currency": "JPY"}
    assert given.json["base_url"] == "https://rj2.rejoiner.com/api/v1/s1"


# ------------------------------------------------------------------ access and absence


def test_only_admin_keys_and_only_the_tenants_own(engine, client, make_tenant):
    a, b = make_tenant("A"), make_tenant("B")
    with engine.begin() as conn:
        zapier = keys.create_key(conn, a.id, "zapier").api_key
    assert put(client, a, "rci", api_key="t" * 20).status_code == 200
    for method, path in [("get", "/api/v1/connections"), ("get", "/api/v1/connections/rci"),
                         ("put", "/api/v1/connections/rci"),
                         ("delete", "/api/v1/connections/rci"),
                         ("post", "/api/v1/connections/rci/check")]:
        answer = getattr(client, method)(path, json={} if method == "put" else None,
                                         headers={"Authorization": f"Bearer {zapier}"})
        assert answer.status_code == 403, (method, path)
    assert client.get("/api/v1/connections", headers=b.auth).json == []
    assert client.get("/api/v1/connections/rci", headers=b.auth).status_code == 404
    assert client.delete("/api/v1/connections/rci", headers=b.auth).status_code == 404
    assert client.get("/api/v1/connections/rci", headers=a.auth).status_code == 200


def test_unknown_names_absent_connections_and_delete(client, tenant):
    for method in ("get", "delete", "put", "post"):
        answer = getattr(client, method)("/api/v1/connections/mailchimp", headers=tenant.auth)
        assert answer.status_code in (404, 405) and "error" in answer.json
    for method in ("get", "delete", "put"):
        answer = getattr(client, method)("/api/v1/connections/mailchimp", headers=tenant.auth,
                                         json={"api_key": "k" * 20})
        assert answer.status_code == 404 and "error" in answer.json
    assert client.post("/api/v1/connections/rci/check",
                       headers=tenant.auth).status_code == 404
    assert put(client, tenant, "rci", api_key="t" * 20).status_code == 200
    assert client.post("/api/v1/connections/mailchimp/check",
                       headers=tenant.auth).status_code == 404
    deleted = client.delete("/api/v1/connections/rci", headers=tenant.auth)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert client.get("/api/v1/connections/rci", headers=tenant.auth).status_code == 404
    assert client.delete("/api/v1/connections/rci", headers=tenant.auth).status_code == 404


def test_short_credentials_get_no_hint(client, tenant):
    answer = put(client, tenant, "rekindle", api_key="short_key_123")
    assert answer.json["credential_hints"] == {"api_key": None}
    assert_no_secret(answer, "short_key_123", "_123")
