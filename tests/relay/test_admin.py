"""Dead letters, replays and runs over the API (admin keys) and the commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway import create_app
from tests.connectors.conftest import sandbox_stats, set_faults
from tests.relay.conftest import ROOT, all_settled, drain, queue_orders, statuses


@pytest.fixture
def shop(relay_db, new_tenant, new_key, start_service, make_worker):
    """A tenant with one dead letter (O-3, refused by the sandbox) and four delivered orders."""
    tenant = new_tenant()
    replenit = start_service("replenit", rate_limits=False)
    replenit.connect(relay_db.engine, relay_db.runtime.vault, tenant)
    set_faults(replenit.url, reject_keys={"O-3": "This order is not accepted."})
    queue_orders(relay_db.engine, tenant, 5)
    worker = make_worker()
    drain(worker, until=all_settled(relay_db.engine))
    app = create_app(runtime=relay_db.runtime)
    app.config["TESTING"] = True
    key = new_key(tenant)
    return {"tenant": tenant, "service": replenit, "worker": worker, "client": app.test_client(),
            "auth": {"Authorization": f"Bearer {key}"}}


def test_the_api_lists_dead_letters_with_the_services_answer_and_replays_them(
        relay_db, shop):
    client, auth = shop["client"], shop["auth"]
    answer = client.get("/api/v1/deliveries?status=dead", headers=auth)
    assert answer.status_code == 200
    (dead,) = answer.get_json()
    assert dead["record_key"] == "O-3" and dead["status"] == "dead"
    assert dead["last_error"]["errors"] == {"OrderId": ["This order is not accepted."]}
    assert "lease_token" not in dead
    everything = client.get("/api/v1/deliveries", headers=auth).get_json()
    assert [d["id"] for d in everything] == sorted((d["id"] for d in everything), reverse=True)
    assert len(client.get("/api/v1/deliveries?limit=2", headers=auth).get_json()) == 2
    older = client.get(f"/api/v1/deliveries?before={everything[1]['id']}", headers=auth)
    assert [d["id"] for d in older.get_json()] == [d["id"] for d in everything[2:]]

    set_faults(shop["service"].url, reject_keys={})
    replayed = client.post(f"/api/v1/deliveries/{dead['id']}/replay", headers=auth)
    assert replayed.status_code == 200
    assert replayed.get_json()["status"] == "pending" and replayed.get_json()["attempt"] == 0
    again = client.post(f"/api/v1/deliveries/{dead['id']}/replay", headers=auth)
    assert again.status_code == 409 and "only dead" in again.get_json()["error"]
    drain(shop["worker"], until=all_settled(relay_db.engine))
    assert statuses(relay_db.engine, shop["tenant"]) == {"done": 5}
    assert sandbox_stats(shop["service"].url)["records"]["orders"] == 5

    runs = client.get("/api/v1/runs", headers=auth)
    assert runs.status_code == 200
    drains = [r for r in runs.get_json() if r["route"] == "drain"]
    assert sum(r["counts"]["sent"] for r in drains) == 5
    assert sum(r["counts"]["dead"] for r in drains) == 1
    assert client.get("/api/v1/runs?route=drain&limit=1", headers=auth).get_json() == drains[:1]


def test_the_api_refuses_bad_input_with_a_clear_json_error(shop):
    client, auth = shop["client"], shop["auth"]
    for url in ("/api/v1/deliveries?status=lost", "/api/v1/deliveries?limit=0",
                "/api/v1/deliveries?limit=501", "/api/v1/deliveries?colour=red",
                "/api/v1/deliveries?before=x", "/api/v1/runs?limit=-1"):
        answer = client.get(url, headers=auth)
        assert answer.status_code == 400, url
        assert answer.get_json()["error"] and answer.get_json()["errors"], url
    for delivery_id in ("999999", str(2**70), "abc", "0"):
        answer = client.post(f"/api/v1/deliveries/{delivery_id}/replay", headers=auth)
        assert answer.status_code == 404, delivery_id
        assert answer.get_json()["error"]


def test_deliveries_are_an_admin_keys_and_only_its_own_tenants(relay_db, shop, new_tenant,
                                                               new_key):
    client = shop["client"]
    zapier = {"Authorization": f"Bearer {new_key(shop['tenant'], 'zapier')}"}
    assert client.get("/api/v1/deliveries", headers=zapier).status_code == 403
    assert client.get("/api/v1/deliveries").status_code == 401
    other = {"Authorization": f"Bearer {new_key(new_tenant('Other shop'))}"}
    assert client.get("/api/v1/deliveries", headers=other).get_json() == []
    assert client.get("/api/v1/runs", headers=other).get_json() == []
    dead_id = client.get("/api/v1/deliveries?status=dead", headers=shop["auth"]).get_json()[0]
    answer = client.post(f"/api/v1/deliveries/{dead_id['id']}/replay", headers=other)
    assert answer.status_code == 404  # another tenant's delivery does not exist for this one


def _command(relay_db, *args: str) -> tuple[int, object]:
    done = subprocess.run([sys.executable, "-m", "gateway.relay.commands", *args], cwd=ROOT,
                          env=relay_db.env(), capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_commands_list_replay_and_show_runs(relay_db, shop):
    code, dead = _command(relay_db, "deliveries", "list", "--status", "dead")
    assert code == 0 and [d["record_key"] for d in dead] == ["O-3"]
    assert dead[0]["last_error"]["errors"] == {"OrderId": ["This order is not accepted."]}
    code, error = _command(relay_db, "deliveries", "replay")
    assert code == 2 and "--all-dead" in error["error"]
    code, error = _command(relay_db, "deliveries", "replay", "123456")
    assert code == 2 and error == {"error": "no delivery 123456"}

    set_faults(shop["service"].url, reject_keys={})
    code, replayed = _command(relay_db, "deliveries", "replay", "--all-dead")
    assert (code, replayed) == (0, {"replayed": 1})
    code, pending = _command(relay_db, "deliveries", "list", "--status", "pending",
                             "--tenant", shop["tenant"])
    assert code == 0 and [d["record_key"] for d in pending] == ["O-3"]
    code, error = _command(relay_db, "deliveries", "replay", str(pending[0]["id"]))
    assert code == 2 and "only dead" in error["error"]
    drain(shop["worker"], until=all_settled(relay_db.engine))
    code, runs = _command(relay_db, "runs", "--route", "drain")
    assert code == 0 and sum(r["counts"]["sent"] for r in runs) == 5
