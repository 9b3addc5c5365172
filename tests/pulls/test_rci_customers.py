"""The ``rci-customers`` pull against the sandboxes over HTTP: a walk reaches the three
destinations (consented customers only at Replenit), the sandboxes' own counts match, a walk
with nothing changed sends nothing, five changed customers go only where their payload
changed, a dry run sends and stores nothing and counts what the real run sends, and a customer
redacted in RCI is erased and never brought back."""

from __future__ import annotations

import copy
import json

import requests
from sqlalchemy import func, select

from connectors.sandbox_kit import synthetic_customers
from gateway.pulls.sync import run_sync
from gateway.relay.runs import list_runs
from gateway.store.tables import acknowledged_payloads, customers, deliveries

ROUTE = "rci-customers"


def stats(service_url: str) -> dict:
    return requests.get(f"{service_url}/_sandbox/stats", timeout=10).json()


def held(service) -> int:  # noqa: ANN001
    return stats(service.url)["records"]["customers"]


def answered(service) -> int:  # noqa: ANN001
    return sum(stats(service.url)["requests"].values())


def live_people(n: int) -> list:
    return [p for p in synthetic_customers(n) if p.redacted_at is None]


def sync(shop, **kwargs):  # noqa: ANN001, ANN201
    return run_sync(shop.runtime, shop.tenant_id, ROUTE, timeout=120, **kwargs)


def edit(shop, rci_id: str, **changes) -> None:  # noqa: ANN001
    """Change a customer's attributes in the RCI sandbox."""
    attributes = copy.deepcopy(shop.rci_store.get(rci_id))
    attributes.update(changes)
    shop.rci_store.put(rci_id, attributes)


def test_walk_reaches_the_destinations_and_sends_only_what_changed(shop, relay_db):
    s = shop(customers=300)
    people = live_people(300)
    first = sync(s)
    assert first.settled and first.dead == 0
    assert first.counts["read"] == 300
    # Each sandbox holds what it should, by its own count.
    assert held(s.rekindle) == len(people)
    assert held(s.rejoiner) == len(people)
    assert held(s.replenit) == len(s.consented)
    assert first.per_destination["replenit"]["sent"] == len(s.consented)
    assert first.per_destination["rekindle"]["sent"] == len(people)
    assert first.counts["failed"] == 0

    # Nothing changed: nothing is sent anywhere.
    before = {name: answered(getattr(s, name)) for name in ("replenit", "rekindle", "rejoiner")}
    again = sync(s)
    assert again.counts["read"] == 300
    assert again.counts["changed"] == 0 and again.counts["sent"] == 0
    assert again.counts["skipped"] == 300
    assert {name: answered(getattr(s, name)) for name in before} == before

    # Five changed: three only in their RFM segments (only Rejoiner's payload holds them),
    # two in their first name (every destination's payload holds it; both have consent, so
    # Replenit too).
    rfm_only = [p for p in people if p.index % 3 != 0][:3]
    renamed = [p for p in people if p.index % 3 == 0][:2]
    for person in rfm_only:
        edit(s, person.id, segments=["Changed"])
    for person in renamed:
        edit(s, person.id, first_name="Renamed")
    third = sync(s)
    assert third.counts["changed"] == 5 and third.counts["skipped"] == 295
    sent = {c: per.get("sent", 0) for c, per in third.per_destination.items()}
    assert sent == {"rejoiner": 5, "rekindle": 2, "replenit": 2}
    after = {name: answered(getattr(s, name)) for name in before}
    assert after["rekindle"] - before["rekindle"] == 2  # one update-customer each
    assert after["replenit"] - before["replenit"] == 1  # one batch of two
    assert after["rejoiner"] - before["rejoiner"] == 10  # a look-up and a write each
    profile = requests.get(f"{s.rejoiner.url}/_sandbox/records/customers/"
                           f"{rfm_only[0].email}", timeout=10).json()
    assert "gw:segment:Changed" in profile["tags"]
    assert profile["metadata"]["gateway"]["segments"] == ["Changed"]

    # The runs are listed beside the drains.
    with relay_db.engine.connect() as conn:
        runs = list_runs(conn, s.tenant_id, route=ROUTE)
    assert [r["counts"]["sent"] for r in runs] == [9, 0, first.counts["sent"]]
    assert {"read", "changed", "sent", "failed", "dead", "skipped",
            "duration_seconds"} <= set(runs[0]["counts"])


