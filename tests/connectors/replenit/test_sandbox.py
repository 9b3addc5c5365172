"""The sandbox over real HTTP: the reference's examples, auth, validation bodies, semantics."""

from __future__ import annotations

import copy

import pytest
import requests
from flask import request as flask_request

from connectors.replenit import wire
from connectors.replenit.sandbox import create_sandbox, seed_records
from connectors.sandbox_kit import ManualClock, SandboxConfig, kit_state, start_sandbox

from .conftest import TENANT
from .test_wire import fixture

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture
def sandbox(api_key, serve):
    """The conftest's sandbox on a clock that moves only when a test advances it, so counts
    inside a rate window never depend on how fast the machine runs the test."""
    return serve(create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT,
                                              clock=ManualClock())))


@pytest.fixture
def call(base, api_key):
    def call(method, path, body=None, *, key=api_key, tenant=TENANT, raw=None, **kw):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["x-replenit-auth-key"] = key
        data = raw if raw is not None else (wire.dumps(body) if body is not None else None)
        return requests.request(method, f"{base}{path.format(t=tenant)}", data=data,
                                headers=headers, timeout=10, **kw)
    return call


def stats(base):
    return requests.get(f"{base}/_sandbox/stats", timeout=5).json()["records"]


def record(base, kind, key):
    r = requests.get(f"{base}/_sandbox/records/{kind}/{key}", timeout=5)
    return wire.loads(r.content) if r.status_code == 200 else None


def errors_of(response):
    assert response.status_code == 400
    body = response.json()
    assert wire.ErrorEnvelopeSchema().validate(body) == {}
    assert body["message"] == "Validation failed"
    return body["errors"]


# --- the reference's examples ---------------------------------------------------------------------


@pytest.mark.parametrize("kind, request_fixture, response_fixture", [
    ("customers", "customers_request.json", "customers_response.json"),
    ("customers", "customers_request_minimal.json", "customers_response.json"),
    ("orders", "orders_request.json", "orders_response.json"),
    ("products", "products_request.json", "products_response.json"),
])
def test_examples_answer_like_the_reference(call, base, kind, request_fixture, response_fixture):
    r = call("POST", f"/{kind}/{{t}}", fixture(request_fixture))
    assert r.status_code == 200
    body, expected = r.json(), fixture(response_fixture)
    assert wire.EnvelopeSchema().validate(body) == {}
    assert body.keys() == expected.keys() and body["data"].keys() == expected["data"].keys()
    assert body["message"] == expected["message"]
    assert body["data"]["count"] == expected["data"]["count"]
    assert r.headers["Content-Type"].startswith("application/json")
    for name in RATE_HEADERS:
        assert r.headers[name].isdigit()


def test_stored_records_keep_exact_numbers(call, base):
    call("POST", "/orders/{t}", fixture("orders_request.json"))
    call("POST", "/products/{t}", fixture("products_request.json"))
    assert record(base, "orders", "O-789") == fixture("orders_request.json")[0]
    assert record(base, "products", "P-42") == fixture("products_request.json")[0]


def test_reference_error_example(call, base):
    r = call("POST", "/customers/{t}", [{"CustomerId": "x" * 101}])
    assert r.json() == fixture("validation_error_response.json")
    assert stats(base)["customers"] == 0


# --- auth and tenant ------------------------------------------------------------------------------


@pytest.mark.parametrize("key, tenant, status, message", [
    (None, TENANT, 401, "Unauthorized: missing or invalid x-replenit-auth-key."),
    ("wrong", TENANT, 401, "Unauthorized: missing or invalid x-replenit-auth-key."),
    ("wrong", "other-tenant", 401, "Unauthorized: missing or invalid x-replenit-auth-key."),
    ("", TENANT, 401, "Unauthorized: missing or invalid x-replenit-auth-key."),
    (..., "00000000-0000-0000-0000-000000000000", 404, "Tenant not found."),
])
@pytest.mark.parametrize("method, path", [
    ("POST", "/customers/{t}"), ("DELETE", "/customers/{t}?customerId=C-1"),
    ("DELETE", "/orders/{t}/O-1"), ("DELETE", "/products/{t}/P-1/variants/V-1"),
])
def test_auth_is_checked_before_the_tenant(call, api_key, key, tenant, status, message,
                                           method, path):
    r = call(method, path, [] if method == "POST" else None,
             key=api_key if key is ... else key, tenant=tenant)
    assert r.status_code == status
    assert r.json() == {"success": False, "message": message, "data": {}}
    for name in RATE_HEADERS:
        assert name in r.headers


