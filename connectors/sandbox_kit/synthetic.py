"""Deterministic synthetic customers for seeding sandboxes and benchmarks.

Customer ``i`` of seed ``s`` is always the same person, whatever ``n`` is, and the generator
holds one person at a time, so walking a million costs no more memory than walking ten.
Money is in integer cents of ``currency``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

_FIRST = ("Ada", "Ben", "Chloé", "Dev", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemi",
          "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomás", "Uma",
          "Vik", "Wen", "Yara", "Zoë")
_LAST = ("Okafor", "Smith", "Müller", "Tanaka", "García", "Nowak", "Rossi", "Dubois", "Kim",
         "Larsen", "Silva", "Haddad", "Novak", "Cohen", "Singh", "O'Brien", "Ivanova", "Berg")
_PLACES = (("US", "Portland", "America/Los_Angeles", "en-US", "+1503555"),
           ("GB", "Leeds", "Europe/London", "en-GB", "+44113496"),
           ("DE", "Köln", "Europe/Berlin", "de-DE", "+49221555"),
           ("FR", "Lyon", "Europe/Paris", "fr-FR", "+33472555"),
           ("JP", "Osaka", "Asia/Tokyo", "ja-JP", "+81665555"))
_PRODUCTS = tuple((f"P{n:03d}", f"SKU-{n:03d}", f"Product {n}", price)
                  for n, price in enumerate((1299, 2450, 899, 4999, 1500, 350, 7900, 2200), 1))
_SOURCES = ("organic", "paid_search", "social", "email", "referral")
_GRADES = {5: "A", 4: "B", 3: "C", 2: "D", 1: "F"}


@dataclass(frozen=True, slots=True)
class SyntheticLine:
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class SyntheticOrder:
    id: str
    placed_at: datetime
    total_cents: int
    currency: str
    lines: tuple[SyntheticLine, ...]


@dataclass(frozen=True, slots=True)
class Synthetic:
    """One made-up customer with an order history, consent and RFM scores."""

    index: int
    id: str  # a stable shop customer id, e.g. "cus_000042"
    email: str
    first_name: str
    last_name: str
    phone: str
    language: str
    timezone: str
    country: str
    city: str
    created_at: datetime
    currency: str
    orders: tuple[SyntheticOrder, ...]
    ltv_cents: int
    email_opt_in: bool
    sms_opt_in: bool
    gdpr_processing: bool
    recency: int  # 1-5
    frequency: int  # 1-5
    monetary: int  # 1-5
    grade: str  # A-D, F
    segments: tuple[str, ...]
    acquisition_source: str
    tags: tuple[str, ...] = field(default=())
    redacted_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def order_count(self) -> int:
        return len(self.orders)

    @property
    def first_order_at(self) -> datetime | None:
        return self.orders[0].placed_at if self.orders else None

    @property
    def last_order_at(self) -> datetime | None:
        return self.orders[-1].placed_at if self.orders else None

    @property
    def rfm(self) -> int:
        return self.recency * 100 + self.frequency * 10 + self.monetary

    @property
    def cohort(self) -> str:
        first = self.first_order_at or self.created_at
        return first.strftime("%Y-%m")


def synthetic_customers(n: int, seed: int = 0, now: datetime | None = None) -> Iterator[Synthetic]:
    """``n`` deterministic customers (about 1 in 50 redacted, 1 in 8 without orders)."""
    now = now or datetime(2025, 6, 1, tzinfo=timezone.utc)
    for index in range(n):
        yield _person(index, seed, now)


def _score(value: float, edges: tuple[float, float, float, float]) -> int:
    return 1 + sum(value >= edge for edge in edges)


def _person(index: int, seed: int, now: datetime) -> Synthetic:
    rng = random.Random(seed * 1_000_003 + index)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    country, city, tz, language, phone_prefix = rng.choice(_PLACES)
    created_at = (now - timedelta(days=rng.randint(30, 1500), seconds=rng.randint(0, 86399))
                  ).replace(microsecond=0)
    currency = "USD"
    order_count = 0 if rng.random() < 0.125 else min(12, int(rng.expovariate(0.45)) + 1)
    orders = []
    moment = created_at
    days_left = (now - created_at).days
    for number in range(order_count):
        moment = moment + timedelta(days=rng.randint(0, max(1, days_left // (order_count + 1))),
                                    minutes=rng.randint(1, 1440))
        if moment > now:
            moment = now - timedelta(minutes=order_count - number)
        lines = tuple(
            SyntheticLine(pid, sku, pname, rng.randint(1, 3), price)
            for pid, sku, pname, price in rng.sample(_PRODUCTS, rng.randint(1, 3))
        )
        total = sum(line.quantity * line.unit_price_cents for line in lines)
        orders.append(SyntheticOrder(f"ord_{index:06d}_{number:02d}", moment, total, currency,
                                     lines))
    ltv = sum(order.total_cents for order in orders)
    days_since = (now - orders[-1].placed_at).days if orders else 9999
    recency = 6 - _score(days_since, (30, 90, 180, 365))
    frequency = _score(order_count, (2, 3, 5, 8))
    monetary = _score(ltv, (3000, 8000, 15000, 30000))
    grade = _GRADES[max(1, round((recency + frequency + monetary) / 3))]
    segments = []
    if recency >= 4 and frequency >= 4:
        segments.append("Loyal")
    if recency <= 2 and order_count:
        segments.append("At Risk")
    if order_count == 1:
        segments.append("One-time")
    redacted = index % 50 == 49
    return Synthetic(
        index=index,
        id=f"cus_{index:06d}",
        email=f"{first.lower()}.{index}@example.com".replace("é", "e").replace("ë", "e")
        .replace("á", "a").replace("ö", "o").replace("'", ""),
        first_name=first,
        last_name=last,
        phone=f"{phone_prefix}{index % 10000:04d}",
        language=language,
        timezone=tz,
        country=country,
        city=city,
        created_at=created_at,
        currency=currency,
        orders=tuple(orders),
        ltv_cents=ltv,
        email_opt_in=rng.random() < 0.8,
        sms_opt_in=rng.random() < 0.3,
        gdpr_processing=rng.random() < 0.9,
        recency=recency,
        frequency=frequency,
        monetary=monetary,
        grade=grade,
        segments=tuple(segments),
        acquisition_source=rng.choice(_SOURCES),
        tags=tuple(t for t in ("vip", "wholesale") if rng.random() < 0.1),
        redacted_at=(now - timedelta(days=rng.randint(1, 20))).replace(microsecond=0)
        if redacted else None,
    )
