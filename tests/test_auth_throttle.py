"""Failed authentications are limited per client address: past the limit a client without a
valid key gets 429 with Retry-After; a valid key keeps working; other addresses are not
affected; requests that present no credential at all do not count."""

from __future__ import annotations

import base64

import pytest

from gateway import create_app
from gateway.runtime import FAILED_AUTH_PER_MINUTE, Runtime

BAD_VALUES = [
    "Bearer gk_live_00000000_" + "x" * 32,  # well formed, unknown
    "Bearer not-a-key",
    "Basic \xe9",
    "Basic " + base64.b64encode(b":").decode(),
    "Token abc",
]


@pytest.fixture()
def isolated_app(runtime, settings):
    """An app on its own Runtime, so its failure counts start from zero."""
    rt = Runtime.open(settings)
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    yield app
    rt.close()


def _get(app, address: str, authorization: str | None = None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return app.test_client().get("/api/v1/me", headers=headers,
                                 environ_base={"REMOTE_ADDR": address})


def test_failures_past_the_limit_answer_429_but_a_valid_key_still_works(isolated_app, tenant):
    attacker = "203.0.113.7"
    statuses = [_get(isolated_app, attacker, BAD_VALUES[i % len(BAD_VALUES)]).status_code
                for i in range(FAILED_AUTH_PER_MINUTE)]
    assert statuses == [401] * FAILED_AUTH_PER_MINUTE

    throttled = _get(isolated_app, attacker, "Bearer gk_live_00000000_" + "y" * 32)
    assert throttled.status_code == 429
    assert throttled.is_json and "failed authentications" in throttled.json["error"]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # Every kind of failure is throttled now, a missing key included ...
    assert _get(isolated_app, attacker, "Basic \xe9").status_code == 429
    assert _get(isolated_app, attacker).status_code == 429
    # ... but a valid key from the same address is served.
    served = _get(isolated_app, attacker, f"Bearer {tenant.key}")
    assert served.status_code == 200 and served.json["key_id"] == tenant.key_id
    # Another address is not affected.
    assert _get(isolated_app, "203.0.113.8", BAD_VALUES[0]).status_code == 401


def test_requests_without_any_credential_are_not_counted(isolated_app):
    address = "198.51.100.20"
    for _ in range(FAILED_AUTH_PER_MINUTE * 2):
        response = _get(isolated_app, address)
        assert response.status_code == 401 and response.json["error"].startswith("missing")
    assert _get(isolated_app, address, BAD_VALUES[0]).status_code == 401


def test_the_limit_is_the_runtimes(isolated_app):
    isolated_app.extensions["gateway"].failed_auth_per_minute = 2
    address = "198.51.100.30"
    assert [_get(isolated_app, address, "Bearer nope").status_code for _ in range(3)] == \
        [401, 401, 429]
