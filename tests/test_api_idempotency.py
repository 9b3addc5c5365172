"""``Idempotency-Key`` on the actions: replays, mismatches, keys per tenant, in-progress 409s,
released failures, and 50 concurrent copies of one request through a real server."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from gateway.api.idempotency import parse_key
from gateway.store import idempotency as key_store
from gateway.store.tables import events, idempotency_keys
from gateway.store.types import utcnow
from tests.zapier_helpers import API, counts, order

RECORD_ORDER = f"{API}/actions/record-order"


def _post(client, tenant, body, key: str | None, path: str = RECORD_ORDER):
    headers = dict(tenant.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, data=json.dumps(body), headers=headers,
                       content_type="application/json")


def test_a_retry_gets_the_first_answer_and_has_no_second_effect(client, engine, shop):
    body = order("O-1", "ann@example.com")
    first = _post(client, shop, body, '"key-1"')
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    before = counts(engine, shop.id)
    again = _post(client, shop, body, '"key-1"')
    assert again.status_code == 201  # the first answer's status, not "200 unchanged"
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert counts(engine, shop.id) == before
    # Without the key the same body is a plain retry of an upsert: 200, nothing new.
    plain = _post(client, shop, body, None)
    assert plain.status_code == 200 and counts(engine, shop.id) == before


def test_a_bare_key_and_its_quoted_form_are_the_same_key(client, shop):
    body = order("O-2", "bea@example.com")
    assert _post(client, shop, body, "abc-123").status_code == 201
    replay = _post(client, shop, body, '"abc-123"')
    assert replay.headers.get("Idempotent-Replayed") == "true"


def test_the_same_key_with_another_body_or_path_is_a_422(client, engine, shop):
    assert _post(client, shop, order("O-3", "cy@example.com"), "k-3").status_code == 201
    before = counts(engine, shop.id)
    other = _post(client, shop, order("O-4", "cy@example.com"), "k-3")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json["error"]
    elsewhere = _post(client, shop, {"email": "cy@example.com"}, "k-3",
                      path=f"{API}/actions/unsubscribe")
    assert elsewhere.status_code == 422
    assert counts(engine, shop.id) == before


def test_keys_are_per_tenant(client, engine, make_zapier):
    first, second = make_zapier("First"), make_zapier("Second")
    assert _post(client, first, order("O-5", "di@example.com"), "shared").status_code == 201
    answer = _post(client, second, order("O-6", "di@example.com"), "shared")
    assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers
    assert counts(engine, second.id)["orders"] == 1


def test_a_failed_request_leaves_the_key_free(client, engine, shop):
    bad = order("O-7", "ed@example.com", total="abc")
    assert _post(client, shop, bad, "k-7").status_code == 400
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.tenant_id == shop.id)).scalar_one() == 0
    good = _post(client, shop, order("O-7", "ed@example.com"), "k-7")
    assert good.status_code == 201


def test_while_the_first_runs_a_retry_is_a_409_with_retry_after(client, engine, shop):
    body = order("O-8", "fay@example.com")
    fingerprint = key_store.fingerprint("POST", RECORD_ORDER, json.dumps(body))
    with engine.begin() as conn:  # another process holds the key, and its lock is live
        claim = key_store.claim(conn, shop.id, "k-8", fingerprint, lock_seconds=60)
    assert claim.outcome is key_store.Outcome.NEW
    busy = _post(client, shop, body, "k-8")
    assert busy.status_code == 409
    assert 1 <= int(busy.headers["Retry-After"]) <= 60
    assert counts(engine, shop.id)["orders"] == 0


def test_a_crashed_first_request_is_taken_over_once_its_lock_expired(client, engine, shop):
    body = order("O-9", "gus@example.com")
    fingerprint = key_store.fingerprint("POST", RECORD_ORDER, json.dumps(body))
    with engine.begin() as conn:  # claimed two minutes ago by a process that then died
        key_store.claim(conn, shop.id, "k-9", fingerprint, now=utcnow() - timedelta(minutes=2),
                        lock_seconds=60)
    taken = _post(client, shop, body, "k-9")
    assert taken.status_code == 201
    assert _post(client, shop, body, "k-9").headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("raw", ['""', " ", '"a"b"', '"bad\\x"', "k" * 256, "ünïcode"])
def test_a_malformed_key_is_a_400(client, shop, raw):
    headers = {**shop.headers, "Idempotency-Key": raw}
    answer = client.post(RECORD_ORDER, json=order("O-10", "hu@example.com"),
                         headers={k: v.encode("utf-8").decode("latin-1") for k, v in
                                  headers.items()})
    assert answer.status_code == 400, answer.json
    assert "Idempotency-Key" in answer.json["error"] or "Idempotency-Key" in str(
        answer.json.get("errors"))


def test_parse_key_reads_structured_field_strings():
    assert parse_key('"8e03978e-40d5"') == "8e03978e-40d5"
    assert parse_key('"a \\"quoted\\" \\\\ key"') == 'a "quoted" \\ key'
    assert parse_key("bare-key") == "bare-key"


# --- 50 at once, through a real server --------------------------------------------------------


class ServedApp:
    """The app on 127.0.0.1 under werkzeug's threaded server (a thread per request), run by a
    thread of this process and stopped by the test."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ServedApp":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


def test_fifty_concurrent_copies_make_one_effect_and_one_answer(app, engine, shop):
    body = json.dumps(order("O-50", "concurrent@example.com"))
    headers = {**shop.headers, "Idempotency-Key": '"fifty"',
               "Content-Type": "application/json"}
    start = threading.Barrier(50)

    def send(url: str) -> tuple[int, dict, str | None]:
        with requests.Session() as session:
            start.wait(timeout=60)
            answer = session.post(url, data=body, headers=headers, timeout=60)
            return answer.status_code, answer.json(), answer.headers.get("Idempotent-Replayed")

    with ServedApp(app) as served, ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, [f"{served.url}{RECORD_ORDER}"] * 50))
        final = requests.post(f"{served.url}{RECORD_ORDER}", data=body, headers=headers,
                              timeout=60)
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {201, 409}, statuses
    done = [(status, answer) for status, answer, _ in answers if status != 409]
    assert done, "every copy answered 409: the first never finished"
    first = done[0]
    assert all(answer == first for answer in done)
    assert (final.status_code, final.json()) == first
    assert final.headers["Idempotent-Replayed"] == "true"
    originals = [s for s, _, replayed in answers if s != 409 and replayed is None]
    assert originals == [201]  # one request ran the action; every other 201 is its replay
    assert counts(engine, shop.id)["orders"] == 1
    with engine.connect() as conn:
        placed = conn.execute(select(func.count()).select_from(events).where(
            events.c.tenant_id == shop.id, events.c.type == "order.placed")).scalar_one()
        created = conn.execute(select(func.count()).select_from(events).where(
            events.c.tenant_id == shop.id, events.c.type == "customer.created")).scalar_one()
    assert (placed, created) == (1, 1)
