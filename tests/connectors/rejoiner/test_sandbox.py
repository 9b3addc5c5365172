"""The sandbox as the reference describes Rejoiner: paths, auth, DRF error bodies, semantics,
rate limit, seeding; answers held to the fixtures' shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from connectors.base import Limit
from connectors.rejoiner import wire
from connectors.rejoiner.sandbox import base_path, create_sandbox
from connectors.sandbox_kit import ManualClock, SandboxConfig, synthetic_customers

from .conftest import API_KEY, SITE_ID, Raw

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rejoiner" / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# --- shapes ----------------------------------------------------------------------------------


def test_ping_answers_the_fixture(raw):
    response = raw("GET", "ping/")
    assert response.status_code == 200 and response.json() == fixture("ping_response")


def test_every_documented_example_request_is_accepted(raw):
    for path, name in (("customer/convert/", "convert_request"),
                       ("customer/cancel/", "cancel_request"),
                       ("customer/unsubscribe/", "unsubscribe_request"),
                       ("customer/opt_in/", "opt_in_request")):
        response = raw("POST", path, json=fixture(name))
        assert (response.status_code, response.json()) == (200, {"status": "success"}), path


def test_a_profile_answer_has_exactly_the_fixtures_shape(raw):
    example = fixture("customer_response")
    created = raw("POST", "customers/", json=example)
    assert created.status_code == 200
    got = raw("GET", "customers/customer%40example.com/").json()
    assert list(got) == list(example)  # the same keys, in the same order
    wire.CustomerSchema().load(got)
    writable = set(wire.PROFILE_FIELDS) | {"email"}
    assert {k: got[k] for k in writable} == {k: example[k] for k in writable}
    assert got["id"] != "foobar"  # Rejoiner assigns the id; a sent one is ignored
    by_id = raw("GET", f"customers/{got['id']}/").json()
    assert by_id == got


# --- auth and site ------------------------------------------------------------------------------


@pytest.mark.parametrize("header, detail", [
    (None, "Authentication credentials were not provided."),
    (f"Bearer {API_KEY}", "Authentication credentials were not provided."),
    ("Rejoiner", "Invalid token header. No credentials provided."),
    ("Rejoiner a b", "Invalid token header. Token string should not contain spaces."),
    ("Rejoiner wrong-key", "Invalid token."),
])
def test_auth_failures_are_drf_401s(raw, header, detail):
    response = raw("GET", "ping/", key=None, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["WWW-Authenticate"] == "Rejoiner"


def test_another_site_id_is_not_found_and_a_bad_key_is_401_anywhere(sandbox, raw):
    other = sandbox.url + base_path("someone_else") + "ping/"
    response = raw("GET", other)
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    assert raw("GET", other, key="nope").status_code == 401


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["customer/convert/", "customer/cancel/",
                                  "customer/unsubscribe/", "customer/opt_in/", "customers/"])
def test_missing_email_is_a_400_on_every_write(raw, path):
    response = raw("POST", path, json={})
    assert response.status_code == 400
    assert response.json() == {"email": ["This field is required."]}


@pytest.mark.parametrize("field, value, message", [
    ("gender", "x", '"x" is not a valid choice.'),
    ("language", "eng", "Ensure this field has no more than 2 characters."),
    ("birthdate", "10/26/1969",
     "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."),
])
def test_profile_field_rules(raw, field, value, message):
    response = raw("POST", "customers/", json={"email": "v@example.com", field: value})
    assert (response.status_code, response.json()) == (400, {field: [message]})
    assert raw("GET", "customers/v%40example.com/").status_code == 404  # nothing was stored


def test_create_twice_is_a_400_and_put_for_an_unknown_customer_is_a_404(raw):
    assert raw("POST", "customers/", json={"email": "Dup@Example.com"}).status_code == 200
    again = raw("POST", "customers/", json={"email": "dup@example.com"})
    assert (again.status_code, again.json()) == (
        400, {"email": ["customer with this email already exists."]})
    missing = raw("PUT", "customers/nobody%40example.com/", json={"email": "nobody@example.com"})
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})


def test_put_needs_email_and_cannot_take_another_customers(raw):
    raw("POST", "customers/", json={"email": "one@example.com"})
    raw("POST", "customers/", json={"email": "two@example.com"})
    assert raw("PUT", "customers/one%40example.com/", json={"first_name": "X"}).json() == {
        "email": ["This field is required."]}
    taken = raw("PUT", "customers/one%40example.com/", json={"email": "two@example.com"})
    assert taken.status_code == 400


def test_cart_item_errors_are_a_list_per_item(raw):
    body = fixture("convert_request")
    del body["cart_items"][1]["product_id"]
    response = raw("POST", "customer/convert/", json=body)
    assert (response.status_code, response.json()) == (
        400, {"cart_items": [{}, {"product_id": ["This field is required."]}]})


def test_malformed_bodies_paths_and_methods(raw):
    bad_json = raw("POST", "customer/cancel/", data="{nope",
                   headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["detail"].startswith("JSON parse error")
    listed = raw("POST", "customer/cancel/", json=[{"email": "a@example.com"}])
    assert listed.json() == {"non_field_errors": [
        "Invalid data. Expected a dictionary, but got list."]}
    assert raw("GET", "ping").status_code == 404  # paths end in a slash
    assert raw("GET", "customers/").status_code == 405  # no list endpoint
    assert raw("GET", "nothing/here/").json() == {"detail": "Not found."}
    assert raw("DELETE", "customers/a%40example.com/").json() == {
        "detail": 'Method "DELETE" not allowed.'}


# --- semantics ------------------------------------------------------------------------------


def test_actions_for_an_unseen_email_create_the_customer(raw):
    for path in ("customer/convert/", "customer/cancel/", "customer/unsubscribe/",
                 "customer/opt_in/"):
        email = f"new.{path.split('/')[1]}@example.com"
        assert raw("POST", path, json={"email": email}).status_code == 200
        profile = raw("GET", f"customers/{email}/").json()
        assert profile["email"] == email


def test_opt_in_keeps_extras_as_strings_and_resubscribes(raw):
    raw("POST", "customer/unsubscribe/", json={"email": "c@example.com"})
    profile = raw("GET", "customers/c@example.com/").json()
    assert profile["is_unsubscribed"] is True and profile["unsubscribe_date"]
    raw("POST", "customer/opt_in/", json={**fixture("opt_in_request"), "email": "c@example.com",
                                          "page": 3})
    profile = raw("GET", "customers/c@example.com/").json()
    assert profile["is_opted_in"] is True and profile["is_unsubscribed"] is False
    assert profile["unsubscribe_date"] is None
    assert profile["opt_in_info"] == {"type": "accepts marketing checkbox",
                                      "otherInfo": "accepted marketing on checkout page",
                                      "page": "3"}
    wire.CustomerSchema().load(profile)  # opt_in_date in the reference's own format


def test_convert_is_recorded_every_time_with_extras_as_strings(raw):
    body = fixture("convert_request")
    body["cart_data"]["channel"] = 7
    raw("POST", "customer/convert/", json=body)
    raw("POST", "customer/convert/", json=body)  # no idempotency key: a second conversion
    activity = raw.record("activity", "customer@example.com")
    assert len(activity["conversions"]) == 2
    assert activity["conversions"][0]["cart_data"]["metadata"] == {"channel": "7"}
    assert activity["cancels"] == 2  # a purchase ends the active journeys


def test_put_keeps_absent_fields_and_replaces_tags_and_metadata_whole(raw):
    raw("POST", "customers/", json={"email": "p@example.com", "first_name": "Pat",
                                    "tags": ["a", "b"], "metadata": {"x": 1, "y": 2}})
    updated = raw("PUT", "customers/p%40example.com/",
                  json={"email": "p@example.com", "tags": ["c"], "metadata": {"z": 3}}).json()
    assert updated["first_name"] == "Pat"
    assert updated["tags"] == ["c"] and updated["metadata"] == {"z": 3}


# --- rate limit -------------------------------------------------------------------------------


def test_above_ten_a_second_is_a_429_with_retry_after(start):
    sandbox = start(clock=ManualClock())  # all eleven in one instant, however slow the machine
    raw = Raw(sandbox.url)
    statuses = [raw("GET", "ping/") for _ in range(11)]
    assert [r.status_code for r in statuses[:10]] == [200] * 10
    limited = statuses[10]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {"detail": "Request was throttled. Expected available in 1 second."}
    assert "X-RateLimit-Limit" not in limited.headers


def test_the_limit_is_configurable(start):
    sandbox = start(clock=ManualClock(), limits=(Limit(3, 1),))
    raw = Raw(sandbox.url)
    assert [raw("GET", "ping/").status_code for _ in range(4)] == [200, 200, 200, 429]


# --- seeding --------------------------------------------------------------------------------


def test_seeding_is_deterministic_and_realistic():
    config = SandboxConfig(api_key=API_KEY, site_id=SITE_ID, seed_customers=60,
                           rate_limits=False)
    one, two = create_sandbox(config), create_sandbox(config)
    first = one.test_client().get("/_sandbox/stats").json["records"]
    assert first == two.test_client().get("/_sandbox/stats").json["records"]
    assert first["customers"] == 60 and first["conversions"] > 60
    headers = {"Authorization": f"Rejoiner {API_KEY}"}
    profiles = []
    for person in synthetic_customers(60):
        answer = one.test_client().get(f"/api/v1/{SITE_ID}/customers/{person.email}/",
                                       headers=headers)
        assert answer.status_code == 200
        profiles.append(answer.json)
        wire.CustomerSchema().load(answer.json)
    redacted = [p for p in profiles if p["tags"] == ["redacted"]]
    assert redacted and all(p["first_name"] == "" and p["is_unsubscribed"] for p in redacted)
    assert any(p["is_opted_in"] for p in profiles)
    assert any(p["is_unsubscribed"] for p in profiles if p not in redacted)
    assert len({p["metadata"].get("rfm") for p in profiles}) > 5  # a spread of RFM scores
    assert all(len(p["language"]) <= 2 for p in profiles)


def test_reset_drops_records_and_seeds_again(start):
    sandbox = start(seed_customers=3)
    raw = Raw(sandbox.url)
    raw("POST", "customers/", json={"email": "extra@example.com"})
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["records"]
    assert stats["customers"] == 4
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5).raise_for_status()
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["records"]
    assert stats["customers"] == 3


# --- every answer is RFC 8259 JSON ------------------------------------------------------------


def _strict_json(response: requests.Response):
    """The body as JSON, refusing the NaN / Infinity / -Infinity that Python's parser allows."""
    def refuse(name: str):
        raise AssertionError(f"bare {name} in {response.request.method} {response.url}: "
                             f"{response.text[:200]}")

    return json.loads(response.text, parse_constant=refuse)


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_refused_wherever_they_could_be_echoed(raw, number):
    email = "nan@example.com"
    writes = [
        ("POST", "customers/", f'{{"email": "{email}", "metadata": {{"x": {number}}}}}'),
        ("POST", "customers/", f'{{"email": "{email}", "age": {number}}}'),
        ("POST", "customer/opt_in/", f'{{"email": "{email}", "score": {number}}}'),
        ("POST", "customer/convert/", f'{{"email": "{email}", "cart_data": '
                                      f'{{"cart_value": 100, "x": {number}}}}}'),
        ("POST", "customer/convert/", f'{{"email": "{email}", "cart_items": [{{"product_id": '
                                      f'"P1", "price": {number}}}]}}'),
    ]
    raw("POST", "customers/", json={"email": "kept@example.com", "metadata": {"a": 1}})
    writes.append(("PUT", "customers/kept%40example.com/",
                   f'{{"email": "kept@example.com", "metadata": {{"a": {number}}}}}'))
    for method, path, text in writes:
        response = raw(method, path, data=text, headers={"Content-Type": "application/json"})
        body = _strict_json(response)
        assert response.status_code == 400, (path, response.text)
        assert body["detail"].startswith("JSON parse error - Out of range float values")
    assert raw("GET", f"customers/{email}/").status_code == 404  # nothing was stored
    kept = raw("GET", "customers/kept%40example.com/")
    assert _strict_json(kept)["metadata"] == {"a": 1}
    assert raw.record("activity", email) is None


