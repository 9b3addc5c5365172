"""What the demo reports, read from the gateway's own database and API and from the
sandboxes' own stats, and the one comparison ``--once`` exits on: for each kind of record a
sandbox holds, the sandbox's count against the number of distinct records the gateway says it
delivered there (done upserts, less the ones it later deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import requests
from sqlalchemy import Engine, and_, func, select

from gateway.hooks import HOOKS
from gateway.relay.admin import list_deliveries
from gateway.relay.runs import list_runs
from gateway.store.tables import customers, deliveries, events, webhook_inbox

from .sandboxes import DemoSandbox

STATUS_ORDER = ("active", "at_risk", "lapsed", "lost")
GRADE_ORDER = ("A", "B", "C", "D", "F")


@dataclass(frozen=True)
class Check:
    """One kind of record at one sandbox, and the gateway operations that put it there."""

    service: str
    kind: str  # the sandbox's own name for it, in /_sandbox/stats "records"
    upsert: str
    delete: str | None = None


CHECKS = (
    Check("replenit", "customers", "customers.upsert", "customers.delete"),
    Check("replenit", "orders", "orders.upsert"),
    Check("replenit", "products", "products.upsert"),
    Check("rekindle", "customers", "customers.upsert"),
    Check("rejoiner", "customers", "customers.upsert"),
)


def _done_keys(engine: Engine, tenant_id: str, connector: str, operation: str) -> set[str]:
    d = deliveries.c
    with engine.connect() as conn:
        return set(conn.execute(select(d.record_key).distinct().where(
            d.tenant_id == tenant_id, d.connector == connector, d.operation == operation,
            d.status == "done")).scalars())


def delivered(engine: Engine, tenant_id: str, check: Check) -> int:
    """Distinct records the gateway delivered for ``check`` and did not delete since."""
    keys = _done_keys(engine, tenant_id, check.service, check.upsert)
    if check.delete:
        keys -= _done_keys(engine, tenant_id, check.service, check.delete)
    return len(keys)


def compare(engine: Engine, tenant_id: str, stats: dict[str, dict[str, Any]]) -> list[dict]:
    """One row per :data:`CHECKS` entry: what the gateway says it sent, what the sandbox
    holds, and whether they agree."""
    rows = []
    for check in CHECKS:
        sent = delivered(engine, tenant_id, check)
        held = stats[check.service]["records"].get(check.kind)
        rows.append({"service": check.service, "kind": check.kind, "gateway_sent": sent,
                     "sandbox_holds": held, "agree": held == sent})
    return rows


def delivery_counts(engine: Engine, tenant_id: str) -> dict[str, int]:
    """The tenant's deliveries by status (REST-hook posts included)."""
    d = deliveries.c
    with engine.connect() as conn:
        return dict(conn.execute(select(d.status, func.count()).where(d.tenant_id == tenant_id)
                                 .group_by(d.status)).all())


def inbox_pending(engine: Engine, tenant_id: str) -> int:
    w = webhook_inbox.c
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(
            w.tenant_id == tenant_id, w.state == "pending")).scalar_one()


