"""The commands: ``python app.py <command> ...``.

Commands that create secrets print them once, as one JSON line, and take secrets only from the
environment or standard input, never from the command line (it shows in process lists).

A command's result is one JSON line on standard output. A failure, whatever its cause (a usage
error, a bad setting, an unreachable database, an unexpected exception), is one JSON line
``{"error": "..."}`` on standard error and exit status 2, never a traceback; messages never
carry the database password or the secret key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, NoReturn, Sequence

from marshmallow import ValidationError

from gateway.runtime import Runtime
from gateway.settings import Settings, SettingsError

#: The exit status of every failed command.
FAILED = 2


class CommandError(Exception):
    """A command failed in a way the user can fix; printed as one JSON error line."""


class UsageError(CommandError):
    """The command line itself is wrong (argparse's complaint, with the usage line)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class JsonArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage text and exiting,
    so a usage error is one JSON line like every other failure (``--help`` still prints)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", self.format_usage().strip())


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1..65535)") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1..65535)")
    return value


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str, sort_keys=False), flush=True)


def _print_error(obj: dict[str, Any]) -> None:
    text = json.dumps(obj, default=str, sort_keys=False)
    print(redact(text), file=sys.stderr, flush=True)


def _secrets_from_environment() -> list[str]:
    """What must never appear in an error line: the process's configured secrets
    (:func:`gateway.logs.configured_secrets`), longest first."""
    from gateway.logs import configured_secrets

    return configured_secrets()


def redact(text: str) -> str:
    """``text`` with every secret of :func:`_secrets_from_environment` replaced by ``***``."""
    for secret in _secrets_from_environment():
        text = text.replace(secret, "***")
        text = text.replace(json.dumps(secret)[1:-1], "***")  # as escaped inside JSON
    return text


def database_error_message(exc: Exception) -> str:
    """A one-line message for a SQLAlchemy error: the driver's own words where there are
    some ("connection refused", 'database "x" does not exist'), without SQLAlchemy's SQL
    echo and background link."""
    from sqlalchemy.exc import DBAPIError

    detail = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    detail = detail.split("(Background on this error at:")[0]
    return "database error: " + " ".join(detail.split())


