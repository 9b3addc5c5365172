"""Schemathesis against the app's own OpenAPI document, in process, every check on.

This runs schemathesis's engine (what ``schemathesis run --checks all`` runs: its examples,
coverage and fuzzing phases, and the stateful one when the document has links) with capped,
deterministic generation and a valid admin key, against the app served on 127.0.0.1 by a
server thread of this process. Every check runs: no 5xx; every answer matches its documented
status, content type, headers and schema; invalid data is refused and valid data accepted;
auth is not ignored; unsupported methods answer 405. A blueprint registered on the app is
fuzzed here with no change to this file.

(Not over WSGI directly, for two faults of the installed schemathesis 4.32: its pytest plugin,
``schemathesis.pytest.from_fixture``, fails under pytest 9 (``Function._nodeid``), and its
engine's WSGI transport passes ``max_redirects`` to werkzeug's test client on the
``ignored_auth`` probes, so that check could not run. Over a socket both go away, and the run
is the CLI's.)

Before each request the tenant's settings are reset, so a case that set a low rate limit or odd
thresholds cannot change what the next one sees; the app has its own runtime, whose
failed-authentication budget is large (``ignored_auth`` sends no or wrong credentials on
purpose) and whose rate limiter counts only this module's requests.
"""

from __future__ import annotations

import threading

import jsonschema_rs
import pytest
import schemathesis
from schemathesis import engine
from schemathesis.engine import events
from schemathesis.engine.recorder import ScenarioRecorder
from sqlalchemy import create_engine
from werkzeug.serving import WSGIRequestHandler, make_server

from gateway import create_app
from gateway.runtime import Runtime
from gateway.store import keys, tenants
from gateway.tenant_settings import DEFAULTS

MAX_EXAMPLES = 25
SEED = 20240601

#: Every setting at its default, with a rate limit the fuzz cannot reach.
BASELINE = {**DEFAULTS.as_dict(), "api_rate_limit_per_minute": 100_000}


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # hundreds of lines nobody reads
        pass


class ResettingApp:
    """The app, with the tenant's settings reset before each request it serves."""

    def __init__(self, app, runtime: Runtime, tenant_id: str) -> None:
        self.app, self.runtime, self.tenant_id = app, runtime, tenant_id

    def reset(self) -> None:
        with self.runtime.engine.begin() as conn:
            tenants.update_settings(conn, self.tenant_id, BASELINE)
        self.runtime.forget_settings(self.tenant_id)

    def __call__(self, environ, start_response):
        self.reset()
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def fuzz_target(runtime):
    own = Runtime(settings=runtime.settings, engine=runtime.engine,
                  failed_auth_per_minute=1_000_000)
    with runtime.engine.begin() as conn:
        tenant = tenants.create_tenant(conn, "Fuzzed shop")
        key = keys.create_key(conn, tenant.id, "admin").api_key
    server = make_server("127.0.0.1", 0, ResettingApp(create_app(runtime=own), own, tenant.id),
                         request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="fuzzed-gateway", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", key
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def _failures(recorder: ScenarioRecorder) -> list[str]:
    found = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            found.append(f"{recorder.label} [{check.name}] {failure.title}\n{failure.message}\n"
                         f"{check.failure_info.code_sample}")
    return found


def run_schemathesis(base_url: str, key: str) -> tuple[list[str], int]:
    """Every failure and error the engine reports, and how many scenarios it ran."""
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {key}"},
        "checks": {"enabled": True},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "workers": 1,
        "seed": SEED,
        "cache": {"enabled": False},  # no state carried between runs, none left in the tree
        # What OpenAPI 3.0 cannot say about the actions, so a schema-valid request there may
        # rightly be refused: an Idempotency-Key reused with another body (422), a `?format=`
        # that selects which body variant applies (400), and the canonical schemas' cross-field
        # rules (a currency's decimals, an order naming its customer). Every other check,
        # no 5xx and answers matching their schemas included, still holds for them.
        # The same holds for the webhooks (a signed route refuses a schema-valid body whose
        # signature is wrong) and for a REST hook's target (a valid URL may not resolve, or may
        # resolve to a private address).
        "operations": [
            {"include-tag": tag, "checks": {"positive_data_acceptance": {"expected-statuses": [
                "2xx", "400", "401", "403", "404", "409", "415", "422", "429"]}}}
            for tag in ("actions", "webhooks")
        ] + [{"include-path-regex": path, "include-method": method,
              "checks": {"positive_data_acceptance": {"expected-statuses": [
                  "2xx", "400", "401", "404", "415", "422", "429"]}}}
             # A connection's options depend on the connector named in the path, and its base
             # URL, like a hook's target, on what the name resolves to.
             for path, method in (("^/api/v1/hooks$", "POST"),
                                  ("^/api/v1/connections/[^/]+$", "PUT"))],
    })
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    problems: list[str] = []
    scenarios = 0
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            problems.extend(_failures(event.recorder))
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error {event.info.title}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal: {event.exception!r}")
    return problems, scenarios