def test_unknown_path_and_method(call):
    r = call("GET", "/customers/{t}")
    assert r.status_code == 405 and r.json()["success"] is False
    assert "POST" in r.headers["Allow"]
    r = call("POST", "/carts/{t}", [])
    assert r.status_code == 404 and r.json() == {"success": False, "message": "Not found.",
                                                 "data": {}}


# --- validation -----------------------------------------------------------------------------------


def valid_order(**changes):
    order = copy.deepcopy(fixture("orders_request.json")[0])
    order.update(changes)
    return order


def valid_product():
    return copy.deepcopy(fixture("products_request.json")[0])


@pytest.mark.parametrize("kind", ["customers", "orders", "products"])
@pytest.mark.parametrize("raw", ['{"CustomerId": "C-1"}', '"x"', "7", "null", "not json", ""])
def test_body_must_be_an_array(call, base, kind, raw):
    errors = errors_of(call("POST", f"/{kind}/{{t}}", raw=raw))
    assert list(errors) == ["$"]


def test_non_object_record(call):
    assert errors_of(call("POST", "/customers/{t}", [{"CustomerId": "C"}, 5])) == {
        "[1]": ["The record must be a JSON object."]}


def test_empty_array_is_fine(call):
    r = call("POST", "/orders/{t}", [])
    assert r.status_code == 200 and r.json()["data"]["count"] == 0


def test_customer_needs_id_or_email(call, base):
    assert errors_of(call("POST", "/customers/{t}", [{"Name": "Ann"}])) == {
        "[0].Email": ["The Email field is required."]}
    assert errors_of(call("POST", "/customers/{t}", [{"CustomerId": "", "Email": None}])) == {
        "[0].Email": ["The Email field is required."]}
    assert call("POST", "/customers/{t}", [{"Email": "ann@example.com"}]).status_code == 200
    assert call("POST", "/customers/{t}", [{"CustomerId": "C-1"}]).status_code == 200
    assert stats(base)["customers"] == 2


def test_customer_id_length(call):
    assert call("POST", "/customers/{t}", [{"CustomerId": "x" * 100}]).status_code == 200
    assert errors_of(call("POST", "/customers/{t}", [{"CustomerId": "x" * 101,
                                                       "Email": "a@example.com"}])) == {
        "[0].CustomerId": ["Maximum length is 100 characters."]}


@pytest.mark.parametrize("email", ["john", "john@", "@example.com", "jo hn@example.com",
                                   "john@example", "a@b@example.com"])
def test_malformed_email(call, email):
    assert errors_of(call("POST", "/customers/{t}", [{"CustomerId": "C", "Email": email}])) == {
        "[0].Email": [wire.EMAIL_INVALID]}
    assert errors_of(call("POST", "/orders/{t}", [valid_order(Email=email)])) == {
        "[0].Email": [wire.EMAIL_INVALID]}


@pytest.mark.parametrize("field", ["OrderId", "CustomerId", "Email", "OrderDate", "TotalRevenue",
                                   "Currency", "OrderItems"])
def test_order_required_fields(call, field):
    order = valid_order()
    del order[field]
    assert errors_of(call("POST", "/orders/{t}", [order])) == {
        f"[0].{field}": [f"The {field} field is required."]}


@pytest.mark.parametrize("field", ["ProductId", "Sku", "Quantity", "Price"])
def test_order_item_required_fields(call, field):
    order = valid_order()
    del order["OrderItems"][1][field]
    assert errors_of(call("POST", "/orders/{t}", [valid_order(), order])) == {
        f"[1].OrderItems[1].{field}": [f"The {field} field is required."]}


@pytest.mark.parametrize("date", ["2025-08-22T21:00:00+00:00", "2025-08-22T21:00:00",
                                  "2025-08-22", "2025-08-22T21:00:00z", "22/08/2025 21:00",
                                  "2025-08-22 21:00:00Z", "2025-13-22T21:00:00Z"])
def test_order_date_must_be_utc_with_z(call, date):
    assert errors_of(call("POST", "/orders/{t}", [valid_order(OrderDate=date)])) == {
        "[0].OrderDate": [wire.ORDER_DATE_INVALID]}


def test_order_date_fractions_accepted(call):
    r = call("POST", "/orders/{t}", [valid_order(OrderDate="2025-08-22T21:00:00.123Z")])
    assert r.status_code == 200


def test_empty_order_items(call):
    assert errors_of(call("POST", "/orders/{t}", [valid_order(OrderItems=[])])) == {
        "[0].OrderItems": ["The OrderItems field must hold at least 1 item."]}


