"""The commands: ``python app.py <command> ...``.

Commands that create secrets print them once, as one JSON line, and take secrets only from the
environment or standard input, never from the command line (it shows in process lists).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from marshmallow import ValidationError

from gateway.runtime import Runtime
from gateway.settings import Settings, SettingsError


class CommandError(Exception):
    """A command failed in a way the user can fix; printed as one JSON error line."""


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str, sort_keys=False))


def _runtime(migrate: bool | None = None) -> Runtime:
    return Runtime.open(Settings.from_env(), migrate=migrate)


def cmd_serve(args: argparse.Namespace) -> None:
    from werkzeug.serving import make_server

    from gateway import create_app

    app = create_app(runtime=_runtime())
    server = make_server(args.host, args.port, app, threaded=True)
    logging.getLogger("gateway").info("serving on http://%s:%s", args.host, server.server_port)
    print(f"gateway listening on http://{args.host}:{server.server_port} "
          f"(docs at /docs, health at /healthz)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


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

    rt = _runtime()
    with rt.engine.begin() as conn:
        tenants.get_tenant(conn, args.tenant)
        if args.assignments:
            result = tenants.update_settings(conn, args.tenant,
                                             tenant_settings.parse_assignments(args.assignments))
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
    parser = argparse.ArgumentParser(prog="python app.py",
                                     description="The retention gateway's commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API (embedded default: SQLite in ./instance)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from gateway.store.tenants import UnknownTenant

    try:
        args.func(args)
    except ValidationError as exc:
        _print({"error": "invalid settings", "errors": exc.messages})
        return 2
    except (CommandError, SettingsError, UnknownTenant, ValueError) as exc:
        _print({"error": str(exc)})
        return 2
    return 0
