"""The demo's tables, as plain text: every function takes figures (from
:mod:`gateway.demo.figures`) and returns lines, so the command prints them and a test or the
README can quote them."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .figures import GRADE_ORDER, STATUS_ORDER
from .sandboxes import NAMES, TITLES


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A titled text table; numbers right-aligned, the rest left-aligned."""
    body = [["" if v is None else str(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) or not row[i] for row in body)
               and any(row[i] for row in body) for i in range(len(headers))]
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = ["", title, line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body] or ["(none)"]
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: How the tables name the places deliveries go.
DESTINATIONS = {**TITLES, "hooks": "REST hooks"}


def pulls_table(first: dict[str, Any] | None, scheduled: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    if first is not None:
        c = first.get("counts", first)
        rows.append(["rci-customers", "first pull (demo)", c.get("read"), c.get("changed"),
                     c.get("sent"), c.get("failed"), c.get("dead"), c.get("skipped")])
        for name, per in (first.get("per_destination") or {}).items():
            rows.append(["", f"  to {DESTINATIONS.get(name, name)}", "", per.get("queued"),
                         per.get("sent"), per.get("failed"), per.get("dead"),
                         per.get("unchanged")])
    for run in scheduled:
        c = run.get("counts") or {}
        rows.append([run["route"], f"schedule ({run['status']})", c.get("read"),
                     c.get("changed", c.get("new")), c.get("sent"), c.get("failed"),
                     c.get("dead"), c.get("skipped")])
    return table("Pulls: what each scheduled route read and sent",
                 ["route", "run", "read", "changed", "sent", "failed", "dead", "skipped"], rows)


def deliveries_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    return table("Deliveries by destination (every route's records, batched under each "
                 "service's limits)",
                 ["destination", "operation", "done", "dead", "queued", "cancelled"],
                 [[r["connector"], r["operation"], r["done"], r["dead"], r["queued"],
                   r["cancelled"]] for r in rows])


def sandboxes_table(stats: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for name in NAMES:
        s = stats[name]
        records = ", ".join(f"{k} {v}" for k, v in s.get("records", {}).items())
        answered = s.get("requests", {})
        answers = ", ".join(f"{code} x{n}" for code, n in sorted(answered.items()))
        rows.append([TITLES[name], records, answers, answered.get("429", 0)])
    return table("What each sandbox says it holds (its own /_sandbox/stats)",
                 ["service", "records", "answers (HTTP status x count)", "429s"], rows) + [
        "(Rejoiner's 404s are the look-ups before a profile's first write: read, merge, write.)"]


def checks_table(checks: Sequence[dict[str, Any]]) -> list[str]:
    return table("Sandbox counts against what the gateway says it delivered",
                 ["service", "records", "gateway sent", "sandbox holds", ""],
                 [[TITLES[c["service"]], c["kind"], c["gateway_sent"], c["sandbox_holds"],
                   "agree" if c["agree"] else "DISAGREE"] for c in checks])


def dead_table(dead: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for d in dead:
        error = d.get("last_error") or {}
        reason = error.get("error") if isinstance(error, dict) else str(error)
        rows.append([d["id"], d["connector"], d["operation"], d.get("record_key"),
                     str(reason or "")[:60]])
    lines = table("Dead letters", ["id", "destination", "operation", "record", "reason"], rows)
    if not rows:
        lines[-1] = "none (python app.py deliveries list --status dead)"
    return lines


def funnel_table(funnel: dict[str, int], grades: dict[str, int]) -> list[str]:
    lines = table("Status funnel (the gateway's own scoring)",
                  [*STATUS_ORDER, "no purchase"],
                  [[*(funnel[s] for s in STATUS_ORDER), funnel["none"]]])
    lines += table("RFM grades", list(GRADE_ORDER), [[grades[g] for g in GRADE_ORDER]])
    return lines


def winback_lines(winback: dict[str, Any] | None) -> list[str]:
    if not winback:
        return ["", "Win-back: no lapsed customer had been tagged, so none was posted."]
    rows = [["customer", winback["email"]],
            ["tagged gw:winback at Rejoiner (customers tagged)", winback["tagged"]],
            ["status before the order -> after", f"{winback['before']} -> {winback['after']}"],
            ["returned_at (the win-back is attributed)", winback["returned_at"]],
            ["customer.returned events", winback["returned_events"]],
            ["Rejoiner journeys cancelled (explicit cancels)", winback["cancels"]],
            ["gw:winback tag still at Rejoiner", winback["still_tagged"]]]
    return table("Win-back: an order from a lapsed customer the winback route had tagged",
                 ["what", "seen"], rows)


def webhooks_table(posted: Sequence[Any]) -> list[str]:
    rows = []
    for p in posted:
        answer = p.answer
        said = "duplicate" if answer.get("duplicate") else answer.get("state",
                                                                       answer.get("error", ""))
        rows.append([p.what, p.topic, p.status, said])
    return table("Signed sample webhooks (Standard Webhooks, the tenant's secret)",
                 ["post", "topic", "HTTP", "answer"], rows)


def hooks_lines(received: dict[str, Any], events: int, posts: dict[str, int]) -> list[str]:
    by_status = ", ".join(f"{k} {v}" for k, v in received["by_status"].items()) or "-"
    return table("REST hook (a local subscriber to customer.status_changed)",
                 ["status-change events", "received", "signatures verified", "refused",
                  "by new status"],
                 [[events, received["posts"], received["events"], received["refused"],
                   by_status]]) + ["hook deliveries: "
                                   + ", ".join(f"{k} {v}" for k, v in sorted(posts.items()))]


TRIGGER_FIELDS = ("id", "email", "status", "previous_status", "engagement_score",
                  "returned_at")


def triggers_table(title: str, items: Sequence[dict[str, Any]]) -> list[str]:
    return table(title, list(TRIGGER_FIELDS),
                 [[item.get(f) for f in TRIGGER_FIELDS] for item in items])


def try_it_lines(api_url: str, api_key: str, email: str | None) -> list[str]:
    auth = f'-H "Authorization: Bearer {api_key}"'
    order = ('{"id": "CURL-1", "placed_at": "2026-01-01T10:00:00Z", "total": "12.99", '
             '"currency": "USD", "customer_email": "curl.buyer@example.com", "lines": '
             '[{"product_id": "P001", "sku": "SKU-001", "quantity": 1, "unit_price": "12.99"}]}')
    return [
        "", "Try it (the API key is shown only here; it is stored as a hash):",
        f"  API key: {api_key}",
        "  poll a trigger:",
        f'    curl -s {auth} "{api_url}/api/v1/triggers/customer-status?status=lapsed&limit=3"',
        "  call an action:",
        f"    curl -s -X POST {auth} -H 'Content-Type: application/json' "
        f"-H 'Idempotency-Key: demo-1' -d '{order}' {api_url}/api/v1/actions/record-order",
        "  run a search:",
        f'    curl -s {auth} "{api_url}/api/v1/actions/find-customer?email='
        f'{email or "new.customer@example.com"}"',
        f"  docs: {api_url}/docs",
    ]