def _runtime(migrate: bool | None = None) -> Runtime:
    return Runtime.open(Settings.from_env(), migrate=migrate)


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve the API on waitress (see :mod:`gateway.serving`) until SIGTERM or SIGINT."""
    from gateway import create_app, logs, serving

    rt = _runtime()
    try:
        app = create_app(runtime=rt)
        try:
            server = serving.make_server(app, args.host, args.port, rt.settings)
        except OSError as exc:
            raise CommandError(f"cannot listen on {args.host}:{args.port}: "
                               f"{exc.strerror or exc}") from None
        serving.install_stop_signals(server)
        background = None
        if not args.api_only:
            from gateway.background import Background

            background = Background(rt).start()
        logs.event(logging.getLogger("gateway"), "serve.listening",
                   f"serving on http://{args.host}:{server.port}", host=args.host,
                   port=server.port, api_only=args.api_only)
        print(f"gateway listening on http://{args.host}:{server.port} "
              f"(docs at /docs, health at /healthz)", flush=True)
        try:
            server.serve_until_stopped()
        finally:
            if background is not None:
                background.stop()
    finally:
        rt.close()


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from gateway.store import db

    rt = _runtime(migrate=True)
    _print({"database": "migrated", "revision": db.current_revision(rt.engine)})


def cmd_tenants_create(args: argparse.Namespace) -> None:
    from gateway.store import keys, tenants

    rt = _runtime()
    with rt.engine.begin() as conn:
        tenant = tenants.create_tenant(conn, args.name)
        new = keys.create_key(conn, tenant.id, "admin")
    _print({"tenant_id": tenant.id, "key_id": new.info.id, "api_key": new.api_key,
            "scope": new.info.scope})


def cmd_tenants_settings(args: argparse.Namespace) -> None:
    from gateway import tenant_settings
    from gateway.store import tenants

    changes = tenant_settings.parse_assignments(args.assignments)  # bad words: before the db
    rt = _runtime()
    with rt.engine.begin() as conn:  # both raise UnknownTenant; the update locks (see there)
        if changes:
            result = tenants.update_settings(conn, args.tenant, changes)
        else:
            result = tenants.get_settings(conn, args.tenant)
    _print(result.as_dict())


def cmd_keys_create(args: argparse.Namespace) -> None:
    from gateway.store import keys, tenants

    rt = _runtime()
    with rt.engine.begin() as conn:
        tenants.get_tenant(conn, args.tenant)
        new = keys.create_key(conn, args.tenant, args.scope)
    _print({"tenant_id": args.tenant, "key_id": new.info.id, "api_key": new.api_key,
            "scope": new.info.scope})


def cmd_keys_list(args: argparse.Namespace) -> None:
    from gateway.store import keys, tenants

    rt = _runtime()
    with rt.engine.connect() as conn:
        tenants.get_tenant(conn, args.tenant)
        listed = keys.list_keys(conn, args.tenant)
    _print([{"key_id": k.id, "prefix": f"{keys.KEY_PREFIX}{k.prefix}", "scope": k.scope,
             "created_at": k.created_at, "last_used_at": k.last_used_at,
             "revoked_at": k.revoked_at} for k in listed])


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    from gateway.store import keys

    rt = _runtime()
    with rt.engine.begin() as conn:
        if not keys.revoke_key(conn, args.key_id):
            raise CommandError(f"no live key {args.key_id!r}")
    _print({"key_id": args.key_id, "revoked": True})


def cmd_sandbox(args: argparse.Namespace) -> None:
    from connectors.sandbox_kit import cli as sandbox_cli

    sandbox_cli.run(args.name, args)


def cmd_rescore(args: argparse.Namespace) -> None:
    from gateway import scoring
    from gateway.store import tenants

    rt = _runtime()
    with rt.engine.connect() as conn:
        tenants.get_tenant(conn, args.tenant)
    result = scoring.rescore_tenant(rt.engine, args.tenant)
    _print(result.as_dict())


def build_parser() -> argparse.ArgumentParser:
    parser = JsonArgumentParser(prog="python app.py",
                                description="The retention gateway's commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API (embedded default: SQLite in ./instance)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=port_number, default=8000, help="port, 1..65535")
    serve.add_argument("--api-only", action="store_true",
                       help="serve the API alone, without the delivery worker, hook sender, "
                            "webhook drainer and schedules (run `worker` processes instead)")
    serve.set_defaults(func=cmd_serve)

    dbp = sub.add_parser("db", help="database commands").add_subparsers(dest="db_command",
                                                                         required=True)
    dbp.add_parser("upgrade", help="apply migrations to the configured database").set_defaults(
        func=cmd_db_upgrade)

    tenants = sub.add_parser("tenants", help="tenants").add_subparsers(dest="tenants_command",
                                                                       required=True)
    create = tenants.add_parser("create", help="create a tenant and its first admin key")
    create.add_argument("name")
    create.set_defaults(func=cmd_tenants_create)
    settings = tenants.add_parser("settings", help="show, or change then show, settings")
    settings.add_argument("tenant")
    settings.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    settings.set_defaults(func=cmd_tenants_settings)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command",
                                                                  required=True)
    kc = keys.add_parser("create", help="create a key (shown once)")
    kc.add_argument("tenant")
    kc.add_argument("--scope", choices=["admin", "zapier"], default="admin")
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="list a tenant's keys (never the keys themselves)")
    kl.add_argument("tenant")
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key")
    kr.add_argument("key_id")
    kr.set_defaults(func=cmd_keys_revoke)

    sandbox = sub.add_parser("sandbox", help="run a service's sandbox on 127.0.0.1")
    sandbox.add_argument("name", choices=["rekindle", "rejoiner", "rci", "replenit"])
    from connectors.sandbox_kit import cli as sandbox_cli

    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)

    rescore = sub.add_parser("rescore", help="re-score a tenant's customers now")
    rescore.add_argument("--tenant", required=True)
    rescore.set_defaults(func=cmd_rescore)

    from gateway import connections_cli
    from gateway.demo import command as demo_command
    from gateway.pulls import sync_cli
    from gateway.relay import commands as relay_commands
    from gateway.relay import routes_cli
    from gateway.webhooks import commands as webhook_commands

    for module in (relay_commands, connections_cli, routes_cli, webhook_commands, demo_command,
                   sync_cli):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, :data:`FAILED` (one JSON line on stderr) otherwise."""
    from gateway import logs

    logs.configure()  # plain lines, or JSON with GATEWAY_LOG_JSON=1; secrets masked
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.store.tenants import UnknownTenant

    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UsageError as exc:
        _print_error({"error": str(exc), "usage": exc.usage})
    except ValidationError as exc:
        _print_error({"error": "invalid settings", "errors": exc.messages})
    except (CommandError, SettingsError, UnknownTenant) as exc:
        _print_error({"error": str(exc)})
    except SQLAlchemyError as exc:
        _print_error({"error": database_error_message(exc)})
    except OSError as exc:  # a file or socket the command needed
        where = f" ({exc.filename})" if exc.filename else ""
        _print_error({"error": f"{exc.strerror or exc}{where}"})
    except ValueError as exc:
        _print_error({"error": str(exc)})
    except KeyboardInterrupt:
        _print_error({"error": "interrupted"})
    except Exception as exc:  # the last resort: a bug; its message may hold anything
        _print_error({"error": "the command failed unexpectedly", "type": type(exc).__name__})
    else:
        return 0
    return FAILED
