"""The sandbox as the service: auth, validation and error bodies, triggers, upsert, win-back."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from connectors.rekindle import wire
from connectors.rekindle.sandbox import score
from connectors.sandbox_kit import ManualClock

from .conftest import REFERENCE_NOW

DAY = 86400
TODAY = REFERENCE_NOW.date()


def days_ago(n: int) -> str:
    return (TODAY - timedelta(days=n)).isoformat()


def person(i: int, **extra) -> dict:
    return {"name": f"Person {i}", "email": f"p{i}@example.com", **extra}


# ---- auth --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, headers", [
    (None, {}),
    (None, {"Authorization": "Basic dXNlcjpwYXNz"}),
    (None, {"Authorization": "Bearer "}),
    ("rk_live_someone_else", {}),
])
def test_a_missing_or_wrong_key_is_401(sandbox, key, headers):
    for method, path in [("GET", "/triggers/customer-status"),
                         ("GET", "/triggers/customer-returned"),
                         ("POST", "/actions/update-customer"),
                         ("GET", "/actions/find-customer")]:
        response = sandbox.call(method, path, key=key, headers=dict(headers))
        assert response.status_code == 401
        assert list(response.json()) == ["error"] and "API key" in response.json()["error"]


def test_a_plan_without_api_access_is_403(make_sandbox):
    sandbox = make_sandbox(no_api_plan=True)
    response = sandbox.call("GET", "/triggers/customer-status")
    assert response.status_code == 403
    assert response.json() == {"error": "Feature not available on your current plan. "
                                        "API access requires the Scale plan."}
    assert sandbox.call("GET", "/triggers/customer-status", key="wrong").status_code == 401


def test_errors_are_json_everywhere(sandbox):
    missing = sandbox.call("GET", "/triggers/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not found"}
    wrong_method = sandbox.call("DELETE", "/actions/update-customer")
    assert wrong_method.status_code == 405 and list(wrong_method.json()) == ["error"]
    sandbox.control("POST", "faults", json={"error_rate": 1.0})
    broken = sandbox.call("GET", "/triggers/customer-status")
    assert broken.status_code == 500 and "error" in broken.json()


# ---- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"email": "a@example.com"}, "name"),
    ({"name": "A"}, "email"),
    ({"name": "   ", "email": "a@example.com"}, "name"),
    ({"name": "A", "email": "not-an-email"}, "email"),
    ({"name": "A", "email": "a@example.com", "total_spent": "12.50"}, "total_spent"),
    ({"name": "A", "email": "a@example.com", "total_spent": -1}, "total_spent"),
    ({"name": "A", "email": "a@example.com", "purchase_count": 2.5}, "purchase_count"),
    ({"name": "A", "email": "a@example.com", "purchase_count": "3"}, "purchase_count"),
    ({"name": "A", "email": "a@example.com", "purchase_count": True}, "purchase_count"),
    ({"name": "A", "email": "a@example.com", "last_purchase_date": "15/01/2025"},
     "last_purchase_date"),
    ({"name": "A", "email": "a@example.com", "totalSpent": 1}, "totalSpent"),
])
def test_invalid_update_is_400_naming_the_field(sandbox, body, field):
    response = sandbox.upsert(body)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert f"{field}:" in response.json()["error"]
    assert response.headers["Content-Type"] == "application/json"
    assert sandbox.control("GET", "stats").json()["records"] == {"customers": 0}


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b"null"])
def test_a_body_that_is_not_a_json_object_is_400(sandbox, data):
    response = sandbox.call("POST", "/actions/update-customer", data=data,
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()


def test_find_customer_needs_a_valid_email(sandbox):
    for params in ({}, {"email": ""}, {"email": "nope"}):
        response = sandbox.call("GET", "/actions/find-customer", params=params)
        assert response.status_code == 400
        assert response.json()["error"].startswith("Missing or invalid parameter. email:")


def test_reject_keys_fault_answers_400_with_the_message(sandbox):
    sandbox.control("POST", "faults", json={"reject_keys": {"p1@example.com": "Blocked email"}})
    assert sandbox.upsert(person(1)).json() == {"error": "Blocked email"}
    assert sandbox.upsert(person(2)).status_code == 200


# ---- upsert ------------------------------------------------------------------------------------

def test_upsert_matches_by_email_and_keeps_fields_left_out(sandbox):
    first = sandbox.upsert(person(1, phone="+27821234567", total_spent=10.5, purchase_count=1,
                                  last_purchase_date=days_ago(3))).json()["customer"]
    again = sandbox.upsert({"name": "Person One", "email": "P1@Example.COM",
                            "purchase_count": 2}).json()["customer"]
    assert again["id"] == first["id"] and again["email"] == "p1@example.com"
    assert again["name"] == "Person One" and again["phone"] == "+27821234567"
    assert again["total_spent"] == 10.5 and again["purchase_count"] == 2
    cleared = sandbox.upsert(person(1, phone=None)).json()["customer"]
    assert cleared["phone"] is None and cleared["purchase_count"] == 2
    assert sandbox.control("GET", "stats").json()["records"] == {"customers": 1}


def test_money_is_echoed_exactly(sandbox):
    body = wire.dumps(person(1, total_spent=wire.loads("12345678901234.567")))
    response = sandbox.call("POST", "/actions/update-customer", data=body,
                            headers={"Content-Type": "application/json"})
    assert b'"total_spent":12345678901234.567' in response.content
    integral = sandbox.upsert(person(2, total_spent=4200)).content
    assert b'"total_spent":4200.00' in integral


def test_upsert_rescores_at_once(sandbox):
    fresh = sandbox.upsert(person(1, last_purchase_date=days_ago(1), purchase_count=5))
    assert fresh.json()["customer"]["status"] == "active"
    stale = sandbox.upsert(person(2, last_purchase_date=days_ago(600), purchase_count=2))
    assert stale.json()["customer"]["status"] == "lost"
    assert stale.json()["customer"]["engagement_score"] < fresh.json()["customer"][
        "engagement_score"]


def test_scoring_rule():
    today = date(2025, 6, 1)
    # The reference's examples: lapsed after 195 days with 7 purchases, active after 80 with 8.
    assert score(date(2024, 9, 1), 7, date(2025, 3, 15))[0] == "lapsed"
    assert score(date(2025, 1, 15), 8, date(2025, 4, 5))[0] == "active"
    statuses = [score(today - timedelta(days=d), 3, today)[0] for d in (10, 130, 250, 500)]
    assert statuses == ["active", "at_risk", "lapsed", "lost"]
    # The score falls with time since the last purchase and rises with the count.
    by_age = [score(today - timedelta(days=d), 3, today)[1] for d in (0, 30, 90, 300)]
    assert by_age == sorted(by_age, reverse=True) and by_age[0] > by_age[-1]
    by_count = [score(today - timedelta(days=40), n, today)[1] for n in (1, 3, 6, 10)]
    assert by_count == sorted(by_count) and by_count[0] < by_count[-1]
    assert all(0 <= score(today - timedelta(days=d), n, today)[1] <= 100
               for d in (0, 5, 5000) for n in (0, 1, 100))
    assert score(None, 0, today)[0] == "active"
    assert score(today + timedelta(days=3), 2, today)[0] == "active"  # a future date


# ---- triggers ----------------------------------------------------------------------------------

def test_customer_status_lists_at_most_10_needing_attention_newest_first(sandbox):
    sandbox.upsert(person(0, last_purchase_date=days_ago(1), purchase_count=3))  # active
    for i in range(1, 13):
        sandbox.upsert(person(i, last_purchase_date=days_ago(200 + i), purchase_count=3))
        sandbox.advance(60)
    items = sandbox.call("GET", "/triggers/customer-status").json()
    assert len(items) == 10
    assert [item["email"] for item in items] == [f"p{i}@example.com" for i in range(12, 2, -1)]
    assert {item["status"] for item in items} <= {"at_risk", "lapsed", "lost"}
    stamps = [item["updated_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)
    wire.CustomerItem(many=True).load(items)


def test_status_moves_with_the_clock_and_stamps_updated_at(sandbox):
    sandbox.upsert(person(1, last_purchase_date=days_ago(0), purchase_count=4))
    assert sandbox.call("GET", "/triggers/customer-status").json() == []
    sandbox.advance(300 * DAY)
    items = sandbox.call("GET", "/triggers/customer-status").json()
    assert [i["email"] for i in items] == ["p1@example.com"]
    assert items[0]["status"] in ("lapsed", "lost")
    assert items[0]["updated_at"].startswith((TODAY + timedelta(days=300)).isoformat())


# ---- win-back ----------------------------------------------------------------------------------

def test_a_new_purchase_after_a_winback_is_a_return(sandbox):
    sandbox.upsert(person(1, last_purchase_date=days_ago(300), purchase_count=3))
    sent = sandbox.control("POST", "winback", json={"email": "P1@example.com"})
    assert sent.status_code == 200 and sent.json()["status"] in ("lapsed", "lost")
    sandbox.advance(DAY)
    answer = sandbox.upsert(person(1, last_purchase_date=(TODAY + timedelta(days=1))
                                   .isoformat(), purchase_count=4)).json()["customer"]
    assert answer["returned"] is True and answer["status"] == "active"
    returned = sandbox.call("GET", "/triggers/customer-returned").json()
    assert [r["email"] for r in returned] == ["p1@example.com"]
    assert returned[0]["returned_at"] == answer["updated_at"]
    # The attribution is spent: the same purchase sent again is no return.
    assert sandbox.upsert(person(1, purchase_count=4)).json()["customer"]["returned"] is False


def test_a_purchase_without_a_winback_or_before_it_is_no_return(sandbox):
    sandbox.upsert(person(1, last_purchase_date=days_ago(300), purchase_count=3))
    assert sandbox.upsert(person(1, purchase_count=4)).json()["customer"]["returned"] is False
    sandbox.upsert(person(2, last_purchase_date=days_ago(300), purchase_count=3))
    sandbox.control("POST", "winback", json={"email": "p2@example.com"})
    old = sandbox.upsert(person(2, last_purchase_date=days_ago(100), purchase_count=4))
    assert old.json()["customer"]["returned"] is False
    assert sandbox.call("GET", "/triggers/customer-returned").json() == []
    by_count = sandbox.upsert(person(2, purchase_count=5)).json()["customer"]
    assert by_count["returned"] is True


def test_winback_refuses_active_and_unknown_customers(sandbox):
    sandbox.upsert(person(1, last_purchase_date=days_ago(2), purchase_count=3))
    active = sandbox.control("POST", "winback", json={"email": "p1@example.com"})
    assert active.status_code == 409 and "active" in active.json()["error"]
    unknown = sandbox.control("POST", "winback", json={"email": "nobody@example.com"})
    assert unknown.status_code == 404 and unknown.json() == {"error": "Customer not found"}
    assert sandbox.control("POST", "winback", json={}).status_code == 400


def test_customer_returned_lists_at_most_10_newest_first(sandbox):
    for i in range(12):
        sandbox.upsert(person(i, last_purchase_date=days_ago(400), purchase_count=2))
        sandbox.control("POST", "winback", json={"email": f"p{i}@example.com"})
    for i in range(12):
        sandbox.advance(60)
        assert sandbox.upsert(person(i, purchase_count=3)).json()["customer"]["returned"]
    items = sandbox.call("GET", "/triggers/customer-returned").json()
    assert [item["email"] for item in items] == [f"p{i}@example.com" for i in range(11, 1, -1)]


# ---- seeding and control -----------------------------------------------------------------------

def test_seeding_is_deterministic_and_realistic(make_sandbox):
    one, two = make_sandbox(seed_customers=300), make_sandbox(seed_customers=300)
    status_one = one.call("GET", "/triggers/customer-status").json()
    assert status_one == two.call("GET", "/triggers/customer-status").json()
    assert len(status_one) == 10
    assert one.call("GET", "/triggers/customer-returned").json() == \
        two.call("GET", "/triggers/customer-returned").json()
    counts = one.control("GET", "stats").json()["records"]["customers"]
    assert 280 <= counts < 300  # the redacted are not held
    statuses = set()
    for i in range(0, 300, 7):
        record = one.control("GET", f"records/customers/{_synthetic_email(i)}")
        if record.status_code == 200:
            statuses.add(record.json()["status"])
    assert {"active", "lost"} <= statuses and len(statuses) >= 3


def _synthetic_email(index: int) -> str:
    from datetime import datetime, timezone

    from connectors.sandbox_kit import synthetic_customers
    people = list(synthetic_customers(index + 1, now=datetime.now(timezone.utc)))
    return people[index].email


def test_reset_drops_writes_and_reseeds(make_sandbox):
    sandbox = make_sandbox(seed_customers=20)
    before = sandbox.control("GET", "stats").json()["records"]["customers"]
    sandbox.upsert(person(1))
    assert sandbox.control("GET", "stats").json()["records"]["customers"] == before + 1
    sandbox.control("POST", "reset")
    assert sandbox.control("GET", "stats").json()["records"]["customers"] == before
    assert sandbox.control("POST", "seed", json={"customers": 5, "seed": 9}).json()["added"] >= 4
    assert sandbox.control("GET", "records/customers/p1@example.com").status_code == 404


def test_injected_429_uses_the_references_retry_after_unless_a_test_sets_one(sandbox):
    sandbox.control("POST", "faults", json={"burst_429": 1})
    response = sandbox.call("GET", "/triggers/customer-status")
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"
    assert response.json() == {"error": wire.ERROR_TOO_MANY}
    sandbox.control("POST", "faults", json={"burst_429": 1, "retry_after": 2})
    assert sandbox.call("GET", "/triggers/customer-status").headers["Retry-After"] == "2"


def test_the_sliding_window_frees_as_the_clock_moves(make_sandbox):
    # A clock that moves only when told: the 121 requests share one instant however slow.
    sandbox = make_sandbox(clock=ManualClock(start=REFERENCE_NOW.timestamp()))
    for _ in range(120):
        assert sandbox.call("GET", "/triggers/customer-returned").status_code == 200
    assert sandbox.call("GET", "/triggers/customer-returned").status_code == 429
    sandbox.advance(61)
    assert sandbox.call("GET", "/triggers/customer-returned").status_code == 200
    # A wrong key is not this key: it counts against the address's own window (and is refused
    # for being wrong, not for the rate).
    assert sandbox.call("GET", "/triggers/customer-returned", key="other").status_code == 401


def test_the_bearer_scheme_is_read_in_any_case(sandbox):
    for scheme in ("bearer", "BEARER"):
        response = sandbox.call("GET", "/triggers/customer-status", key=None,
                                headers={"Authorization": f"{scheme} {sandbox.config.api_key}"})
        assert response.status_code == 200, response.text


# ---- numbers the sandbox cannot hold ------------------------------------------------------------

OUT_OF_RANGE = [
    ("total_spent", "1e30"),
    ("total_spent", "1e15"),
    ("total_spent", "1E+400"),
    ("total_spent", "-0.01"),
    ("total_spent", "0.00001"),
    ("total_spent", "1e-1000000"),
    ("purchase_count", "1e30"),
    ("purchase_count", "1E+400"),
    ("purchase_count", "2147483648"),
    ("purchase_count", "100000000000000000000000000000"),
    ("purchase_count", "-1"),
    ("purchase_count", "-1e30"),
]


def _raw_upsert(sandbox, text: str):
    return sandbox.call("POST", "/actions/update-customer", data=text.encode(),
                        headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("field, number", OUT_OF_RANGE)
def test_out_of_range_numbers_are_a_400_and_store_nothing(sandbox, field, number):
    kept = person(1, last_purchase_date=days_ago(400), total_spent=10.5, purchase_count=3)
    assert sandbox.upsert(kept).status_code == 200
    before = sandbox.control("GET", "records/customers/p1@example.com").json()

    for email in ("p1@example.com", "p2@example.com"):  # an update, and a create
        text = f'{{"name": "Person", "email": "{email}", "{field}": {number}}}'
        response = _raw_upsert(sandbox, text)
        assert response.status_code == 400, response.text
        assert list(response.json()) == ["error"] and f"{field}:" in response.json()["error"]

    assert sandbox.control("GET", "records/customers/p1@example.com").json() == before
    assert sandbox.control("GET", "stats").json()["records"] == {"customers": 1}
    status = sandbox.call("GET", "/triggers/customer-status")
    assert status.status_code == 200 and [c["email"] for c in status.json()] == ["p1@example.com"]
    found = sandbox.call("GET", "/actions/find-customer", params={"email": "p1@example.com"})
    assert found.status_code == 200 and found.json()[0]["total_spent"] == 10.5


def test_the_largest_numbers_held_are_accepted_and_echoed_exactly(sandbox):
    text = ('{"name": "Big", "email": "big@example.com", "total_spent": 999999999999999.9999, '
            '"purchase_count": 2147483647}')
    response = _raw_upsert(sandbox, text)
    assert response.status_code == 200, response.text
    assert b'"total_spent":999999999999999.9999' in response.content
    assert response.json()["customer"]["purchase_count"] == 2147483647
    exponent = _raw_upsert(sandbox, '{"name": "E", "email": "e@example.com", '
                                     '"total_spent": 5e2, "purchase_count": 8.0}')
    assert b'"total_spent":500.00' in exponent.content
    assert exponent.json()["customer"]["purchase_count"] == 8


@pytest.mark.parametrize("text", ['{"name": "A", "email": "a@example.com", "total_spent": NaN}',
                                  '{"name": "A", "email": "a@example.com", "total_spent": '
                                  'Infinity}'])
def test_nan_and_infinity_are_not_json(sandbox, text):
    response = _raw_upsert(sandbox, text)
    assert response.status_code == 400
    assert response.json() == {"error": "Missing or invalid parameter. The body must be JSON."}
    assert sandbox.control("GET", "stats").json()["records"] == {"customers": 0}


# ---- nesting -------------------------------------------------------------------------------------

def _deep(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [
    _deep(),
    '{"name": "A", "email": "a@example.com", "phone": ' + _deep() + "}",
    '{"a": ' * 1000 + "1" + "}" * 1000,
])
def test_deeply_nested_json_is_rekindles_400(sandbox, text):
    response = _raw_upsert(sandbox, text)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert list(response.json()) == ["error"]
    assert "nested deeper than 64 levels" in response.json()["error"]
    for path in ("winback", "seed"):
        control = sandbox.control("POST", path, data=text,
                                  headers={"Content-Type": "application/json"})
        assert control.status_code == 400 and list(control.json()) == ["error"]
