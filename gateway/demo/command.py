"""``python app.py demo [--customers N] [--once] [--folder DIR] [--port P]``.

The whole gateway offline, end to end (see :mod:`gateway.demo`). In order:

1. a fresh embedded SQLite database in its own folder (printed); settings written out in full;
2. the four sandboxes on free ports, rate-scaled; RCI seeded with ``N`` customers;
3. a tenant, an admin API key, the tenant settings (a lawful basis, private hook targets), the
   four connections; every route is on by default;
4. the API on waitress, and a local REST-hook subscriber to ``customer.status_changed``;
5. the first pull and relay of ``rci-customers`` (:func:`gateway.pulls.sync.run_sync`, with a
   progress bar), then the background loops (worker, hook sender, webhook drainer, schedules:
   their first pulls run at once and find nothing new to send);
6. a re-score: statuses, the win-back tags, the hook posts;
7. signed sample webhooks, among them an order from a tagged lapsed customer;
8. the summary tables and one ``demo-summary {...}`` JSON line, then it serves until Ctrl-C.

``--once`` stops after the summary: exit 0 when every sandbox's count agrees with what the
gateway says it delivered there, everything settled and nothing was dead-lettered; otherwise a
one-line error and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import requests

from gateway.cli import CommandError, port_number

from . import figures, summary
from .progress import Progress
from .sandboxes import RATE_SCALE

log = logging.getLogger("gateway.demo")

#: How long the demo waits for a step to settle before it reports what it has.
SETTLE_SECONDS = 180.0
POLL_SECONDS = 0.2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 100000")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole gateway offline against the four sandboxes, for a first "
                     "look (its own fresh database; never touches a real one)")
    demo.add_argument("--customers", type=_positive, default=300,
                      help="customers to seed Repeat Customer Insights with (default 300)")
    demo.add_argument("--once", action="store_true",
                      help="exit after the first full pass: 0 when every sandbox agrees with "
                           "the gateway, non-zero otherwise")
    demo.add_argument("--folder", help="where the demo's database goes (an empty or new "
                                       "folder; default: a new temporary folder)")
    demo.add_argument("--port", type=port_number, default=None,
                      help="the API's port on 127.0.0.1 (default: a free one)")
    demo.set_defaults(func=cmd_demo)


def say(text: str = "") -> None:
    print(text, flush=True)


def _log_to_file(folder: Path) -> None:
    """The gateway's log lines go to ``demo.log`` in the folder; the terminal gets warnings
    only, so the tables stay readable."""
    root = logging.getLogger()
    to_file = logging.FileHandler(folder / "demo.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if root.handlers:  # the command's own handler: the same format and secret masking
        source = root.handlers[0]
        if source.formatter is not None:
            to_file.setFormatter(source.formatter)
        for log_filter in source.filters:
            to_file.addFilter(log_filter)
    for handler in root.handlers:
        handler.setLevel(logging.WARNING)
    to_file.setLevel(logging.INFO)
    root.addHandler(to_file)
    root.setLevel(logging.INFO)


def _wait(condition: Callable[[], bool], timeout: float = SETTLE_SECONDS) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_SECONDS)
    return condition()


def _settle(engine, tenant_id: str, label: str, timeout: float = SETTLE_SECONDS) -> bool:  # noqa: ANN001
    """Wait (with a progress bar) until no delivery is queued or in flight and no webhook
    waits in the inbox; whether that happened within ``timeout``."""
    bar = Progress(label, rate=False)

    def settled() -> bool:
        counts = figures.delivery_counts(engine, tenant_id)
        queued = counts.get("pending", 0) + counts.get("in_flight", 0)
        done = sum(counts.values()) - queued
        bar.update(sent=done, total_hint=sum(counts.values()))
        return not queued and not figures.inbox_pending(engine, tenant_id)

    ok = _wait(settled, timeout)
    bar.done()
    return ok


def _first_pull(runtime, tenant_id: str) -> dict[str, Any]:  # noqa: ANN001
    """``rci-customers`` now: the walk, then the delivery of what it queued.

    The sync's own worker sends to the services; the REST-hook posts the walk's status
    changes call for are the hook sender's, so one runs beside it for the while (the
    background loops, started after the first pull, bring their own)."""
    from gateway.hooks.sender import HookSender
    from gateway.pulls.sync import run_sync

    sender, stop = HookSender(runtime), threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,), name="demo-hooks",
                              daemon=True)
    thread.start()
    bar = Progress("rci-customers (first pull)")
    try:
        result = run_sync(runtime, tenant_id, "rci-customers", progress=bar,
                          timeout=SETTLE_SECONDS)
    finally:
        stop.set()
        sender.stop()
        thread.join(timeout=30)
    bar.done()
    return result.as_dict()


def _subscribe(api_url: str, api_key: str, target: str) -> str:
    answer = requests.post(f"{api_url}/api/v1/hooks", json={
        "event": "customer.status_changed", "target_url": target},
        headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    if answer.status_code != 201:
        raise CommandError(f"the REST-hook subscription was refused: {answer.status_code} "
                           f"{answer.text[:200]}")
    return answer.json()["secret"]


def cmd_demo(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        _run(args, stack)


def _run(args: argparse.Namespace, stack: ExitStack) -> None:  # noqa: C901 - the story, in order
    from gateway import create_app, serving
    from gateway.background import Background
    from gateway.runtime import Runtime
    from gateway.scoring import rescore_tenant

    from .receiver import start_receiver
    from .sandboxes import start_sandboxes, stop_all
    from .seed import seed_rci
    from .setup import SHOP_SETTINGS, FolderNotEmpty, create_shop, demo_folder, demo_settings
    from .webhooks import post_samples

    started = time.monotonic()
    try:
        folder = demo_folder(args.folder)
    except FolderNotEmpty as exc:
        raise CommandError(str(exc)) from None
    _log_to_file(folder)
    say(f"Demo folder (a fresh embedded SQLite database; the log is demo.log): {folder}")

    settings = demo_settings(folder, RATE_SCALE)
    runtime = Runtime.open(settings, migrate=True)
    stack.callback(runtime.close)

    sandboxes = start_sandboxes(RATE_SCALE)
    stack.callback(stop_all, sandboxes)
    held = seed_rci(sandboxes["rci"], args.customers, datetime.now(timezone.utc))
    say("Sandboxes on 127.0.0.1: " + ", ".join(
        f"{name} :{s.running.port}" for name, s in sandboxes.items()))
    say(f"They keep their documented rate limits on a clock {RATE_SCALE:g}x faster than real "
        f"time (Rekindle's 120 requests a minute: 120 every {60 / RATE_SCALE:g} s), and the "
        f"gateway paces itself to the same scaled limits.")
    say(f"Repeat Customer Insights seeded with {held} customers (order histories, some long "
        f"silent).")

    shop = create_shop(runtime, sandboxes)
    say(f"Tenant {shop.tenant_id} with an admin API key (shown at the end).")
    say(f"Declared consent_basis={SHOP_SETTINGS['consent_basis']} in the tenant's settings: "
        f"Replenit receives only customers with a consent basis, and this declares one for all.")
    say("Set allow_private_targets=true for this tenant (the REST-hook subscriber is local).")
    say("Connections: " + ", ".join(sorted(sandboxes)) + "; routes on: "
        + ", ".join(r["name"] for r in shop.routes if r["enabled"]))

    app = create_app(runtime=runtime)
    try:
        server = serving.make_server(app, "127.0.0.1", args.port or 0, settings)
    except OSError as exc:
        raise CommandError(f"cannot listen on 127.0.0.1:{args.port or 0}: "
                           f"{exc.strerror or exc}") from None
    api_thread = threading.Thread(target=server.serve_until_stopped, name="demo-api",
                                  daemon=True)
    api_thread.start()
    stack.callback(api_thread.join, 15)
    stack.callback(server.stop)
    api_url = f"http://127.0.0.1:{server.port}"
    say(f"API on {api_url} (docs at {api_url}/docs)")

    receiver = start_receiver()
    stack.callback(receiver.stop)
    receiver.secret = _subscribe(api_url, shop.api_key, receiver.url)
    say(f"REST hook subscribed: customer.status_changed -> {receiver.url}")

    say("")
    first = _first_pull(runtime, shop.tenant_id)

    before = {route: len(figures.runs(runtime.engine, shop.tenant_id, route))
              for route in ("rci-customers", "rekindle-poll")}
    background = Background(runtime).start()
    stack.callback(background.stop)
    say("Worker, REST-hook sender, webhook drainer and schedules running.")
    scheduled_ran = _wait(lambda: all(
        len(figures.runs(runtime.engine, shop.tenant_id, route)) > n
        for route, n in before.items()), timeout=60)

    rescored = rescore_tenant(runtime.engine, shop.tenant_id)
    say(f"Re-scored {rescored.customers} customers ({rescored.scored} with a purchase): "
        f"{rescored.transitions} status changes besides those scored as the customers arrived.")
    settled = _settle(runtime.engine, shop.tenant_id, "win-back tags and hooks")

    candidate = figures.winback_candidate(runtime.engine, shop.tenant_id)
    before_state = (figures.customer_state(runtime.engine, shop.tenant_id, candidate[0])
                    if candidate else None)
    unsubscribing = figures.active_customer(runtime.engine, shop.tenant_id,
                                            skip=candidate[1] if candidate else None)
    posted = post_samples(api_url, shop.tenant_id, shop.webhook_secret,
                          candidate[1] if candidate else None, unsubscribing)
    say(f"Posted {len(posted)} signed sample webhooks.")
    settled = _settle(runtime.engine, shop.tenant_id, "webhooks relayed") and settled

    winback = None
    if candidate:
        winback = figures.winback_outcome(runtime.engine, shop.tenant_id, candidate,
                                          before_state["status"], sandboxes["rejoiner"])

    stats = figures.sandbox_stats(sandboxes)
    checks = figures.compare(runtime.engine, shop.tenant_id, stats)
    dead = figures.dead_letters(runtime.engine, shop.tenant_id)
    funnel = figures.funnel(runtime.engine, shop.tenant_id)
    grades = figures.grades(runtime.engine, shop.tenant_id)
    scheduled = [run for route in ("rci-customers", "rekindle-poll")
                 for run in figures.runs(runtime.engine, shop.tenant_id, route)[before[route]:]]
    status_items = figures.api_get(api_url, shop.api_key,
                                   "/api/v1/triggers/customer-status?limit=3")
    returned_items = figures.api_get(api_url, shop.api_key,
                                     "/api/v1/triggers/customer-returned?limit=1")
    status_events = figures.event_count(runtime.engine, shop.tenant_id,
                                        "customer.status_changed")
    hooks = receiver.counts()

    lines: list[str] = []
    lines += summary.pulls_table(first, scheduled)
    lines += summary.deliveries_table(figures.by_destination(runtime.engine, shop.tenant_id))
    lines += summary.sandboxes_table(stats)
    lines += summary.checks_table(checks)
    lines += summary.dead_table(dead)
    lines += summary.funnel_table(funnel, grades)
    lines += summary.winback_lines(winback)
    lines += summary.webhooks_table(posted)
    lines += summary.hooks_lines(hooks, status_events,
                                 figures.hook_posts(runtime.engine, shop.tenant_id))
    lines += summary.triggers_table("Trigger items (GET /api/v1/triggers/customer-status)",
                                    status_items)
    lines += summary.triggers_table("Trigger items (GET /api/v1/triggers/customer-returned)",
                                    returned_items)
    for line in lines:
        say(line)
    say("\n".join(summary.try_it_lines(api_url, shop.api_key, candidate[1] if candidate
                                       else None)))

    agree = all(c["agree"] for c in checks)
    ok = agree and settled and not dead
    say("")
    say("demo-summary " + json.dumps({
        "ok": ok, "agree": agree, "settled": settled, "scheduled_pulls_ran": scheduled_ran,
        "customers": args.customers, "rate_scale": RATE_SCALE,
        "sandboxes": stats, "checks": checks, "dead": len(dead), "first_pull": first,
        "funnel": funnel, "grades": grades, "winback": winback, "hooks": hooks,
        "status_events": status_events,
        "webhooks": [{"topic": p.topic, "status": p.status,
                      "duplicate": bool(p.answer.get("duplicate"))} for p in posted],
        "seconds": round(time.monotonic() - started, 1),
    }, default=str, sort_keys=False))

    if args.once:
        if not ok:
            raise CommandError(_failure(agree, settled, dead))
        return
    say("")
    say(f"Serving on {api_url} until Ctrl-C (the schedules keep pulling; the folder stays: "
        f"{folder}).")
    _serve_until_interrupted()
    say("Stopping: the API, the worker and schedules, the subscriber, the sandboxes.")


def _failure(agree: bool, settled: bool, dead: list) -> str:
    reasons = []
    if not agree:
        reasons.append("a sandbox's count disagrees with what the gateway says it delivered")
    if not settled:
        reasons.append(f"deliveries were still queued after {SETTLE_SECONDS:g} s")
    if dead:
        reasons.append(f"{len(dead)} deliveries were dead-lettered")
    return "demo failed: " + "; ".join(reasons)


def _serve_until_interrupted() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
