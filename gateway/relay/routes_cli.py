"""The routes' commands: ``routes list|enable|disable`` and ``erasures list|done``.

:func:`add_commands` registers them on ``python app.py``'s subparsers; each prints one JSON
document. ``python -m gateway.relay.routes_cli ...`` runs them on their own (a failure is one
JSON line ``{"error": ...}`` on standard error and exit status 2, as ``python app.py`` does).

- ``routes list TENANT``: every route, on or off, what it takes and where it writes.
- ``routes enable TENANT ROUTE`` / ``routes disable TENANT ROUTE``: the route as it is now.
- ``erasures list TENANT [--all]``: the manual erasure items (Rekindle has no delete), open
  ones only unless ``--all``.
- ``erasures done TENANT ID``: an operator erased the customer at Rekindle; the item's
  identity is wiped.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from gateway.relay import erasures, routes_switches
from gateway.tenant_settings import SWITCHABLE_ROUTES


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def _runtime() -> Any:
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    return Runtime.open(Settings.from_env())


def cmd_routes_list(args: argparse.Namespace) -> None:
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        _print(routes_switches.list_routes(conn, args.tenant))


def _switch(args: argparse.Namespace, enabled: bool) -> None:
    runtime = _runtime()
    with runtime.engine.begin() as conn:
        _print(routes_switches.set_route(conn, args.tenant, args.route, enabled))


def cmd_routes_enable(args: argparse.Namespace) -> None:
    _switch(args, True)


def cmd_routes_disable(args: argparse.Namespace) -> None:
    _switch(args, False)


def cmd_erasures_list(args: argparse.Namespace) -> None:
    from gateway.store.tenants import get_tenant

    runtime = _runtime()
    with runtime.engine.connect() as conn:
        get_tenant(conn, args.tenant)
        _print(erasures.list_manual(conn, args.tenant, include_done=args.all,
                                    limit=args.limit))


def cmd_erasures_done(args: argparse.Namespace) -> None:
    runtime = _runtime()
    with runtime.engine.begin() as conn:
        _print(erasures.mark_done(conn, args.tenant, args.id))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``routes`` and ``erasures`` on ``python app.py``'s subparsers."""
    routes = subparsers.add_parser("routes", help="a tenant's relay routes: list, switch")
    sub = routes.add_subparsers(dest="routes_command", required=True)
    listing = sub.add_parser("list", help="every route, on or off, and where it writes")
    listing.add_argument("tenant")
    listing.set_defaults(func=cmd_routes_list)
    for name, func, what in (("enable", cmd_routes_enable, "switch a route on"),
                             ("disable", cmd_routes_disable, "switch a route off")):
        switch = sub.add_parser(name, help=what)
        switch.add_argument("tenant")
        switch.add_argument("route", choices=SWITCHABLE_ROUTES, metavar="ROUTE",
                            help=", ".join(SWITCHABLE_ROUTES))
        switch.set_defaults(func=func)

    erased = subparsers.add_parser("erasures", help="manual erasure items (Rekindle)")
    sub = erased.add_subparsers(dest="erasures_command", required=True)
    listing = sub.add_parser("list", help="open manual erasure items, newest first")
    listing.add_argument("tenant")
    listing.add_argument("--all", action="store_true", help="done ones too")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.set_defaults(func=cmd_erasures_list)
    done = sub.add_parser("done", help="the customer was erased at Rekindle by hand")
    done.add_argument("tenant")
    done.add_argument("id", type=_positive)
    done.set_defaults(func=cmd_erasures_done)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    """These commands on their own (``python -m gateway.relay.routes_cli ...``)."""
    from marshmallow import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.settings import SettingsError
    from gateway.store.tenants import UnknownTenant

    parser = _Parser(prog="python -m gateway.relay.routes_cli")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser))
    try:
        args = parser.parse_args(argv)
        args.func(args)
    except ValidationError as exc:
        _fail({"error": "invalid settings", "errors": exc.messages})
    except (_UsageError, UnknownTenant, routes_switches.UnknownRoute, erasures.UnknownErasure,
            SettingsError, ValueError) as exc:
        _fail({"error": str(exc)})
    except SQLAlchemyError as exc:
        _fail({"error": f"database error: {type(exc).__name__}"})
    else:
        return 0
    return 2


def _fail(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, default=str), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