def by_destination(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    """Deliveries per destination and operation: done, dead, still queued."""
    d = deliveries.c
    query = (select(d.connector, d.operation, d.status, func.count())
             .where(d.tenant_id == tenant_id, d.connector != HOOKS)
             .group_by(d.connector, d.operation, d.status))
    table: dict[tuple[str, str], dict[str, int]] = {}
    with engine.connect() as conn:
        for connector, operation, status, n in conn.execute(query):
            table.setdefault((connector, operation), {})[status] = n
    return [{"connector": c, "operation": o, "done": s.get("done", 0), "dead": s.get("dead", 0),
             "queued": s.get("pending", 0) + s.get("in_flight", 0),
             "cancelled": s.get("cancelled", 0)}
            for (c, o), s in sorted(table.items())]


def hook_posts(engine: Engine, tenant_id: str) -> dict[str, int]:
    d = deliveries.c
    with engine.connect() as conn:
        return dict(conn.execute(select(d.status, func.count()).where(
            d.tenant_id == tenant_id, d.connector == HOOKS).group_by(d.status)).all())


def dead_letters(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list_deliveries(conn, tenant_id, status="dead", limit=20)


def runs(engine: Engine, tenant_id: str, route: str) -> list[dict[str, Any]]:
    """The route's recorded runs, oldest first."""
    with engine.connect() as conn:
        return list(reversed(list_runs(conn, tenant_id, route=route, limit=20)))


def event_count(engine: Engine, tenant_id: str, type_: str) -> int:
    """How many events of ``type_`` the tenant has (every one a REST hook would be sent)."""
    e = events.c
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(
            e.tenant_id == tenant_id, e.type == type_)).scalar_one()


def funnel(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Customers by engagement status (``none``: no known purchase, or redacted)."""
    c = customers.c
    with engine.connect() as conn:
        found = dict(conn.execute(select(c.status, func.count()).where(c.tenant_id == tenant_id)
                                  .group_by(c.status)).all())
    out = {status: found.pop(status, 0) for status in STATUS_ORDER}
    out["none"] = sum(found.values())
    return out


def grades(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Scored customers by RFM grade."""
    c = customers.c
    with engine.connect() as conn:
        found = dict(conn.execute(select(c.grade, func.count()).where(
            c.tenant_id == tenant_id, c.grade.is_not(None)).group_by(c.grade)).all())
    return {grade: found.get(grade, 0) for grade in GRADE_ORDER}


def winback_candidate(engine: Engine, tenant_id: str) -> tuple[str, str] | None:
    """(id, email) of a lapsed customer (else a lost one) whose win-back message started
    (the ``gw:winback`` tag reached Rejoiner) and who has not returned since."""
    c = customers.c
    with engine.connect() as conn:
        for status in ("lapsed", "lost"):
            row = conn.execute(select(c.id, c.email).where(
                c.tenant_id == tenant_id, c.status == status, c.email.is_not(None),
                c.winback_started_at.is_not(None), c.returned_at.is_(None))
                .order_by(c.id).limit(1)).first()
            if row is not None:
                return row.id, row.email
    return None


def tagged_count(engine: Engine, tenant_id: str) -> int:
    c = customers.c
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(
            c.tenant_id == tenant_id, c.winback_started_at.is_not(None))).scalar_one()


def active_customer(engine: Engine, tenant_id: str, *, skip: str | None = None) -> str | None:
    """The email of an active customer (for the sample unsubscribe)."""
    c = customers.c
    with engine.connect() as conn:
        return conn.execute(select(c.email).where(and_(
            c.tenant_id == tenant_id, c.status == "active", c.email.is_not(None),
            c.email != (skip or ""))).order_by(c.id).limit(1)).scalar()


def customer_state(engine: Engine, tenant_id: str, customer_id: str) -> dict[str, Any]:
    c = customers.c
    with engine.connect() as conn:
        row = conn.execute(select(c.status, c.returned_at, c.winback_started_at).where(
            c.tenant_id == tenant_id, c.id == customer_id)).one()
    return dict(row._mapping)


def winback_outcome(engine: Engine, tenant_id: str, candidate: tuple[str, str],
                    before: str, rejoiner: DemoSandbox) -> dict[str, Any]:
    """What became of the win-back customer ``candidate`` (id, email) after their order: the
    gateway's status, return and ``customer.returned`` events, and Rejoiner's own record (its
    explicit cancels are its cancels less those its conversions made; the tag)."""
    customer_id, email = candidate
    after = customer_state(engine, tenant_id, customer_id)
    e = events.c
    with engine.connect() as conn:
        returned = conn.execute(select(func.count()).where(
            e.tenant_id == tenant_id, e.type == "customer.returned",
            e.subject_id == customer_id)).scalar_one()
    held = rejoiner_held(rejoiner, email)
    activity = held["activity"] or {"cancels": 0, "conversions": []}
    tags = (held["customers"] or {}).get("tags") or []
    return {"email": email, "tagged": tagged_count(engine, tenant_id), "before": before,
            "after": after["status"], "returned_at": iso(after["returned_at"]),
            "returned_events": returned,
            "cancels": activity["cancels"] - len(activity["conversions"]),
            "still_tagged": "gw:winback" in tags}


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def sandbox_stats(sandboxes: dict[str, DemoSandbox]) -> dict[str, dict[str, Any]]:
    return {name: sandbox.stats() for name, sandbox in sandboxes.items()}


def rejoiner_held(sandbox: DemoSandbox, email: str) -> dict[str, Any]:
    """Rejoiner's own record of a customer and of their journeys (its control endpoints)."""
    out: dict[str, Any] = {}
    for kind in ("customers", "activity"):
        answer = requests.get(f"{sandbox.url}/_sandbox/records/{kind}/{quote(email, safe='')}",
                              timeout=10)
        out[kind] = answer.json() if answer.status_code == 200 else None
    return out


def api_get(api_url: str, api_key: str, path: str) -> Any:
    """GET one of the gateway's own endpoints with the demo's key."""
    answer = requests.get(api_url + path, headers={"Authorization": f"Bearer {api_key}"},
                          timeout=30)
    answer.raise_for_status()
    return answer.json()