def test_large_finite_numbers_are_echoed_as_json_numbers(raw):
    created = raw("POST", "customers/", data='{"email": "big@example.com", "metadata": '
                                             '{"x": 1e308, "y": -2.5e-300, "z": 10}}',
                  headers={"Content-Type": "application/json"})
    assert created.status_code == 200
    assert _strict_json(created)["metadata"] == {"x": 1e308, "y": -2.5e-300, "z": 10}
    assert _strict_json(raw("GET", "customers/big%40example.com/"))["metadata"]["x"] == 1e308


def test_the_json_writer_refuses_nan_rather_than_writing_it():
    app = create_sandbox(SandboxConfig(api_key=API_KEY, site_id=SITE_ID))
    with pytest.raises(ValueError):
        app.json.dumps({"x": float("nan")})


def _deep(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["customers/", "customer/convert/", "customer/cancel/",
                                  "customer/unsubscribe/", "customer/opt_in/"])
@pytest.mark.parametrize("text", [_deep(), '{"email": "d@example.com", "metadata": ' +
                                  '{"a": ' * 1000 + "1" + "}" * 1000 + "}"])
def test_deeply_nested_json_is_a_drf_parse_error(raw, path, text):
    response = raw("POST", path, data=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert _strict_json(response) == {
        "detail": "JSON parse error - JSON nested deeper than 64 levels"}
    assert raw("GET", "customers/d%40example.com/").status_code == 404
