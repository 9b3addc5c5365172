"""Request bodies that cannot hurt the API: a size limit that holds for chunked bodies too
(over real sockets, under werkzeug's server and waitress), JSON parsed in one bounded place,
and error bodies of bounded size."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Iterator

import pytest
import waitress
from flask_smorest import Blueprint as PlainSmorestBlueprint
from marshmallow import Schema, fields
from waitress import wasyncore
from webargs.flaskparser import use_args
from werkzeug.serving import make_server

from gateway import create_app
from gateway.api.errors import MAX_FIELD_ERRORS, MAX_KEY_CHARS, bound_errors

SETTINGS = "/api/v1/settings"


# --- servers on 127.0.0.1, run by a thread of this process and stopped by the test ------------

class WerkzeugThread:
    """The app under werkzeug's threaded server (what ``python app.py serve`` used)."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


class WaitressThread:
    """The app under waitress, its event loop run (and ended) by one thread."""

    def __init__(self, app) -> None:
        self._map: dict = {}
        self.server = waitress.create_server(app, map=self._map, host="127.0.0.1", port=0,
                                             threads=2)
        self.port = self.server.effective_port
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            wasyncore.loop(timeout=0.05, map=self._map, count=1)
        self.server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


@pytest.fixture(params=[WerkzeugThread, WaitressThread], ids=["werkzeug", "waitress"])
def served(request, app) -> Iterator[int]:
    server = request.param(app)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def _send(port: int, method: str, path: str, body, headers: dict[str, str],
          chunked: bool = False) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _ten_megabytes_ending_in_junk() -> Iterator[bytes]:
    yield b'{"default_gap_days": 45}'
    for _ in range(100):
        yield b" " * 100_000
    yield b"junk"


def test_chunked_body_over_the_limit_is_a_413_and_changes_nothing(served, client, tenant):
    headers = {**tenant.auth, "Content-Type": "application/json"}
    status, body = _send(served, "PATCH", SETTINGS, _ten_megabytes_ending_in_junk(), headers,
                         chunked=True)
    assert status == 413, body
    assert "larger than" in body["error"]
    assert client.get(SETTINGS, headers=tenant.auth).json["default_gap_days"] == 60


def test_small_chunked_body_is_read_whole(served, client, tenant):
    headers = {**tenant.auth, "Content-Type": "application/json"}
    pieces = iter([b'{"default_gap_days": 4', b'5, "pull_interval_minutes": ',
                   b'{"rescore": 720}}'])
    status, body = _send(served, "PATCH", SETTINGS, pieces, headers, chunked=True)
    assert status == 200, body
    assert body["default_gap_days"] == 45
    assert body["pull_interval_minutes"]["rescore"] == 720


def test_declared_length_over_the_limit_is_a_413(served, app, client, tenant):
    limit = app.config["MAX_CONTENT_LENGTH"]
    payload = b'{"default_gap_days": 45' + b" " * limit + b"}"
    headers = {**tenant.auth, "Content-Type": "application/json"}
    status, body = _send(served, "PATCH", SETTINGS, payload, headers)
    assert status == 413, body
    assert client.get(SETTINGS, headers=tenant.auth).json["default_gap_days"] == 60


def test_a_body_at_the_limit_is_accepted(app, client, tenant):
    limit = app.config["MAX_CONTENT_LENGTH"]
    start = b'{"default_gap_days": 46'
    payload = start + b" " * (limit - len(start) - 1) + b"}"
    assert len(payload) == limit
    response = client.patch(SETTINGS, headers=tenant.auth, data=payload,
                            content_type="application/json")
    assert response.status_code == 200, response.json


# --- JSON parsed in one bounded place ---------------------------------------------------------

def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


class AnythingSchema(Schema):
    value = fields.Raw()


@pytest.fixture()
def app_with_other_parsers(runtime):
    """A fresh app with views that parse JSON the ways other code might: Flask's
    ``request.get_json()``, webargs' own parser, and a plain flask-smorest blueprint."""
    from flask import request

    application = create_app(runtime=runtime)

    @application.post("/probe/get-json")
    def probe_get_json():
        return {"type": type(request.get_json()).__name__}

    @application.post("/probe/webargs")
    @use_args(AnythingSchema(), location="json")
    def probe_webargs(args):
        return {"keys": sorted(args)}

    plain = PlainSmorestBlueprint("probe", __name__)

    @plain.post("/probe/smorest")
    @plain.arguments(AnythingSchema)
    def probe_smorest(args):
        return {"keys": sorted(args)}

    application.register_blueprint(plain)
    return application