def test_every_operation_keeps_its_documented_contract(fuzz_target):
    base_url, key = fuzz_target
    problems, scenarios = run_schemathesis(base_url, key)
    assert scenarios > 0
    assert not problems, "\n\n".join(dict.fromkeys(problems))


# --- the document itself ----------------------------------------------------------------------

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}


def _operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def _validator(doc: dict, ref: str):
    return jsonschema_rs.validator_for({"$ref": ref, "components": doc["components"]})


def _resolve(doc: dict, response: dict) -> dict:
    ref = response.get("$ref")
    return doc["components"]["responses"][ref.rsplit("/", 1)[1]] if ref else response


def test_errors_are_documented_in_the_shape_the_app_answers(client):
    doc = client.get("/openapi.json").json
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "errors", "errors_omitted"}
    assert error["required"] == ["error"] and error["additionalProperties"] is False
    for label, operation in _operations(doc):
        assert "default" not in operation["responses"], label
        for status, response in operation["responses"].items():
            if status.startswith("2") or (label == "GET /readyz" and status == "503"):
                continue
            schema = _resolve(doc, response)["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (label, status)


def test_key_answers_and_body_answers_are_documented(client):
    doc = client.get("/openapi.json").json
    authenticated = 0
    for label, operation in _operations(doc):
        responses = operation["responses"]
        if label.split()[1].startswith("/api/v1/webhooks/{tenant_id}/"):
            # A signed post: its signature, not a key, authenticates it.
            assert operation["security"] == [], label
            assert "401" in responses and "429" in responses, label
        elif label.split()[1].startswith("/api/v1/"):
            authenticated += 1
            assert operation["security"] == [{"bearerAuth": []}, {"basicAuth": []}], label
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
            for status in (s for s in responses if s.startswith("2")):
                assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= \
                    set(responses[status].get("headers", {})), (label, status)
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, label
            assert {"400", "413", "415"} <= set(responses), label
    assert authenticated >= 3
    settings = doc["paths"]["/api/v1/settings"]
    assert "403" in settings["get"]["responses"]
    assert {"409", "422"} <= set(settings["patch"]["responses"])


def test_settings_are_described_as_they_are_validated(client):
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    answer, change = schemas["Settings"], schemas["SettingsChange"]
    assert set(answer["required"]) == set(DEFAULTS.as_dict())  # GET answers every key
    assert "required" not in change and change["additionalProperties"] is False
    for schema in (answer, change):
        pulls = schema["properties"]["pull_interval_minutes"]
        assert pulls["additionalProperties"] is False
        assert set(pulls["properties"]) == set(DEFAULTS.pull_interval_minutes)
        assert all(p == {"type": "integer", "minimum": 1, "maximum": 10_080}
                   for p in pulls["properties"].values())
        assert "merged per route" in pulls["description"]
        for name in ("at_risk_after", "lapsed_after", "lost_after"):
            assert "at_risk_after < lapsed_after < lost_after" in \
                schema["properties"][name]["description"]
    assert answer["properties"]["pull_interval_minutes"]["required"] == sorted(
        DEFAULTS.pull_interval_minutes)


def test_health_answers_match_their_documented_schemas(runtime, client):
    doc = client.get("/openapi.json").json
    healthz = client.get("/healthz")
    assert healthz.status_code == 200
    assert _validator(doc, "#/components/schemas/Health").is_valid(healthz.json)
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert _validator(doc, "#/components/schemas/Ready").is_valid(ready.json)

    unreachable = create_engine("sqlite:////nonexistent-gateway-dir/none.db")
    down = create_app(runtime=Runtime(settings=runtime.settings, engine=unreachable))
    not_ready = down.test_client().get("/readyz")
    assert not_ready.status_code == 503
    ref = doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]
    assert _validator(doc, ref["schema"]["$ref"]).is_valid(not_ready.json), not_ready.json
