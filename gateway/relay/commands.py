"""The delivery engine's commands: ``worker``, ``deliveries list|replay``, ``runs``.

:func:`add_commands` registers them on ``python app.py``'s subparsers. They need only a
:class:`~gateway.runtime.Runtime` (no Flask app). Operator commands read every tenant's rows
unless ``--tenant`` narrows them. Output is JSON, one document per command.

``python -m gateway.relay.commands worker`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any, Sequence

from gateway.relay import admin, runs
from gateway.relay.scope import ALL_TENANTS, TenantScope
from gateway.runtime import Runtime
from gateway.settings import Settings, SettingsError

log = logging.getLogger("gateway.relay")


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _runtime() -> Runtime:
    return Runtime.open(Settings.from_env())


def _scope(args: argparse.Namespace) -> TenantScope:
    return args.tenant or ALL_TENANTS


def cmd_worker(args: argparse.Namespace) -> None:
    """Run this process's background loops (:class:`gateway.background.Background`: the
    delivery worker, the hook sender, the webhook drainer, the schedule ticker) without the API
    until SIGTERM or SIGINT; then claim nothing more, finish the sends in flight and exit."""
    from gateway.background import Background

    runtime = _runtime()
    background = Background(runtime, worker_threads=args.threads)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker: %s received, finishing the sends in flight",
                 signal.Signals(signum).name)
        background.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        background.start()
        print(f"delivery worker {background.worker.name} ready", flush=True)
        background.wait()
    finally:
        background.stop()
        runtime.close()


def cmd_deliveries_list(args: argparse.Namespace) -> None:
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        _print(admin.list_deliveries(conn, _scope(args), status=args.status, limit=args.limit,
                                     before=args.before))


def cmd_deliveries_replay(args: argparse.Namespace) -> None:
    if (args.id is None) == (not args.all_dead):
        raise ValueError("give a delivery id or --all-dead (not both)")
    runtime = _runtime()
    with runtime.engine.begin() as conn:
        if args.all_dead:
            _print({"replayed": admin.replay_dead(conn, _scope(args))})
        else:
            _print({"replayed": 1, "delivery": admin.replay(conn, _scope(args), args.id)})


def cmd_runs(args: argparse.Namespace) -> None:
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        _print(runs.list_runs(conn, _scope(args), route=args.route, limit=args.limit,
                              before=args.before))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``worker``, ``deliveries`` and ``runs`` on ``python app.py``'s subparsers."""
    worker = subparsers.add_parser(
        "worker", help="run the delivery loop (no API); stops cleanly on SIGTERM")
    worker.add_argument("--threads", type=_positive, default=None,
                        help="batches sent at once (default GATEWAY_WORKER_THREADS)")
    worker.set_defaults(func=cmd_worker)

    deliveries = subparsers.add_parser("deliveries", help="the outbox: list, replay")
    sub = deliveries.add_subparsers(dest="deliveries_command", required=True)
    listing = sub.add_parser("list", help="deliveries, newest first")
    listing.add_argument("--status", choices=admin.STATUSES)
    listing.add_argument("--tenant", help="one tenant's only")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--before", type=int, help="page back: ids below this one")
    listing.set_defaults(func=cmd_deliveries_list)
    replay = sub.add_parser("replay", help="put dead deliveries back in the queue")
    replay.add_argument("id", nargs="?", type=int, help="the delivery to replay")
    replay.add_argument("--all-dead", action="store_true", help="every dead delivery")
    replay.add_argument("--tenant", help="one tenant's only")
    replay.set_defaults(func=cmd_deliveries_replay)

    runs_parser = subparsers.add_parser("runs", help="drains and other runs, newest first")
    runs_parser.add_argument("--tenant", help="one tenant's only")
    runs_parser.add_argument("--route", help="e.g. drain, rci-customers")
    runs_parser.add_argument("--limit", type=_positive, default=50)
    runs_parser.add_argument("--before", type=int, help="page back: ids below this one")
    runs_parser.set_defaults(func=cmd_runs)


def main(argv: Sequence[str] | None = None) -> int:
    """These commands on their own (``python -m gateway.relay.commands ...``)."""
    from gateway import logs

    logs.configure()
    parser = argparse.ArgumentParser(prog="python -m gateway.relay.commands")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (admin.NotReplayable, admin.UnknownDelivery, SettingsError, ValueError) as exc:
        _print({"error": str(exc)})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
