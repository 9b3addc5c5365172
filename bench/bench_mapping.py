"""Benchmark: connector mapping throughput, in records a second on one core (one process).

    python bench/bench_mapping.py
    python bench/bench_mapping.py --records 200000 --repeats 3 --distinct 1000

What is timed (each connector's own mapping functions, nothing else: no HTTP, no JSON):

* ``rci page -> canonical``: :func:`connectors.rci.mapping.customer_from_wire` over the
  ``data`` of a JSON:API page of 100 customers (the sandbox's own seeded attributes, parsed
  from JSON text), the page mapped again and again; a second row adds the wire-schema check
  the client runs on every page by default (``wire.LIST_DOCUMENT.load``);
* ``canonical -> replenit customers`` / ``orders`` (2-3 lines each):
  :func:`connectors.replenit.mapping.customer_to_wire` / ``order_to_wire``;
* ``canonical -> rejoiner profile``: :func:`connectors.rejoiner.mapping.customer_to_profile`;
  ``canonical -> rejoiner convert``: ``cart_to_convert(order_to_cart(order), "USD")``, what
  ``RejoinerClient.convert`` builds for an order;
* ``canonical -> rekindle update-customer``: :func:`connectors.rekindle.mapping.customer_to_wire`.

Inputs are built deterministically once (``--distinct`` different records, from
:func:`connectors.sandbox_kit.synthetic_customers`), outside the timed loop, and cycled to
``--records``; each workload is timed with ``time.perf_counter`` ``--repeats`` times and the best
run is printed. Garbage collection stays on (the relay runs with it on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.rci import mapping as rci_mapping  # noqa: E402
from connectors.rci import wire as rci_wire  # noqa: E402
from connectors.rci.sandbox import seeded  # noqa: E402
from connectors.rejoiner import mapping as rejoiner_mapping  # noqa: E402
from connectors.rekindle import mapping as rekindle_mapping  # noqa: E402
from connectors.replenit import mapping as replenit_mapping  # noqa: E402
from connectors.sandbox_kit import synthetic_customers  # noqa: E402
from gateway.model import Address, Consent, Customer, Money, Order, OrderLine  # noqa: E402

#: What the issue asks of canonical -> Replenit, in records a second on one core.
REPLENIT_TARGET = 50_000
CONTEXT = {"consent_basis": "consent", "currency": "USD"}
PAGE_BASE = "https://repeat-customer-insights.littlestreamsoftware.com/api/v1"


# --- inputs (deterministic; shared with bench_clients.py) ------------------------------------


def canonical_customers(n: int, seed: int = 0) -> list[Customer]:
    """``n`` full canonical customers: profile, consent, address, aggregates and scores."""
    out = []
    for p in synthetic_customers(n, seed=seed):  # redacted_at is left out: never sent anywhere
        out.append(Customer(
            id=f"gw-{p.index:07d}",
            email=p.email,
            external_ids={"replenit": p.id, "rci": p.id},
            first_name=p.first_name,
            last_name=p.last_name,
            phone=p.phone,
            language=p.language,
            timezone=p.timezone,
            address=Address(line1=f"{p.index} Main Street", city=p.city, country=p.country),
            gender=("female", "male", None)[p.index % 3],
            tags=list(p.tags),
            metadata={"source": "shop"},
            consent=Consent(email=p.email_opt_in, sms=p.sms_opt_in, whatsapp=False,
                            push=None, gdpr_processing=p.gdpr_processing),
            lifetime_value=Money(p.ltv_cents, p.currency),
            order_count=p.order_count,
            first_order_at=p.first_order_at,
            last_order_at=p.last_order_at,
            recency_score=p.recency,
            frequency_score=p.frequency,
            monetary_score=p.monetary,
            rfm=p.rfm,
            grade=p.grade,
            segments=list(p.segments),
            cohort=p.cohort,
            acquisition_source=p.acquisition_source,
            status=("active", "at_risk", "lapsed", "lost")[p.recency % 4],
            engagement_score=(p.index * 37) % 101,
            created_at=p.created_at,
            updated_at=p.last_order_at or p.created_at,
        ))
    return out


_PRODUCTS = (("P001", "SKU-001", 1299), ("P002", "SKU-002", 2450), ("P003", "SKU-003", 899),
             ("P004", "SKU-004", 4999), ("P005", "SKU-005", 1500), ("P006", "SKU-006", 350))


def canonical_orders(n: int, seed: int = 0) -> list[Order]:
    """``n`` canonical orders with 2 or 3 lines each (sizes, colours, an original price)."""
    out = []
    for p in synthetic_customers(n, seed=seed):
        count = 2 + p.index % 2
        lines = []
        for k in range(count):
            pid, sku, cents = _PRODUCTS[(p.index + k * 2) % len(_PRODUCTS)]
            lines.append(OrderLine(
                product_id=pid, sku=sku, quantity=1 + (p.index + k) % 3,
                unit_price=Money(cents, "USD"),
                original_price=Money(cents + 500, "USD") if k == 0 else None,
                name=f"Product {pid}", size=("S", "M", "L")[k % 3],
                colour="blue" if k % 2 else None, brand="Acme", gift=k == 2,
            ))
        total = Money(sum(line.total.minor for line in lines), "USD")
        out.append(Order(
            id=f"ord_{p.index:07d}",
            placed_at=p.created_at + timedelta(days=3, microseconds=(p.index % 7) * 1000),
            total=total,
            lines=lines,
            customer_id=f"gw-{p.index:07d}",
            customer_email=p.email,
            customer_external_id=p.id,
            source="shop",
        ))
    return out


def rci_page(size: int = 100, seed: int = 0) -> dict[str, Any]:
    """A JSON:API list document as RCI serves it, parsed from its JSON text."""
    data = [{"type": "customer", "id": rci_id, "attributes": attributes,
             "links": {"self": f"{PAGE_BASE}/customers/{rci_id}"}}
            for rci_id, attributes in seeded(size, seed)]
    document = {"links": {"first": f"{PAGE_BASE}/customers",
                          "next": f"{PAGE_BASE}/customers?page%5Bcursor%5D=eyJhZnRlciI6IngifQ.0"},
                "data": data, "jsonapi": {"version": "1.0"}}
    return json.loads(json.dumps(document))


def cycled(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


# --- timing -------------------------------------------------------------------------------------


def best_rate(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    """(best records/s, records per run) over ``repeats`` runs of ``run`` (returning a count)."""
    best = float("inf")
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return count / best, count


def over_records(fn: Callable[..., Any], records: list[Any], *args: Any) -> Callable[[], int]:
    def run() -> int:
        for record in records:
            fn(record, *args)
        return len(records)
    return run


def over_pages(page: dict[str, Any], pages: int, validate: bool) -> Callable[[], int]:
    from_wire = rci_mapping.customer_from_wire
    schema = rci_wire.LIST_DOCUMENT

    def run() -> int:
        n = 0
        for _ in range(pages):
            data = schema.load(page)["data"] if validate else page["data"]
            for resource in data:
                from_wire(resource)
            n += len(data)
        return n
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records per timed run")
    parser.add_argument("--distinct", type=int, default=1_000, help="different input records")
    parser.add_argument("--repeats", type=int, default=3, help="runs per workload; best counts")
    parser.add_argument("--page-size", type=int, default=100, help="customers in the RCI page")
    args = parser.parse_args(argv)

    customers = cycled(canonical_customers(args.distinct), args.records)
    orders = cycled(canonical_orders(args.distinct), args.records)
    page = rci_page(args.page_size)
    pages = max(1, args.records // len(page["data"]))
    # The schema check is ~an order of magnitude slower: a tenth of the records is plenty.
    checked_pages = max(1, pages // 10)

    def rejoiner_convert(record: Order) -> Any:
        return rejoiner_mapping.cart_to_convert(rejoiner_mapping.order_to_cart(record), "USD")

    workloads: list[tuple[str, Callable[[], int], int | None]] = [
        ("rci page -> canonical", over_pages(page, pages, validate=False), None),
        ("rci page -> canonical, with wire schema check", over_pages(page, checked_pages, True),
         None),
        ("canonical -> replenit customer", over_records(
            replenit_mapping.customer_to_wire, customers, CONTEXT), REPLENIT_TARGET),
        ("canonical -> replenit order (2-3 lines)", over_records(
            replenit_mapping.order_to_wire, orders, CONTEXT), REPLENIT_TARGET),
        ("canonical -> rejoiner customer profile", over_records(
            rejoiner_mapping.customer_to_profile, customers), None),
        ("canonical order -> rejoiner convert", over_records(rejoiner_convert, orders), None),
        ("canonical -> rekindle update-customer", over_records(
            rekindle_mapping.customer_to_wire, customers, "USD"), None),
    ]

    print(f"mapping throughput: python {platform.python_version()}, {os.cpu_count()} cores "
          f"(one used), best of {args.repeats}, {args.distinct} distinct inputs cycled; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"{'workload':<48} {'records':>9} {'records/s':>11}  target")
    failed = []
    for name, run, target in workloads:
        rate, count = best_rate(run, args.repeats)
        verdict = ""
        if target:
            ok = rate >= target
            verdict = f">= {target:,}  {'ok' if ok else 'BELOW'}"
            if not ok:
                failed.append(name)
        print(f"{name:<48} {count:>9,} {rate:>11,.0f}  {verdict}", flush=True)
    if failed:
        print(f"below target: {', '.join(n.strip() for n in failed)}")


if __name__ == "__main__":
    main()
