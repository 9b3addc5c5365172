"""Engagement scoring: the rules, and hand-built customers landing where the rules say.

The helpers at the top are shared by the other ``test_scoring_*`` modules.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from gateway import scoring
from gateway.model import Customer, Money, Order
from gateway.scoring import rules
from gateway.scoring.items import json_amount
from gateway.store import records, tenants
from gateway.store.events import list_events
from gateway.store.tables import customers
from gateway.store.types import new_id
from tests.conftest import ROOT

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)

SCORE_COLUMNS = ("order_count", "ltv_minor", "ltv_currency", "first_order_at", "last_order_at",
                 "typical_gap_days", "recency_score", "frequency_score", "monetary_score", "rfm",
                 "grade", "segments", "rfm_source", "status", "engagement_score",
                 "status_changed_at", "gateway_status", "gateway_score", "rekindle_status",
                 "rekindle_score", "winback_started_at", "winback_status", "returned_at")


# --- helpers shared by the scoring tests -----------------------------------------------------


def add_customer(conn, tenant_id: str, key: str, **reported: Any) -> str:
    """A customer with a chosen id (``cus_<key>`` plus the tenant, so ids order by ``key``)
    and optional reported aggregates (as :class:`gateway.model.Customer` fields)."""
    customer_id = f"cus_{key}_{tenant_id[-8:]}"
    now = NOW - 1000 * DAY
    conn.execute(customers.insert().values(
        id=customer_id, tenant_id=tenant_id, email=f"{key}@{tenant_id[-8:]}.example",
        first_name="Cust", last_name=key, phone="+27821234567", tags=[], metadata={},
        segments=[], created_at=now, updated_at=now))
    if reported:
        records.upsert_customer(conn, tenant_id, Customer(id=customer_id, **reported))
    return customer_id


def add_order(conn, tenant_id: str, customer_id: str, placed_at: datetime, amount: str = "10.00",
              currency: str = "USD", cancelled: bool = False) -> str:
    order_id = new_id("o")
    records.upsert_order(conn, tenant_id, Order(
        id=order_id, placed_at=placed_at, total=Money.from_decimal(amount, currency),
        customer_id=customer_id, cancelled=cancelled))
    return order_id


def row_of(engine, customer_id: str):
    with engine.connect() as conn:
        return conn.execute(select(customers).where(customers.c.id == customer_id)).one()


def events_of(engine, tenant_id: str, types=("customer.status_changed", "customer.returned")):
    """Oldest first."""
    with engine.connect() as conn:
        listed = list_events(conn, tenant_id, types=list(types), limit=1000)
    return [event for _, event in reversed(listed)]


def set_settings(engine, tenant_id: str, **changes: Any) -> None:
    with engine.begin() as conn:
        tenants.update_settings(conn, tenant_id, changes)


# --- the rules as pure functions -------------------------------------------------------------


def test_typical_gap_is_the_mean_interval_or_the_default():
    day = rules.DAY
    assert rules.typical_gap_days(1, 0, 0, 60) == 60
    assert rules.typical_gap_days(None, None, 10 * day, 60) == 60
    assert rules.typical_gap_days(3, None, 100 * day, 45) == 45  # no first order date
    assert rules.typical_gap_days(2, 0, 30 * day, 60) == 30
    assert rules.typical_gap_days(4, 0, 100 * day, 60) == 33  # 33.3 rounded down
    assert rules.typical_gap_days(2, 0, day - 1, 60) == 60  # closer than a day: no rhythm
    assert rules.typical_gap_days(2, 0, day, 60) == 1


@pytest.mark.parametrize("elapsed,expected", [
    (0, "active"), (89, "active"), (90, "at_risk"), (179, "at_risk"), (180, "lapsed"),
    (359, "lapsed"), (360, "lost"), (5000, "lost"),
])
def test_status_thresholds_at_the_exact_day(elapsed, expected):
    assert rules.status_for(elapsed, 60, rules.Rules()) == expected


def test_status_thresholds_with_a_fractional_day_and_changed_settings():
    # 1.5 x 7 = 10.5 days: day 10 is still active, day 11 is not.
    assert rules.status_for(10, 7, rules.Rules()) == "active"
    assert rules.status_for(11, 7, rules.Rules()) == "at_risk"
    strict = rules.Rules(at_risk_after=1.0, lapsed_after=2.0, lost_after=4.0)
    assert [rules.status_for(e, 10, strict) for e in (9, 10, 19, 20, 39, 40)] == [
        "active", "at_risk", "at_risk", "lapsed", "lapsed", "lost"]


def test_engagement_score_formula_bands_and_monotonicity():
    r = rules.Rules()
    assert rules.engagement_score(0, 60, 1, r) == 80
    assert rules.engagement_score(60, 60, 1, r) == 80
    assert rules.engagement_score(90, 60, 1, r) == 72  # 80 * 270 / 300
    assert rules.engagement_score(359, 60, 1, r) == 0  # 80 * 1 / 300 rounds down
    assert rules.engagement_score(360, 60, 1, r) == 0
    assert rules.engagement_score(0, 60, 2, r) == 90
    assert rules.engagement_score(0, 60, 21, r) == 100
    assert rules.engagement_score(10_000, 60, 21, r) == 20
    for gap, orders in itertools.product((1, 7, 30, 60, 365), (1, 2, 3, 5, 10, 50)):
        scores = [rules.engagement_score(e, gap, orders, r) for e in range(0, 8 * gap + 2)]
        assert all(0 <= s <= 100 for s in scores)
        assert scores == sorted(scores, reverse=True), "falls as time passes"
        for e in range(0, 8 * gap + 2, max(1, gap // 3)):
            assert rules.engagement_score(e, gap, orders + 1, r) >= \
                rules.engagement_score(e, gap, orders, r), "rises with frequency"


def test_grades_and_segments_cover_every_cell_once():
    cells = rules.rfm_cells()
    assert len(cells) == 126 and cells[0] == {"cell": 0, "rfm": None, "grade": None,
                                             "segments": []}
    primaries = {name for name, _, _ in rules.SEGMENT_RULES}
    for cell in cells[1:]:
        r, f, m = (int(c) for c in str(cell["rfm"]))
        matching = [name for name, _, rule in rules.SEGMENT_RULES if rule(r, f, m)]
        assert matching, f"no segment for {cell['rfm']}"
        assert cell["segments"][0] == matching[0] in primaries
    assert rules.grade_for(5, 5, 5) == "A" and rules.grade_for(5, 4, 4) == "A"
    assert rules.grade_for(4, 4, 4) == "B" and rules.grade_for(3, 3, 4) == "B"
    assert rules.grade_for(3, 3, 3) == "C" and rules.grade_for(1, 2, 4) == "C"
    assert rules.grade_for(2, 2, 2) == "D" and rules.grade_for(1, 1, 3) == "D"
    assert rules.grade_for(1, 1, 2) == "F" and rules.grade_for(1, 1, 1) == "F"
    assert rules.segments_for(5, 5, 5) == ["champions", "big_spender", "frequent_buyer"]
    assert rules.segments_for(1, 5, 5) == ["cant_lose_them", "big_spender", "frequent_buyer"]
    assert rules.segments_for(5, 1, 1) == ["new_customer"]
    assert rules.segments_for(1, 1, 1) == ["dormant"]


def test_total_spent_is_an_exact_json_number():
    assert json_amount(420010, "USD") == 4200.1 and json.dumps(json_amount(420010, "USD")) == \
        "4200.1"
    assert json_amount(1, "USD") == 0.01
    assert json_amount(4200, "JPY") == 4200 and isinstance(json_amount(4200, "JPY"), int)
    assert json_amount(1234567, "BHD") == 1234.567
    assert json_amount(None, "USD") is None
    assert json_amount(12345678901234567891, "USD") == "123456789012345678.91"  # beyond a float


# --- hand-built customers in the database ----------------------------------------------------


def test_threshold_days_land_the_same_in_sql_and_in_the_rules(engine, tenant):
    """Customers whose last order is exactly at, and one day either side of, every threshold:
    the tenant pass and the one-customer path both agree with the pure rules."""
    cases = []
    with engine.begin() as conn:
        for gap_days in (None, 7, 45):  # None: one order, the default gap of 60
            gap = gap_days or 60
            for multiple in (1.0, 1.5, 3.0, 6.0):
                for delta in (-1, 0, 1):
                    days = math.ceil(multiple * gap) + delta  # the first day at the threshold
                    key = f"t{len(cases):03d}"
                    cid = add_customer(conn, tenant.id, key)
                    last = NOW - days * DAY
                    if gap_days:
                        add_order(conn, tenant.id, cid, last - gap_days * DAY)
                    add_order(conn, tenant.id, cid, last)
                    cases.append((cid, gap_days, days))
    scoring.rescore_tenant(engine, tenant.id, now=NOW)
    r = rules.Rules()
    for cid, gap_days, days in cases:
        row = row_of(engine, cid)
        count = 2 if gap_days else 1
        expected = rules.assess(rules.epoch_seconds(NOW), rules.epoch_seconds(NOW - days * DAY),
                                rules.epoch_seconds(NOW - days * DAY - (gap_days or 0) * DAY),
                                count, r)
        assert (row.typical_gap_days, row.status, row.engagement_score) == expected, (gap_days,
                                                                                      days)
        with engine.begin() as conn:
            scoring.rescore_customer(conn, tenant.id, cid, now=NOW)
        again = row_of(engine, cid)
        assert (again.typical_gap_days, again.status, again.engagement_score) == expected
    statuses = {(g, d): row_of(engine, c).status for c, g, d in cases}
    assert statuses[(None, 89)] == "active" and statuses[(None, 90)] == "at_risk"
    assert statuses[(None, 179)] == "at_risk" and statuses[(None, 180)] == "lapsed"
    assert statuses[(None, 359)] == "lapsed" and statuses[(None, 360)] == "lost"
    assert statuses[(7, 10)] == "active" and statuses[(7, 11)] == "at_risk"
    assert statuses[(7, 20)] == "at_risk" and statuses[(7, 21)] == "lapsed"
    assert statuses[(7, 41)] == "lapsed" and statuses[(7, 42)] == "lost"
    assert statuses[(45, 67)] == "active" and statuses[(45, 68)] == "at_risk"


def test_hand_built_customers_land_in_their_status_score_rfm_grade_and_segment(engine, tenant):
    """Ten customers with known histories; quintiles of ten are pairs."""
    plan = {  # key: (days since last order, number of orders, amount of each, gap in days)
        "a0": (2, 12, "90.00", 20),   # the best on every axis
        "a1": (5, 10, "80.00", 20),
        "a2": (10, 8, "5.00", 20),
        "a3": (15, 6, "6.00", 20),
        "a4": (40, 1, "70.00", 0),
        "a5": (50, 1, "60.00", 0),
        "a6": (60, 4, "40.00", 30),
        "a7": (80, 3, "30.00", 30),
        "a8": (400, 2, "2.00", 30),
        "a9": (500, 2, "1.00", 30),
    }
    ids = {}
    with engine.begin() as conn:
        for key, (days, count, amount, gap) in plan.items():
            cid = ids[key] = add_customer(conn, tenant.id, key)
            for k in range(count):
                add_order(conn, tenant.id, cid, NOW - (days + k * gap) * DAY, amount)
    result = scoring.rescore_tenant(engine, tenant.id, now=NOW)
    assert (result.customers, result.scored) == (10, 10)
    got = {key: row_of(engine, cid) for key, cid in ids.items()}
    # Recency: a0,a1 newest -> 5 ... a8,a9 oldest -> 1. Frequency by count, ties by id:
    # a4,a5 (1) -> 1; a8,a9 (2) -> 2; a7 (3), a6 (4) -> 3; a3 (6), a2 (8) -> 4; a1, a0 -> 5.
    # Monetary by total: a9 2, a8 4 -> 1; a2 40, a3 36... sorted: a9 2, a8 4, a3 36, a2 40,
    # a5 60, a4 70, a7 90, a6 160, a1 800, a0 1080.
    expected = {
        "a0": ("active", 555, "A", ["champions", "big_spender", "frequent_buyer"]),
        "a1": ("active", 555, "A", ["champions", "big_spender", "frequent_buyer"]),
        "a2": ("active", 442, "B", ["loyal"]),
        "a3": ("active", 442, "B", ["loyal"]),
        "a4": ("active", 313, "C", ["needs_attention"]),
        "a5": ("active", 313, "C", ["needs_attention"]),
        "a6": ("at_risk", 234, "C", ["slipping_regular"]),
        "a7": ("at_risk", 234, "C", ["slipping_regular"]),
        "a8": ("lost", 121, "F", ["dormant"]),
        "a9": ("lost", 121, "F", ["dormant"]),
    }
    for key, (status, rfm, grade, segments) in expected.items():
        row = got[key]
        assert (row.status, row.rfm, row.grade, row.segments) == (status, rfm, grade, segments), \
            key
        assert (row.recency_score, row.frequency_score, row.monetary_score) == \
            tuple(int(c) for c in str(rfm))
        assert row.rfm_source == "gateway" and row.gateway_status == status
    # Score bands: active 80+, at risk 48..79 (recency 48..72 plus frequency), lost 0 + freq.
    assert got["a0"].engagement_score == 80 + 20 - 20 // 12 == 99
    assert got["a4"].engagement_score == 80
    assert got["a5"].engagement_score == 80 - 0  # 50 days <= 60-day default gap
    assert got["a6"].engagement_score == 80 * (180 - 60) // 150 + 15 == 79
    assert got["a8"].engagement_score == 0 + 10
    assert (got["a0"].order_count, got["a0"].ltv_minor, got["a0"].ltv_currency) == \
        (12, 108000, "USD")
    assert got["a0"].typical_gap_days == 20 and got["a4"].typical_gap_days == 60
    assert got["a0"].last_order_at == NOW - 2 * DAY
    assert got["a0"].first_order_at == NOW - (2 + 11 * 20) * DAY


def test_quintile_ties_are_broken_by_customer_id(engine, tenant):
    ids = []
    with engine.begin() as conn:
        for k in range(5):
            cid = add_customer(conn, tenant.id, f"tie{k}")
            add_order(conn, tenant.id, cid, NOW - 10 * DAY, "10.00")
            ids.append(cid)
    scoring.rescore_tenant(engine, tenant.id, now=NOW)
    assert [row_of(engine, cid).rfm for cid in ids] == [111, 222, 333, 444, 555]


def test_cancelled_orders_and_other_currencies(engine, tenant):
    with engine.begin() as conn:
        cid = add_customer(conn, tenant.id, "cur")
        add_order(conn, tenant.id, cid, NOW - 20 * DAY, "10.00")
        add_order(conn, tenant.id, cid, NOW - 10 * DAY, "99.00", currency="EUR")
        add_order(conn, tenant.id, cid, NOW - 1 * DAY, "500.00", cancelled=True)
        only_cancelled = add_customer(conn, tenant.id, "cxl")
        add_order(conn, tenant.id, only_cancelled, NOW - DAY, cancelled=True)
    scoring.rescore_tenant(engine, tenant.id, now=NOW)
    row = row_of(engine, cid)
    assert (row.order_count, row.ltv_minor, row.ltv_currency) == (2, 1000, "USD")
    assert row.last_order_at == NOW - 10 * DAY and row.typical_gap_days == 10
    gone = row_of(engine, only_cancelled)
    assert (gone.order_count, gone.status, gone.rfm, gone.segments) == (None, None, None, [])


def test_reported_aggregates_stand_in_where_the_gateway_holds_no_orders(engine, tenant):
    with engine.begin() as conn:
        # Rekindle's update-customer: last purchase date, count and total spent.
        rk = add_customer(conn, tenant.id, "rk", order_count=3,
                          last_order_at=NOW - 100 * DAY,
                          lifetime_value=Money.from_decimal("4200.10", "USD"))
        # RCI: count, last order, ltv and a cohort (its only first order hint).
        rci = add_customer(conn, tenant.id, "rci", order_count=5,
                           last_order_at=datetime(2025, 5, 1, tzinfo=timezone.utc),
                           lifetime_value=Money(12345, "USD"), cohort="2024-05")
        euro = add_customer(conn, tenant.id, "eur", order_count=1,
                            last_order_at=NOW - 10 * DAY, lifetime_value=Money(500, "EUR"))
        nothing = add_customer(conn, tenant.id, "none")
        # Orders win over reported aggregates.
        both = add_customer(conn, tenant.id, "both", order_count=40,
                            last_order_at=NOW - 500 * DAY)
        add_order(conn, tenant.id, both, NOW - 5 * DAY)
    scoring.rescore_tenant(engine, tenant.id, now=NOW)
    r = row_of(engine, rk)
    assert (r.typical_gap_days, r.status, r.order_count) == (60, "at_risk", None)
    r = row_of(engine, rci)
    # 2024-05-01 .. 2025-05-01 is 365 days over 4 intervals: 91 days.
    assert (r.typical_gap_days, r.status) == (91, "active")
    r = row_of(engine, euro)
    assert r.status == "active" and r.monetary_score == 1  # no base-currency value
    assert row_of(engine, nothing).status is None
    r = row_of(engine, both)
    assert (r.order_count, r.status, r.typical_gap_days) == (1, "active", 60)
    [event] = [e for e in events_of(engine, tenant.id) if e.subject_id == rk]
    assert event.item["total_spent"] == 4200.1 and event.item["purchase_count"] == 3
    assert event.item["last_purchase_date"] == (NOW - 100 * DAY).date().isoformat()


def test_redacted_customers_are_not_scored(engine, tenant):
    with engine.begin() as conn:
        cid = add_customer(conn, tenant.id, "red")
        add_order(conn, tenant.id, cid, NOW - 200 * DAY)
        conn.execute(customers.update().where(customers.c.id == cid).values(redacted_at=NOW))
        assert scoring.rescore_customer(conn, tenant.id, cid, now=NOW) == []
    result = scoring.rescore_tenant(engine, tenant.id, now=NOW)
    assert result.customers == 0 and row_of(engine, cid).status is None
    assert events_of(engine, tenant.id) == []


def test_tenant_thresholds_and_default_gap_are_used(engine, tenant):
    set_settings(engine, tenant.id, default_gap_days=10, at_risk_after=2, lapsed_after=4,
                 lost_after=5)
    with engine.begin() as conn:
        ids = [add_customer(conn, tenant.id, f"s{d:02d}") for d in (19, 20, 40, 50)]
        for cid, days in zip(ids, (19, 20, 40, 50)):
            add_order(conn, tenant.id, cid, NOW - days * DAY)
    scoring.rescore_tenant(engine, tenant.id, now=NOW)
    assert [row_of(engine, c).status for c in ids] == ["active", "at_risk", "lapsed", "lost"]


def test_rescore_command(engine, make_tenant, gateway_env, python):
    handle = make_tenant("Rescore shop")
    with engine.begin() as conn:
        cid = add_customer(conn, handle.id, "cli")
        add_order(conn, handle.id, cid, datetime.now(timezone.utc) - 400 * DAY)
    result = subprocess.run([python, str(ROOT / "app.py"), "rescore", "--tenant", handle.id],
                            env=gateway_env, cwd=ROOT, capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["tenant_id"] == handle.id
    assert (out["customers"], out["scored"], out["transitions"], out["returns"]) == (1, 1, 1, 0)
    assert isinstance(out["seconds"], float)
    assert row_of(engine, cid).status == "lost"
    unknown = subprocess.run([python, str(ROOT / "app.py"), "rescore", "--tenant", "ten_nope"],
                             env=gateway_env, cwd=ROOT, capture_output=True, text=True, check=False,
                             timeout=120)
    assert unknown.returncode == 2 and "error" in json.loads(unknown.stderr)


def _ntile5(keys: list) -> dict:
    """NTILE(5) by its definition: sorted, the first ``n % 5`` tiles one row larger."""
    ordered = sorted(keys)
    size, extra = divmod(len(ordered), 5)
    tiles, i = {}, 0
    for tile in range(1, 6):
        for _ in range(size + (1 if tile <= extra else 0)):
            tiles[ordered[i][-1]] = tile
            i += 1
    return tiles


@pytest.mark.parametrize("n", [1, 3, 4, 6, 9, 23])
def test_quintiles_are_ntile5_by_value_then_id(engine, make_tenant, n):
    """Ties everywhere (few distinct values), odd counts: each score equals NTILE(5)."""
    handle = make_tenant()
    rng = __import__("random").Random(n)
    ids = []
    with engine.begin() as conn:
        for k in range(n):
            cid = add_customer(conn, handle.id, f"q{rng.randrange(10**6):06d}{k:02d}")
            for _ in range(rng.randrange(1, 4)):
                add_order(conn, handle.id, cid, NOW - rng.randrange(0, 3) * DAY,
                          rng.choice(["5.00", "10.00"]))
            ids.append(cid)
    scoring.rescore_tenant(engine, handle.id, now=NOW)
    rows = [row_of(engine, cid) for cid in ids]
    expected = {
        "recency_score": _ntile5([(r.last_order_at, r.id) for r in rows]),
        "frequency_score": _ntile5([(r.order_count, r.id) for r in rows]),
        "monetary_score": _ntile5([(r.ltv_minor, r.id) for r in rows]),
    }
    for row in rows:
        got = (row.recency_score, row.frequency_score, row.monetary_score)
        assert got == tuple(expected[c][row.id] for c in expected), row.id
        assert row.rfm == got[0] * 100 + got[1] * 10 + got[2]


def test_json_amount_is_exact_on_both_sides_of_the_float_fast_path():
    from decimal import Decimal

    from gateway.scoring.items import json_amount

    for minor in (0, 1, 10, 420010, 1999, -5, 10**15 - 1, -(10**15 - 1)):
        value = json_amount(minor, "USD")
        assert Decimal(repr(value)) == Money(minor, "USD").to_decimal()
    assert json_amount(1234567, "BHD") == 1234.567
    assert json_amount(1500, "JPY") == 1500 and isinstance(json_amount(1500, "JPY"), int)
    assert json_amount(10**17 + 1, "USD") == "1000000000000000.01"  # beyond a float: a string