def test_type_errors(call):
    order = valid_order(TotalRevenue="89.97", IsOrderCancelled="false")
    order["OrderItems"][0]["Quantity"] = 2.5
    assert errors_of(call("POST", "/orders/{t}", [order])) == {
        "[0].TotalRevenue": ["The TotalRevenue field must be a number."],
        "[0].IsOrderCancelled": ["The IsOrderCancelled field must be a boolean."],
        "[0].OrderItems[0].Quantity": ["The Quantity field must be an integer."]}


@pytest.mark.parametrize("field", ["ProductId", "ProductName", "ProductVariants"])
def test_product_required_fields(call, field):
    product = valid_product()
    del product[field]
    assert errors_of(call("POST", "/products/{t}", [product])) == {
        f"[0].{field}": [f"The {field} field is required."]}


@pytest.mark.parametrize("field", ["VariantId", "Sku", "Name", "OriginalPrice", "Currency",
                                   "IsAvailable"])
def test_variant_required_fields(call, field):
    product = valid_product()
    del product["ProductVariants"][0][field]
    assert errors_of(call("POST", "/products/{t}", [product])) == {
        f"[0].ProductVariants[0].{field}": [f"The {field} field is required."]}


@pytest.mark.parametrize("kind, limit, make", [
    ("customers", 500, lambda i: {"CustomerId": f"C-{i}"}),
    ("orders", 200, lambda i: valid_order(OrderId=f"O-{i}")),
    ("products", 100, lambda i: {**valid_product(), "ProductId": f"P-{i}"}),
])
def test_batch_maximum(call, base, kind, limit, make):
    errors = errors_of(call("POST", f"/{kind}/{{t}}", [make(i) for i in range(limit + 1)]))
    assert errors == {"$": [f"A request may hold at most {limit} {kind}; this one holds "
                            f"{limit + 1}."]}
    assert stats(base)[kind] == 0
    r = call("POST", f"/{kind}/{{t}}", [make(i) for i in range(limit)])
    assert r.status_code == 200 and r.json()["data"]["count"] == limit
    assert stats(base)[kind] == limit


def test_one_invalid_record_rejects_the_whole_batch(call, base):
    body = [{"CustomerId": "C-1"}, {"Email": "bad"}, {"CustomerId": "C-3"}, {}]
    assert errors_of(call("POST", "/customers/{t}", body)) == {
        "[1].Email": [wire.EMAIL_INVALID], "[3].Email": ["The Email field is required."]}
    assert stats(base)["customers"] == 0


def test_unknown_fields_are_ignored(call, base):
    assert call("POST", "/customers/{t}", [{"CustomerId": "C-1", "Nickname": "x"}]).ok
    assert record(base, "customers", "C-1") == {"CustomerId": "C-1"}


def test_faults_reject_keys(call, base):
    requests.post(f"{base}/_sandbox/faults", json={"reject_keys": {"C-2": "Blocked."}}, timeout=5)
    assert errors_of(call("POST", "/customers/{t}", [{"CustomerId": "C-1"},
                                                     {"CustomerId": "C-2"}])) == {
        "[1].CustomerId": ["Blocked."]}


# --- upsert semantics ----------------------------------------------------------------------------


def test_upsert_replaces_the_record_whole(call, base):
    call("POST", "/customers/{t}", [{"CustomerId": "C-1", "Name": "Ann", "GdprOptin": True}])
    call("POST", "/customers/{t}", [{"CustomerId": "C-1", "Surname": "Lee"}])
    assert record(base, "customers", "C-1") == {"CustomerId": "C-1", "Surname": "Lee"}
    assert stats(base)["customers"] == 1


def test_email_is_the_key_without_customer_id(call, base):
    call("POST", "/customers/{t}", [{"Email": "Ann@Example.com", "Name": "A"}])
    call("POST", "/customers/{t}", [{"Email": "ann@example.com", "Name": "B"}])
    assert stats(base)["customers"] == 1
    assert record(base, "customers", "ann@example.com")["Name"] == "B"


def test_unknown_skus_are_accepted_and_counted_unlinked(call, base):
    assert call("POST", "/orders/{t}", fixture("orders_request.json")).status_code == 200
    counts = stats(base)
    assert (counts["order_items"], counts["unlinked_order_items"]) == (2, 2)
    product = valid_product()
    product["ProductVariants"][0]["Sku"] = "SKU-42-RED-L"
    call("POST", "/products/{t}", [product])
    assert stats(base)["unlinked_order_items"] == 1
    product["ProductVariants"][0]["Sku"] = "sku-42-red-l"  # case-sensitive
    call("POST", "/products/{t}", [product])
    assert stats(base)["unlinked_order_items"] == 2