@pytest.mark.parametrize("levels", [65, 1_000, 100_000])
def test_json_nested_too_deep_is_a_400_on_every_path(app_with_other_parsers, tenant, levels):
    client = app_with_other_parsers.test_client()
    body = '{"value": ' + _deep(levels) + "}"
    for path, headers in ((SETTINGS, tenant.auth), ("/probe/get-json", {}),
                          ("/probe/webargs", {}), ("/probe/smorest", {})):
        method = client.patch if path == SETTINGS else client.post
        response = method(path, headers=headers, data=body, content_type="application/json")
        assert response.status_code == 400, (path, response.get_data(as_text=True)[:300])
        assert response.json == {"error": "JSON nested deeper than 64 levels"}


def test_json_nested_to_the_bound_is_parsed(app_with_other_parsers):
    client = app_with_other_parsers.test_client()
    response = client.post("/probe/get-json", data=_deep(64), content_type="application/json")
    assert response.status_code == 200 and response.json == {"type": "list"}


@pytest.mark.parametrize("body, reason", [
    (b'{"default_gap_days": 45', "not valid JSON"),
    (b'{"default_gap_days": 45}}', "not valid JSON"),
    (b"\xff\xfe\xfa", "not valid JSON"),
    (b'{"default_gap_days": ' + b"9" * 5_000 + b"}", "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_invalid_json_is_a_400_naming_the_problem(client, tenant, body, reason):
    response = client.patch(SETTINGS, headers=tenant.auth, data=body,
                            content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert reason in response.json["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_a_415(client, tenant, content_type):
    response = client.patch(SETTINGS, headers=tenant.auth, data='{"default_gap_days": 45}',
                            content_type=content_type)
    assert response.status_code == 415, response.json
    assert "Content-Type: application/json" in response.json["error"]
    assert client.get(SETTINGS, headers=tenant.auth).json["default_gap_days"] == 60


@pytest.mark.parametrize("body", ["[1]", '"text"', "42", "null", "true"])
def test_a_json_body_that_is_not_an_object_is_a_400(client, tenant, body):
    response = client.patch(SETTINGS, headers=tenant.auth, data=body,
                            content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["error"] == "the request body must be a JSON object"


def test_no_route_stays_a_404_whatever_the_body(client):
    response = client.post("/no/such/page", data="{", content_type="application/json")
    assert response.status_code == 404 and response.is_json


# --- settings bodies: held to JSON's types, every bad field named -----------------------------

@pytest.mark.parametrize("change, field", [
    ({"allow_private_targets": "yes"}, "allow_private_targets"),
    ({"allow_private_targets": 1}, "allow_private_targets"),
    ({"at_risk_after": "1.2"}, "at_risk_after"),
    ({"lost_after": True}, "lost_after"),
    ({"default_gap_days": 45.0}, "default_gap_days"),
    ({"pull_interval_minutes": {"rci-customers": "30"}}, "pull_interval_minutes"),
    ({"pull_interval_minutes": {"no-such-route": 30}}, "pull_interval_minutes"),
    ({"pull_interval_minutes": [30]}, "pull_interval_minutes"),
    ({"base_currency": 840}, "base_currency"),
])
def test_a_value_of_the_wrong_json_type_is_a_422(client, tenant, change, field):
    response = client.patch(SETTINGS, headers=tenant.auth, json=change)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [field]


def test_every_bad_and_unknown_key_is_named_at_once(client, tenant):
    response = client.patch(SETTINGS, headers=tenant.auth,
                            json={"consent_basis": "maybe", "no_such_setting": 1,
                                  "default_gap_days": 0, "at_risk_after": 2})
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == {"consent_basis", "no_such_setting",
                                            "default_gap_days"}
    assert response.json["errors"]["no_such_setting"] == [
        "unknown setting (GET /api/v1/settings lists them all)"]
    assert client.get(SETTINGS, headers=tenant.auth).json["at_risk_after"] == 1.5


def test_thresholds_that_would_not_rise_are_a_409_and_change_nothing(client, tenant):
    before = client.get(SETTINGS, headers=tenant.auth).json
    for change in ({"at_risk_after": 9}, {"lost_after": 2},
                   {"at_risk_after": 5, "lapsed_after": 4, "lost_after": 8}):
        response = client.patch(SETTINGS, headers=tenant.auth, json=change)
        assert response.status_code == 409, response.json
        assert "must rise" in json.dumps(response.json["errors"])
    rising = client.patch(SETTINGS, headers=tenant.auth,
                          json={"at_risk_after": 2, "lapsed_after": 4, "lost_after": 8})
    assert rising.status_code == 200, rising.json
    assert client.get(SETTINGS, headers=tenant.auth).json == {
        **before, "at_risk_after": 2.0, "lapsed_after": 4.0, "lost_after": 8.0}


# --- bounded error bodies ---------------------------------------------------------------------

def test_sixty_thousand_unknown_keys_give_a_small_answer(app, client, tenant):
    changes = {f"k{i:05d}": 0 for i in range(60_000)}
    payload = json.dumps(changes).encode()
    assert len(payload) < app.config["MAX_CONTENT_LENGTH"]
    response = client.patch(SETTINGS, headers=tenant.auth, data=payload,
                            content_type="application/json")
    assert response.status_code == 422
    assert len(response.get_data()) < 20_000
    assert len(response.json["errors"]) == MAX_FIELD_ERRORS
    assert response.json["errors_omitted"] == 60_000 - MAX_FIELD_ERRORS
    assert "59900 more" in response.json["error"]


def test_bound_errors_counts_nested_leaves_and_cuts_long_keys():
    errors = {
        "a": ["bad"],
        "items": {i: {"sku": ["missing"], "qty": ["not a number"]} for i in range(60)},
        "x" * 10_000: ["unknown"],
    }
    listed, omitted = bound_errors(errors, limit=100)
    assert omitted == 1 + 120 + 1 - 100
    assert listed["a"] == ["bad"]
    assert list(listed["items"])[:2] == ["0", "1"]  # keys are strings, in the order given
    assert sum(len(v) for v in listed["items"].values()) == 99
    assert "x" * 10_000 not in listed
    (cut,) = bound_errors({"x" * 10_000: ["unknown"]})[0]
    assert len(cut) == MAX_KEY_CHARS and cut.endswith("…")
    assert bound_errors({"a": ["m" * 10_000]})[0]["a"][0].endswith("…")
    assert bound_errors(["whole body bad"]) == ({"_schema": ["whole body bad"]}, 0)


@pytest.mark.parametrize("text", ["\\u0000", "a\\u0000b", "\\ud800", "x\\udfffy", "\\uDBFF"])
@pytest.mark.parametrize("where", ["value", "key"])
def test_a_string_no_database_can_store_is_a_400_and_stores_nothing(client, engine, tenant,
                                                                    text, where):
    """NUL (PostgreSQL refuses it in text and JSON) and unpaired surrogates (not text) are
    refused as the body's fault, on SQLite and PostgreSQL alike, before anything is written."""
    product = ('{"id": "P-1", "taxonomy": ["' + text + '"]}' if where == "value"
               else '{"id": "P-1", "' + text + '": "v"}')
    response = client.post("/api/v1/actions/upsert-products", headers=tenant.auth,
                           data="[" + product + "]", content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "NUL" in response.json["error"]
    assert _products(engine, tenant.id) == 0


def test_escapes_that_only_look_like_nul_or_surrogates_are_text(client, engine, tenant):
    body = '[{"id": "P-2", "name": "a\\\\u0000 and \\ud83d\\ude00"}]'  # a backslash; a pair
    response = client.post("/api/v1/actions/upsert-products", headers=tenant.auth,
                           data=body, content_type="application/json")
    assert response.status_code in (200, 201), response.get_data(as_text=True)[:300]
    assert _products(engine, tenant.id) == 1


def _products(engine, tenant_id: str) -> int:  # noqa: ANN001
    from sqlalchemy import func, select

    from gateway.store.tables import products

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(products)
                            .where(products.c.tenant_id == tenant_id)).scalar_one()