def test_a_dry_run_sends_and_stores_nothing_and_counts_what_the_real_run_sends(shop,
                                                                              relay_db):
    s = shop(customers=200)
    with relay_db.engine.connect() as conn:
        customers_before = conn.execute(select(func.count()).select_from(customers)).scalar()
    dry = sync(s, dry_run=True)
    with relay_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(customers)).scalar() \
            == customers_before
    assert answered(s.replenit) == answered(s.rekindle) == answered(s.rejoiner) == 0
    assert dry.counts["sent"] == 0
    assert set(dry.examples) >= {"replenit customers.upsert", "rekindle customers.upsert",
                                 "rejoiner customers.upsert"}
    text = json.dumps(dry.as_dict())
    assert not any(p.email in text for p in synthetic_customers(200))  # no one's email
    real = sync(s)
    assert {c: per["queued"] for c, per in dry.per_destination.items()} \
        == {c: per["sent"] for c, per in real.per_destination.items()}
    for name in ("read", "changed", "skipped"):
        assert dry.counts[name] == real.counts[name]

    # After a change, the dry run again says what the real run then sends.
    person = live_people(200)[4]
    edit(s, person.id, last_name="Changed")
    dry = sync(s, dry_run=True)
    real = sync(s)
    assert dry.counts["changed"] == real.counts["changed"] == 1
    assert {c: per["queued"] for c, per in dry.per_destination.items() if per["queued"]} \
        == {c: per["sent"] for c, per in real.per_destination.items() if per.get("sent")}


def test_a_customer_redacted_in_rci_is_erased_and_not_brought_back(shop, relay_db):
    s = shop(customers=60)
    person = [p for p in live_people(60) if p.index % 3 == 0][1]  # consented: at Replenit
    sync(s)
    assert requests.get(f"{s.replenit.url}/_sandbox/records/customers/x", timeout=10) is not None
    original = copy.deepcopy(s.rci_store.get(person.id))
    edit(s, person.id, redacted_at="2025-06-02T00:00:00.000Z", first_name=None,
         last_name=None, email=None, email_marketing_consent=False,
         sms_marketing_consent=False)
    replenit_before = held(s.replenit)
    erased = sync(s)
    assert erased.counts["changed"] == 1 and erased.dead == 0
    assert held(s.replenit) == replenit_before - 1  # Replenit's delete
    profile = requests.get(f"{s.rejoiner.url}/_sandbox/records/customers/{person.email}",
                           timeout=10).json()
    assert profile.get("is_unsubscribed") is True  # Rejoiner's unsubscribe
    with relay_db.engine.connect() as conn:
        row = conn.execute(select(customers).where(customers.c.tenant_id == s.tenant_id,
                                                   customers.c.email.is_(None),
                                                   customers.c.redacted_at.is_not(None))
                           ).all()
        assert row  # the customer row is wiped and marked
        manual = conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.tenant_id == s.tenant_id,
            deliveries.c.operation == "erasure.manual")).scalar()
        assert manual >= 1  # the Rekindle item
        ids = {r.id for r in row}
        assert conn.execute(select(func.count()).select_from(acknowledged_payloads).where(
            acknowledged_payloads.c.customer_id.in_(ids))).scalar() == 0

    # Later walks, redacted or with the data back, bring nothing back and send nothing.
    before = {name: answered(getattr(s, name)) for name in ("replenit", "rekindle", "rejoiner")}
    assert sync(s).counts["sent"] == 0
    s.rci_store.put(person.id, original)
    back = sync(s)
    assert back.counts["sent"] == 0 and back.counts["changed"] == 0
    assert {name: answered(getattr(s, name)) for name in before} == before
    with relay_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customers).where(
            customers.c.tenant_id == s.tenant_id,
            customers.c.email == person.email)).scalar() == 0
