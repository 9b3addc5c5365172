"""The RCI sandbox over real HTTP: documents, pages, auth and error bodies, seeding, limits."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.rci import wire
from connectors.rci.sandbox import PAGE_SIZE, create_sandbox
from connectors.sandbox_kit import ManualClock, SandboxConfig, start_sandbox

FIXTURES = Path(__file__).resolve().parents[3] / "connectors" / "rci" / "fixtures"
PROD = "https://repeat-customer-insights.littlestreamsoftware.com/api/v1"
TIMEOUT = 5


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def get(url: str, key: str | None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(url, headers=headers, timeout=TIMEOUT, **kw)


def seed(sandbox, n: int = 0, records=(), **extra) -> None:
    body = {"customers": n, "records": list(records), **extra}
    r = requests.post(f"{sandbox.url}/_sandbox/seed", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text


def test_view_answers_the_reference_example(sandbox, base, api_key):
    example = fixture("view_customer_response.json")
    seed(sandbox, records=[example["data"]])
    r = get(f"{base}/customers/123456", api_key)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == wire.MEDIA_TYPE
    body = r.json()
    assert body["data"]["links"]["self"] == f"{base}/customers/123456"
    body["data"]["links"]["self"] = body["data"]["links"]["self"].replace(base, PROD)
    body["data"]["attributes"].pop("redacted_at")  # null: the example leaves it out
    assert body == example


def test_list_has_the_reference_shape(sandbox, base, api_key):
    example = fixture("list_customers_response.json")
    seed(sandbox, n=PAGE_SIZE, records=[example["data"][0]])
    body = get(f"{base}/customers", api_key).json()
    assert list(body) == list(example)  # links, data, jsonapi
    assert body["jsonapi"] == example["jsonapi"]
    assert body["links"]["first"] == f"{base}/customers"
    assert set(body["links"]) == {"first", "next"}
    assert len(body["data"]) == PAGE_SIZE
    assert body["data"][0]["id"] == "123456"  # ordered by id
    for resource in body["data"]:
        assert list(resource) == list(example["data"][0])
        assert list(resource["attributes"]) == list(wire.ATTRIBUTES)
    assert wire.LIST_DOCUMENT.load(body) == body
    nxt = urlsplit(body["links"]["next"])
    assert nxt.path == urlsplit(example["links"]["next"]).path
    assert nxt.query.startswith("page%5Bcursor%5D=")  # encoded as in the reference
    assert list(parse_qs(nxt.query)) == ["page[cursor]"]


def test_pages_walk_every_customer_once_and_the_last_has_no_next(sandbox, base, api_key):
    seed(sandbox, n=250)
    url, ids, pages = f"{base}/customers", [], 0
    while url:
        body = get(url, api_key).json()
        ids += [d["id"] for d in body["data"]]
        url = body["links"].get("next")
        pages += 1
    assert pages == 3 and len(ids) == 250 == len(set(ids)) and ids == sorted(ids)


def test_empty_account(base, api_key):
    body = get(f"{base}/customers", api_key).json()
    assert body == {"links": {"first": f"{base}/customers"}, "data": [], "jsonapi": wire.JSONAPI}


def test_seed_is_deterministic_and_replaces(sandbox, base, api_key):
    seed(sandbox, n=60)
    first = get(f"{base}/customers", api_key).json()["data"]
    seed(sandbox, n=60)
    assert get(f"{base}/customers", api_key).json()["data"] == first
    seed(sandbox, n=3)
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=TIMEOUT).json()["records"] == {
        "customers": 3
    }


def test_seeded_customers_are_realistic(sandbox, base, api_key):
    seed(sandbox, n=200)
    resources = []
    url = f"{base}/customers"
    while url:
        body = get(url, api_key).json()
        resources += body["data"]
        url = body["links"].get("next")
    attrs = [r["attributes"] for r in resources]
    redacted = [a for a in attrs if a["redacted_at"]]
    assert 1 <= len(redacted) <= 10
    for a in redacted:
        assert (a["first_name"], a["last_name"], a["email"]) == (None, None, None)
        assert a["email_marketing_consent"] is False and a["sms_marketing_consent"] is False
    live = [a for a in attrs if not a["redacted_at"]]
    assert all(a["email"] and a["first_name"] for a in live)
    assert {a["grade"] for a in attrs} <= set("ABCDF") and len({a["grade"] for a in attrs}) >= 3
    assert len({a["rfm"] for a in attrs}) >= 15
    assert all(a["rfm"] == 100 * a["recency_score"] + 10 * a["frequency_score"]
               + a["monetary_score"] for a in attrs)
    no_orders = [a for a in attrs if a["orders_count"] == 0]
    assert no_orders and all(a["recent_order_at"] is None and a["cohort"] is None
                             and a["ltv_cents"] == 0 for a in no_orders)
    assert any(a["email_marketing_consent"] for a in live)
    assert any(not a["sms_marketing_consent"] for a in live)
    assert any(a["segments"] for a in attrs)


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer", "Token x"])
def test_401_is_a_json_api_error_document(base, header):
    headers = {"Authorization": header} if header else {}
    r = requests.get(f"{base}/customers", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == wire.MEDIA_TYPE
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
    body = r.json()
    assert wire.ERROR_DOCUMENT.load(body) == body
    assert body["errors"][0]["status"] == "401" and body["jsonapi"] == {"version": "1.0"}


def test_401_comes_before_404(base):
    assert get(f"{base}/customers/nobody", "wrong").status_code == 401


def test_bearer_scheme_is_case_insensitive(base, api_key):
    r = requests.get(f"{base}/customers", headers={"Authorization": f"bearer {api_key}"},
                     timeout=TIMEOUT)
    assert r.status_code == 200


def test_404_for_an_unknown_customer_and_path(base, api_key):
    for url in (f"{base}/customers/nobody", f"{base}/orders"):
        r = get(url, api_key)
        assert r.status_code == 404
        body = r.json()
        assert wire.ERROR_DOCUMENT.load(body) == body
        assert body["errors"][0]["status"] == "404"


@pytest.mark.parametrize(
    "params",
    [
        {"page[cursor]": "abc123"},  # the reference's example value is not one of ours
        {"page[cursor]": ""},
        {"page[size]": "10"},
        {"page": "2"},
    ],
)
def test_422_for_bad_page_parameters(sandbox, base, api_key, params):
    seed(sandbox, n=5)
    r = get(f"{base}/customers", api_key, params=params)
    assert r.status_code == 422
    body = r.json()
    assert wire.ERROR_DOCUMENT.load(body) == body
    assert body["errors"][0]["status"] == "422" and body["errors"][0]["detail"]


def test_422_for_a_tampered_cursor(sandbox, base, api_key):
    seed(sandbox, n=150)
    nxt = get(f"{base}/customers", api_key).json()["links"]["next"]
    cursor = parse_qs(urlsplit(nxt).query)["page[cursor]"][0]
    assert get(f"{base}/customers", api_key, params={"page[cursor]": cursor}).status_code == 200
    payload, sig = cursor.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + sig
    r = get(f"{base}/customers", api_key, params={"page[cursor]": forged})
    assert r.status_code == 422


def test_405_for_writes(base, api_key):
    r = requests.post(f"{base}/customers", json={}, headers={"Authorization": f"Bearer {api_key}"},
                      timeout=TIMEOUT)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert r.json()["errors"][0]["status"] == "405"


def test_seed_refuses_invalid_records(sandbox):
    bad = fixture("customer_example.json")["data"]
    bad["attributes"]["grade"] = "E"
    r = requests.post(f"{sandbox.url}/_sandbox/seed", json={"records": [bad]}, timeout=TIMEOUT)
    assert r.status_code == 400 and "0" in r.json()["errors"]


def test_reset_restores_the_configured_seed(api_key):
    app = create_sandbox(SandboxConfig(api_key=api_key, seed_customers=7))
    with start_sandbox(app) as running:
        requests.post(f"{running.url}/_sandbox/seed", json={"customers": 1}, timeout=TIMEOUT)
        requests.post(f"{running.url}/_sandbox/reset", timeout=TIMEOUT)
        stats = requests.get(f"{running.url}/_sandbox/stats", timeout=TIMEOUT).json()
        assert stats["records"] == {"customers": 7}


def test_60_a_minute_then_429_with_retry_after(api_key):
    clock = ManualClock()  # the 61 requests fall in one window however slowly they run
    app = create_sandbox(SandboxConfig(api_key=api_key, clock=clock))
    with start_sandbox(app) as running, requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {api_key}"
        url = f"{running.url}/api/v1/customers"
        assert all(s.get(url, timeout=TIMEOUT).status_code == 200 for _ in range(60))
        r = s.get(url, timeout=TIMEOUT)
        assert r.status_code == 429
        assert r.headers["Content-Type"] == wire.MEDIA_TYPE
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        body = r.json()
        assert wire.ERROR_DOCUMENT.load(body) == body
        assert body["errors"][0] == {
            "status": "429",
            "title": "Too Many Requests",
            "detail": body["errors"][0]["detail"],
        }
        assert "X-RateLimit-Limit" not in r.headers
        # A wrong token is not this credential: it counts against the address's own window.
        other = requests.get(url, headers={"Authorization": "Bearer other"}, timeout=TIMEOUT)
        assert other.status_code == 401
        clock.advance(60)  # the sliding window has passed
        assert s.get(url, timeout=TIMEOUT).status_code == 200


# --- bodies: the service reads none; the control routes read theirs bounded --------------------


def _deep(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [_deep(), '{"records": ' + _deep() + "}", '{"size": NaN}'])
def test_deep_or_non_finite_json_never_gets_a_500_or_html(sandbox, base, api_key, text):
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    for method in ("POST", "PUT", "PATCH"):  # the API is read only: 405, body unread
        r = requests.request(method, f"{base}/customers", data=text, headers=headers,
                             timeout=TIMEOUT)
        assert r.status_code == 405 and r.headers["Content-Type"] == wire.MEDIA_TYPE
        assert wire.ERROR_DOCUMENT.load(r.json()) == r.json()
    for route in ("seed", "page-size"):
        r = requests.post(f"{sandbox.url}/_sandbox/{route}", data=text, timeout=TIMEOUT,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), (route, r.text[:200])


def test_outside_the_base_errors_are_json_but_not_the_apis(sandbox, api_key):
    # A base URL without /v1 must not look like the API (the client's check relies on it).
    r = requests.get(f"{sandbox.url}/api/customers/x", timeout=TIMEOUT,
                     headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    assert "errors" not in r.json() and r.json()["error"]