# --- deletes -------------------------------------------------------------------------------------


def delete_body(r, message, count):
    assert r.status_code == 200
    body = r.json()
    assert wire.EnvelopeSchema().validate(body) == {}
    assert (body["message"], body["data"]["count"]) == (message, count)


def test_customer_delete_is_idempotent_and_erases_orders(call, base):
    call("POST", "/customers/{t}", fixture("customers_request.json"))
    call("POST", "/orders/{t}", fixture("orders_request.json"))
    delete_body(call("DELETE", "/customers/{t}?customerId=C-123"),
                "Customer deletion queued.", 1)
    assert stats(base)["customers"] == 0 and stats(base)["orders"] == 0
    delete_body(call("DELETE", "/customers/{t}?customerId=C-123"),
                "Customer deletion queued.", 0)


def test_customer_delete_by_email(call, base):
    call("POST", "/customers/{t}", [{"CustomerId": "C-1", "Email": "ann@example.com"},
                                    {"Email": "ann@example.com"}, {"CustomerId": "C-2"}])
    delete_body(call("DELETE", "/customers/{t}", params={"email": "ANN@example.com"}),
                "Customer deletion queued.", 2)
    assert stats(base)["customers"] == 1


def test_customer_delete_needs_a_key(call):
    assert errors_of(call("DELETE", "/customers/{t}")) == {
        "customerId": ["Either customerId or email is required."]}
    assert errors_of(call("DELETE", "/customers/{t}?email=nope")) == {
        "email": ["The email field is not a valid e-mail address."]}


def test_order_and_item_deletes(call, base):
    call("POST", "/orders/{t}", fixture("orders_request.json"))
    delete_body(call("DELETE", "/orders/{t}/O-789/items",
                     params={"productId": "P-42", "sku": "SKU-42-RED-L"}),
                "Order item deleted.", 1)
    assert [i["Sku"] for i in record(base, "orders", "O-789")["OrderItems"]] == ["SKU-43-BLUE-M"]
    delete_body(call("DELETE", "/orders/{t}/O-789/items",
                     params={"productId": "P-42", "sku": "SKU-42-RED-L"}),
                "Order item deleted.", 0)
    assert errors_of(call("DELETE", "/orders/{t}/O-789/items?productId=P-42")) == {
        "sku": ["The sku field is required."]}
    delete_body(call("DELETE", "/orders/{t}/O-789"), "Order deleted.", 1)
    delete_body(call("DELETE", "/orders/{t}/O-789"), "Order deleted.", 0)
    assert record(base, "orders", "O-789") is None


def test_product_and_variant_deletes(call, base):
    product = valid_product()
    product["ProductVariants"].append({**product["ProductVariants"][0], "VariantId": "V-2",
                                       "Sku": "SKU-2"})
    call("POST", "/products/{t}", [product])
    delete_body(call("DELETE", "/products/{t}/P-42/variants/V-42-BLK-S"), "Variant deleted.", 1)
    delete_body(call("DELETE", "/products/{t}/P-42/variants/V-42-BLK-S"), "Variant deleted.", 0)
    assert stats(base)["variants"] == 1
    delete_body(call("DELETE", "/products/{t}/P-42"), "Product deleted.", 1)
    delete_body(call("DELETE", "/products/{t}/P-42"), "Product deleted.", 0)
    assert stats(base)["products"] == 0


def test_ids_with_reserved_characters_in_paths(call, base):
    call("POST", "/orders/{t}", [valid_order(OrderId="A 1 #2?x=é")])
    delete_body(call("DELETE", "/orders/{t}/A%201%20%232%3Fx%3D%C3%A9"), "Order deleted.", 1)


# --- rate limits ---------------------------------------------------------------------------------


def test_minute_window_headers_and_429(call, base):
    resets = set()
    for i in range(100):
        r = call("POST", "/customers/{t}", [])
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "100"
        assert r.headers["X-RateLimit-Remaining"] == str(99 - i)
        resets.add(int(r.headers["X-RateLimit-Reset"]))
    r = call("POST", "/customers/{t}", [])
    assert r.status_code == 429
    assert r.headers["X-RateLimit-Limit"] == "100"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert r.json() == {"success": False, "data": {},
                        "message": f"Rate limit exceeded. Retry after {retry_after} seconds."}
    # the window slides: a minute later there is room again
    requests.post(f"{base}/_sandbox/clock", json={"advance": 60}, timeout=5)
    assert call("POST", "/customers/{t}", []).status_code == 200


