"""``python app.py sync ROUTE --tenant T [--dry-run] [--timeout S]``: run one pull now.

The pull runs and what it queues is delivered (:func:`gateway.pulls.sync.run_sync`), with a
progress bar on a terminal and plain lines otherwise (on standard error). Then standard output
gets a summary table (per destination: queued, unchanged, sent, failed, dead) and, last, one
JSON line with the six counts (``read``, ``changed``, ``sent``, ``failed``, ``dead``,
``skipped``) and the rest of the summary. ``--dry-run`` also lists, per destination, one
example payload of each kind (personal values masked).

Exit status: 0; 1 when a delivery ended dead (or, with ``--timeout``, some were not settled
in time); 2 with one JSON error line for an unknown route or tenant or a pull that cannot run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from gateway.pulls import progress as progress_module
from gateway.pulls.sync import COUNTS, SyncSummary, UnknownRoute, UnknownTenant, run_sync

#: Exit status when something ended dead or unsettled.
DEAD = 1
COLUMNS = ("queued", "unchanged", "sent", "failed", "dead")


def _table(summary: SyncSummary) -> list[str]:
    label = "would send" if summary.dry_run else "queued"
    heads = ["destination", label, "unchanged"] + ([] if summary.dry_run
                                                    else ["sent", "failed", "dead"])
    names = COLUMNS if not summary.dry_run else COLUMNS[:2]
    rows = [[connector, *(str(per.get(n, 0)) for n in names)]
            for connector, per in sorted(summary.per_destination.items())]
    if not rows:
        rows = [["(none)", *("0" for _ in names)]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    counts = ", ".join(f"{name} {summary.counts.get(name, 0)}" for name in COUNTS)
    out.append(f"{summary.route} for tenant {summary.tenant_id}: {counts} "
               f"({summary.duration_seconds:.1f}s)")
    return out


def print_summary(summary: SyncSummary, stream: TextIO | None = None) -> None:
    """The table, a dry run's examples, and the JSON line (last)."""
    stream = stream or sys.stdout
    for line in _table(summary):
        print(line, file=stream)
    if summary.dry_run:
        for kind, example in sorted(summary.examples.items()):
            print(f"example {kind}: {json.dumps(example, default=str, sort_keys=True)}",
                  file=stream)
    print(json.dumps(summary.as_dict(), default=str, sort_keys=False), file=stream, flush=True)


def cmd_sync(args: argparse.Namespace) -> None:
    from gateway.cli import CommandError
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    runtime = Runtime.open(Settings.from_env())
    bar = progress_module.for_stream(f"sync {args.route}")
    try:
        summary = run_sync(runtime, args.tenant, args.route, dry_run=args.dry_run,
                           progress=bar, timeout=args.timeout)
    except (UnknownRoute, UnknownTenant) as exc:
        raise CommandError(str(exc.args[0]) if exc.args else str(exc)) from None
    except RuntimeError as exc:  # a pull that cannot run (no usable connection)
        raise CommandError(str(exc)) from None
    finally:
        runtime.close()
    bar.finish()
    print_summary(summary)
    if summary.dead or not summary.settled:
        raise SystemExit(DEAD)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_commands(subparsers: Any) -> None:
    """Register ``sync`` on ``python app.py``'s subparsers."""
    sync = subparsers.add_parser(
        "sync", help="run a pull now (rci-customers, rekindle-poll) and deliver what it queued")
    sync.add_argument("route", help="the pull's route, e.g. rci-customers")
    sync.add_argument("--tenant", required=True, help="the tenant's id")
    sync.add_argument("--dry-run", action="store_true",
                      help="read and diff, but store and send nothing; say what would go")
    sync.add_argument("--timeout", type=_seconds, default=None,
                      help="stop waiting for the deliveries after this many seconds")
    sync.set_defaults(func=cmd_sync)
