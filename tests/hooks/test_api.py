"""``/api/v1/hooks``: subscribe (the secret once), list (never a secret), unsubscribe; clear
JSON errors for bad input; one tenant never sees another's subscriptions."""

from __future__ import annotations

import json

import pytest

from gateway.hooks import store as hook_store
from tests.hooks.conftest import hook_rows, status_item, subscribe, write_events


def test_subscribe_list_unsubscribe(client, engine, runtime, clock, make_hook_tenant,
                                    subscriber):
    tenant = make_hook_tenant(allow_private=True)
    answer = subscribe(client, tenant, subscriber.url, filter={"status": "lapsed"})
    assert answer.status_code == 201
    made = answer.get_json()
    assert made["filter"] == {"status": "lapsed"} and made["status"] == "active"
    with engine.connect() as conn:
        assert hook_store.secret_of(conn, runtime.vault, tenant.id, made["id"]) == made["secret"]
    listed = client.get("/api/v1/hooks", headers=tenant.auth)
    assert listed.status_code == 200
    [shown] = listed.get_json()
    assert "secret" not in shown and shown["id"] == made["id"]
    assert made["secret"] not in listed.get_data(as_text=True)
    write_events(engine, tenant.id, [("customer.status_changed", "cus_1",
                                      status_item("cus_1", "lapsed", "at_risk"))], clock)
    assert client.delete(f"/api/v1/hooks/{made['id']}", headers=tenant.auth).status_code == 204
    assert [r.status for r in hook_rows(engine, tenant.id)] == ["cancelled"]
    again = client.delete(f"/api/v1/hooks/{made['id']}", headers=tenant.auth)
    assert again.status_code == 404 and "error" in again.get_json()
    assert client.get("/api/v1/hooks", headers=tenant.auth).get_json() == []


def test_another_tenant_cannot_see_or_delete(client, make_hook_tenant, subscriber):
    mine, theirs = make_hook_tenant(allow_private=True), make_hook_tenant(allow_private=True)
    made = subscribe(client, mine, subscriber.url).get_json()
    assert client.get("/api/v1/hooks", headers=theirs.auth).get_json() == []
    assert client.delete(f"/api/v1/hooks/{made['id']}", headers=theirs.auth).status_code == 404
    assert len(client.get("/api/v1/hooks", headers=mine.auth).get_json()) == 1


def test_a_key_is_needed(client):
    assert client.get("/api/v1/hooks").status_code == 401
    assert client.post("/api/v1/hooks", json={}).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"target_url": "https://example.com/h"}, "event"),
    ({"event": "customer.exploded", "target_url": "https://example.com/h"}, "event"),
    ({"event": "order.placed"}, "target_url"),
    ({"event": "order.placed", "target_url": ""}, "target_url"),
    ({"event": "order.placed", "target_url": 42}, "target_url"),
    ({"event": "order.placed", "target_url": "not a url"}, "target_url"),
    ({"event": "order.placed", "target_url": "ftp://example.com/h"}, "target_url"),
    ({"event": "order.placed", "target_url": "https://user:pw@example.com/h"}, "target_url"),
    ({"event": "order.placed", "target_url": "https://example.com/h",
      "filter": {"a": {"b": 1}}}, "filter"),
    ({"event": "order.placed", "target_url": "https://example.com/h", "filter": {"a": []}},
     "filter"),
    ({"event": "order.placed", "target_url": "https://example.com/h", "filter": [1]},
     "filter"),
    ({"event": "order.placed", "target_url": "https://example.com/h", "extra": 1}, "extra"),
])
def test_bad_bodies_are_a_422_naming_the_field(client, make_hook_tenant, body, field):
    tenant = make_hook_tenant(allow_private=False)
    answer = client.post("/api/v1/hooks", headers=tenant.auth, data=json.dumps(body),
                         content_type="application/json")
    assert answer.status_code == 422, answer.get_data(as_text=True)
    errors = answer.get_json()["errors"]
    assert field in json.dumps(errors)


@pytest.mark.parametrize("raw", ["{", "[]", "null", '"x"'])
def test_a_body_that_is_not_an_object_is_a_clear_error(client, make_hook_tenant, raw):
    tenant = make_hook_tenant(allow_private=False)
    answer = client.post("/api/v1/hooks", headers=tenant.auth, data=raw,
                         content_type="application/json")
    assert 400 <= answer.status_code < 500 and "error" in answer.get_json()


def test_the_hooks_paths_are_documented(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/hooks"])
    assert "delete" in paths["/api/v1/hooks/{hook_id}"]


def test_a_filter_on_a_field_the_item_does_not_have_is_refused(client, make_hook_tenant,
                                                               subscriber):
    tenant = make_hook_tenant(allow_private=True)
    answer = subscribe(client, tenant, subscriber.url, filter={"stauts": "lapsed"})
    assert answer.status_code == 422
    assert "stauts" in answer.get_json()["errors"]["filter"][0]
    assert subscribe(client, tenant, subscriber.url, event="order.placed",
                     filter={"currency": "EUR"}).status_code == 201
    assert subscribe(client, tenant, subscriber.url, event="product.updated",
                     filter={"product_id": "P-1"}).status_code == 201  # no schema: free
