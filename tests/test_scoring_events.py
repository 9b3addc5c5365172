"""Status events, win-back attribution and the scoring authority."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway import scoring
from tests.test_scoring import (
    DAY,
    NOW,
    add_customer,
    add_order,
    events_of,
    row_of,
    set_settings,
)

ITEM_KEYS = {"id", "customer_id", "name", "email", "phone", "status", "previous_status",
             "engagement_score", "last_purchase_date", "total_spent", "purchase_count",
             "returned_at", "updated_at", "changed_at"}


def summary(events):
    return [(e.type, e.item["previous_status"], e.item["status"]) for e in events]


def _regular(engine, tenant_id, key="walk"):
    """A customer with two orders 30 days apart, the last at NOW: gap 30, so at risk from day
    45, lapsed from day 90, lost from day 180."""
    with engine.begin() as conn:
        cid = add_customer(conn, tenant_id, key)
        add_order(conn, tenant_id, cid, NOW - 30 * DAY, "20.00")
        add_order(conn, tenant_id, cid, NOW, "22.50")
    return cid


def test_walk_active_at_risk_lapsed_message_order_returned(engine, tenant):
    cid = _regular(engine, tenant.id)
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW + 10 * DAY).transitions == 0
    assert row_of(engine, cid).status == "active"  # a first status of active is not news

    first = scoring.rescore_tenant(engine, tenant.id, now=NOW + 45 * DAY)
    assert (first.transitions, first.returns) == (1, 0)
    same = scoring.rescore_tenant(engine, tenant.id, now=NOW + 45 * DAY)
    assert (same.transitions, same.returns, same.updated) == (0, 0, 0)
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW + 89 * DAY).transitions == 0
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW + 90 * DAY).transitions == 1

    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant.id, cid, at=NOW + 91 * DAY) is True
    row = row_of(engine, cid)
    assert (row.winback_started_at, row.winback_status) == (NOW + 91 * DAY, "lapsed")

    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, NOW + 100 * DAY, "30.00")
        written = scoring.rescore_customer(conn, tenant.id, cid, now=NOW + 100 * DAY)
    assert summary(written) == [("customer.status_changed", "lapsed", "active"),
                                ("customer.returned", "lapsed", "active")]
    # Nothing is emitted twice: not by the order path again, nor by re-scores.
    with engine.begin() as conn:
        assert scoring.rescore_customer(conn, tenant.id, cid, now=NOW + 100 * DAY) == []
    for days in (100, 101):
        again = scoring.rescore_tenant(engine, tenant.id, now=NOW + days * DAY)
        assert (again.transitions, again.returns) == (0, 0)

    events = events_of(engine, tenant.id)
    assert summary(events) == [
        ("customer.status_changed", "active", "at_risk"),
        ("customer.status_changed", "at_risk", "lapsed"),
        ("customer.status_changed", "lapsed", "active"),
        ("customer.returned", "lapsed", "active"),
    ]
    assert len({e.id for e in events}) == 4
    for event in events:
        assert set(event.item) == ITEM_KEYS and event.item["id"] == event.id
        assert event.subject_id == cid and event.source == "gateway"
    at_risk = events[0].item
    assert at_risk["customer_id"] == cid and at_risk["name"] == "Cust walk"
    assert at_risk["email"] == "walk@" + tenant.id[-8:] + ".example"
    assert at_risk["phone"] == "+27821234567"
    assert at_risk["last_purchase_date"] == NOW.date().isoformat()
    assert at_risk["total_spent"] == 42.5 and at_risk["purchase_count"] == 2
    assert at_risk["returned_at"] is None
    assert at_risk["changed_at"] == at_risk["updated_at"] == "2025-07-16T12:00:00Z"
    assert 48 <= at_risk["engagement_score"] <= 72 + 10
    returned = events[3].item
    assert returned["returned_at"] == "2025-09-09T12:00:00Z"  # the order's time
    assert returned["purchase_count"] == 3 and returned["total_spent"] == 72.5
    row = row_of(engine, cid)
    assert row.returned_at == NOW + 100 * DAY and row.status == "active"
    assert row.status_changed_at == NOW + 100 * DAY


def test_a_first_status_that_needs_attention_emits_once(engine, tenant):
    with engine.begin() as conn:
        cid = add_customer(conn, tenant.id, "old")
        add_order(conn, tenant.id, cid, NOW - 200 * DAY)
        written = scoring.rescore_customer(conn, tenant.id, cid, now=NOW)
    assert summary(written) == [("customer.status_changed", None, "lapsed")]
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW).transitions == 0
    later = scoring.rescore_tenant(engine, tenant.id, now=NOW + 160 * DAY)
    assert later.transitions == 1
    assert summary(events_of(engine, tenant.id))[-1] == ("customer.status_changed", "lapsed",
                                                         "lost")


def _lapsed_with_message(engine, tenant_id, key, message_days_after=200):
    """One order at NOW, so lapsed from day 180; the message starts at NOW + 200 days."""
    with engine.begin() as conn:
        cid = add_customer(conn, tenant_id, key)
        add_order(conn, tenant_id, cid, NOW)
    scoring.rescore_tenant(engine, tenant_id, now=NOW + (message_days_after - 1) * DAY)
    start = NOW + message_days_after * DAY
    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant_id, cid, at=start) is True
    return cid, start


@pytest.mark.parametrize("offset,counts", [
    (DAY, True),
    (30 * DAY, True),  # the window's last second is inside
    (30 * DAY + timedelta(seconds=1), False),  # one second later is not
    (-DAY, False),  # an order placed before the message (arriving late) is not a return
])
def test_attribution_window(engine, tenant, offset, counts):
    cid, start = _lapsed_with_message(engine, tenant.id, "win")
    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, start + offset)
        written = scoring.rescore_customer(conn, tenant.id, cid, now=start + 31 * DAY)
    types = [e.type for e in written]
    assert ("customer.returned" in types) is counts
    row = row_of(engine, cid)
    assert (row.returned_at == start + offset) if counts else row.returned_at is None


def test_the_tenant_pass_attributes_an_order_written_without_a_rescore(engine, tenant):
    cid, start = _lapsed_with_message(engine, tenant.id, "bulk")
    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, start + 5 * DAY)
        add_order(conn, tenant.id, cid, start + 6 * DAY)
    result = scoring.rescore_tenant(engine, tenant.id, now=start + 7 * DAY)
    assert (result.transitions, result.returns) == (1, 1)
    assert row_of(engine, cid).returned_at == start + 5 * DAY  # the first order back
    assert scoring.rescore_tenant(engine, tenant.id, now=start + 8 * DAY).returns == 0


def test_a_cancelled_order_is_not_a_return(engine, tenant):
    cid, start = _lapsed_with_message(engine, tenant.id, "cxl")
    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, start + DAY, cancelled=True)
        assert scoring.rescore_customer(conn, tenant.id, cid, now=start + DAY) == []
    assert row_of(engine, cid).returned_at is None


def test_a_message_to_a_customer_only_at_risk_is_not_attributed(engine, tenant):
    with engine.begin() as conn:
        cid = add_customer(conn, tenant.id, "risk")
        add_order(conn, tenant.id, cid, NOW)
    scoring.rescore_tenant(engine, tenant.id, now=NOW + 100 * DAY)
    assert row_of(engine, cid).status == "at_risk"
    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant.id, cid, at=NOW + 100 * DAY) is False
        add_order(conn, tenant.id, cid, NOW + 105 * DAY)
        written = scoring.rescore_customer(conn, tenant.id, cid, now=NOW + 105 * DAY)
    assert summary(written) == [("customer.status_changed", "at_risk", "active")]
    row = row_of(engine, cid)
    assert (row.winback_status, row.returned_at) == ("at_risk", None)
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW + 106 * DAY).returns == 0


def test_a_second_message_opens_a_new_journey(engine, tenant):
    cid, start = _lapsed_with_message(engine, tenant.id, "twice")
    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, start + DAY)
        assert len(scoring.rescore_customer(conn, tenant.id, cid, now=start + DAY)) == 2
    later = start + 1300 * DAY  # gap 201 days now: lost from day 1206
    scoring.rescore_tenant(engine, tenant.id, now=later)
    assert row_of(engine, cid).status == "lost"
    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant.id, cid, at=later) is True
        add_order(conn, tenant.id, cid, later + 2 * DAY)
        written = scoring.rescore_customer(conn, tenant.id, cid, now=later + 2 * DAY)
    assert summary(written) == [("customer.status_changed", "lost", "active"),
                                ("customer.returned", "lost", "active")]
    assert row_of(engine, cid).returned_at == later + 2 * DAY


def test_record_winback_for_unknown_or_unscored_customers(engine, tenant):
    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant.id, "cus_nobody", at=NOW) is False
        cid = add_customer(conn, tenant.id, "new")
        assert scoring.record_winback(conn, tenant.id, cid, at=NOW) is False
    row = row_of(engine, cid)
    assert (row.winback_started_at, row.winback_status) == (NOW, None)


def test_rekindle_authority(engine, tenant):
    set_settings(engine, tenant.id, scoring_authority="rekindle")
    cid = _regular(engine, tenant.id, "rk")
    result = scoring.rescore_tenant(engine, tenant.id, now=NOW + 100 * DAY)
    assert (result.scored, result.transitions, result.returns) == (1, 0, 0)
    row = row_of(engine, cid)
    assert (row.gateway_status, row.status, row.engagement_score) == ("lapsed", None, None)
    assert row.gateway_score is not None
    with engine.begin() as conn:
        assert scoring.record_winback(conn, tenant.id, cid, at=NOW + 100 * DAY) is False
        first = scoring.apply_rekindle_answer(conn, tenant.id, cid, status="lapsed",
                                              engagement_score=32, returned=False,
                                              at=NOW + 100 * DAY)
    assert summary(first) == [("customer.status_changed", None, "lapsed")]
    assert first[0].source == "rekindle" and first[0].item["engagement_score"] == 32
    with engine.begin() as conn:
        add_order(conn, tenant.id, cid, NOW + 101 * DAY)
        # The gateway's own view moves, but emits nothing.
        assert scoring.rescore_customer(conn, tenant.id, cid, now=NOW + 101 * DAY) == []
        back = scoring.apply_rekindle_answer(conn, tenant.id, cid, status="active",
                                             engagement_score=78, returned=True,
                                             at=NOW + 101 * DAY)
        resent = scoring.apply_rekindle_answer(conn, tenant.id, cid, status="active",
                                               engagement_score=78, returned=True,
                                               at=NOW + 101 * DAY)
    assert summary(back) == [("customer.status_changed", "lapsed", "active"),
                             ("customer.returned", "lapsed", "active")]
    assert back[1].item["returned_at"] == "2025-09-10T12:00:00Z"
    assert resent == []
    row = row_of(engine, cid)
    assert (row.status, row.engagement_score, row.rekindle_status, row.rekindle_score) == (
        "active", 78, "active", 78)
    assert row.gateway_status == "active" and row.returned_at == NOW + 101 * DAY
    assert scoring.rescore_tenant(engine, tenant.id, now=NOW + 300 * DAY).transitions == 0
    assert len(events_of(engine, tenant.id)) == 3


def test_rekindle_answers_under_the_gateways_authority_are_kept_but_emit_nothing(engine, tenant):
    cid = _regular(engine, tenant.id, "gw")
    with engine.begin() as conn:
        assert scoring.apply_rekindle_answer(conn, tenant.id, cid, status="lost",
                                             engagement_score=3, returned=True, at=NOW) == []
        with pytest.raises(ValueError):
            scoring.apply_rekindle_answer(conn, tenant.id, cid, status="gone",
                                          engagement_score=3, returned=False)
    row = row_of(engine, cid)
    assert (row.rekindle_status, row.rekindle_score, row.status, row.returned_at) == (
        "lost", 3, None, None)
    assert events_of(engine, tenant.id) == []