def test_hour_window_is_enforced_and_described(api_key):
    app = create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT, clock=ManualClock()))
    kit = kit_state(app)
    with app.test_request_context(headers={"x-replenit-auth-key": api_key}):
        limit_key = kit.limit_key(flask_request)
    for minute in range(50):  # 4,950 requests in 50 minutes, never 100 in one of them
        for _ in range(100 if minute < 49 else 50):
            assert kit.limiter.hit(limit_key).allowed
        kit.clock.advance(60)
    running = start_sandbox(app)
    try:
        def post():
            return requests.post(f"{running.url}/customers/{TENANT}", json=[],
                                 headers={"x-replenit-auth-key": api_key}, timeout=5)
        for i in range(50):
            r = post()
            assert r.status_code == 200
            # the tightest window now is the hour's (fewer left there than in the minute's)
            assert r.headers["X-RateLimit-Limit"] == "5000"
            assert r.headers["X-RateLimit-Remaining"] == str(49 - i)
        r = post()  # 50 in this minute, but 5,000 in the hour
        assert r.status_code == 429
        assert r.headers["X-RateLimit-Limit"] == "5000"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert 60 < int(r.headers["Retry-After"]) <= 3600
    finally:
        running.stop()


# --- seeding --------------------------------------------------------------------------------------


def test_seeding_is_deterministic_and_realistic(api_key):
    customers, orders, products = seed_records(120, seed=3)
    again = seed_records(120, seed=3)
    assert (customers, orders, products) == again
    assert len(customers) == 118  # two of 120 were redacted: deleted at Replenit
    assert all(wire.validate_batch("customers", customers[i:i + 500])[1] == {}
               for i in range(0, len(customers), 500))
    assert all(wire.validate_batch("orders", orders[i:i + 200])[1] == {}
               for i in range(0, len(orders), 200))
    assert wire.validate_batch("products", products)[1] == {}
    gdpr = [c["GdprOptin"] for c in customers]
    assert 0 < gdpr.count(False) < len(gdpr) / 2
    per_customer = {}
    for o in orders:
        per_customer[o["CustomerId"]] = per_customer.get(o["CustomerId"], 0) + 1
        assert sum(i["Price"] * i["Quantity"] for i in o["OrderItems"]) == o["TotalRevenue"]
    assert len(set(per_customer.values())) >= 3  # a spread of frequencies
    app = create_sandbox(SandboxConfig(api_key=api_key, tenant_id=TENANT, seed_customers=120))
    running = start_sandbox(app)
    try:
        counts = requests.get(f"{running.url}/_sandbox/stats", timeout=5).json()["records"]
        assert counts["customers"] == 118 and counts["orders"] == len(seed_records(120)[1])
        assert counts["unlinked_order_items"] == 0
        assert record(running.url, "customers", "cus_000000")["CustomerId"] == "cus_000000"
        requests.post(f"{running.url}/_sandbox/seed", json={"customers": 5}, timeout=5)
        assert stats(running.url)["customers"] == 5
        requests.post(f"{running.url}/_sandbox/reset", timeout=5)
        assert stats(running.url)["customers"] == 118
    finally:
        running.stop()


# --- bodies the parser refuses -------------------------------------------------------------------


def _deep(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("kind", ["customers", "orders", "products"])
@pytest.mark.parametrize("text, message", [
    (_deep(), "The request body is JSON nested deeper than 64 levels."),
    ('[{"CustomerId": "C1", "Email": "a@example.com", "Extra": ' + _deep() + "}]",
     "The request body is JSON nested deeper than 64 levels."),
    ('[{"CustomerId": "C1", "GdprOptin": true, "Score": NaN}]',
     "The request body is not valid JSON."),
    ('[{"CustomerId": "C1", "Score": -Infinity}]', "The request body is not valid JSON."),
])
def test_deep_or_non_finite_json_is_replenits_400(call, base, kind, text, message):
    r = call("POST", f"/{kind}/{{t}}", raw=text)
    assert r.headers["Content-Type"] == "application/json"
    assert errors_of(r) == {"$": [message]}
    assert stats(base)[kind] == 0
    control = requests.post(f"{base}/_sandbox/seed", data=text, timeout=5,
                            headers={"Content-Type": "application/json"})
    assert control.status_code == 400 and "error" in control.json()
