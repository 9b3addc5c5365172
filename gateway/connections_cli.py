"""``python app.py connections ...``: a tenant's connections to the four services.

::

    connections set TENANT NAME [--base-url URL] [--site-id ID] [--tenant-id GUID]
                                [--currency CUR]
    connections list TENANT
    connections check TENANT NAME        exit 0 when the credential works, 1 (with why) if not
    connections delete TENANT NAME
    connections reencrypt                every credential, with GATEWAY_SECRET_KEY's newest key

``NAME`` is ``rekindle``, ``rejoiner``, ``rci`` or ``replenit``. The credential is never an
argument (arguments show in process lists): ``set`` reads it from the environment variable
``GATEWAY_CONNECTION_KEY`` or, when that is unset or empty, from standard input (a prompt
that does not echo when standard input is a terminal). It is the plain key for a connector
with one credential field (all four today: ``api_key``, RCI's ``api_token``), or a JSON object
of the connector's credential fields (``{"api_key": "..."}``), which any connector accepts.
``--base-url`` changes only scheme, host and port: see :mod:`gateway.connections`.

Each command prints one JSON line; no output ever holds a credential (``credential_hints``
shows at most the last four characters of a long one). Failures are the commands' usual
``{"error": ...}`` and exit status 2; ``check`` prints its answer and exits 1 when the
credential does not work. :func:`add_commands` registers the commands on ``python app.py``'s
parser; ``python -m gateway.connections_cli connections ...`` runs them on their own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from typing import Any, Sequence, TextIO

from gateway import cli as base_cli  # its names are used at call time: no import cycle
from gateway import connections as service
from gateway.runtime import Runtime
from gateway.settings import Settings, SettingsError

#: The environment variable ``connections set`` reads the credential from.
CREDENTIAL_VARIABLE = "GATEWAY_CONNECTION_KEY"
#: The exit status of a ``check`` whose credential does not work.
CHECK_FAILED = 1
MAX_STDIN_CHARS = 65_536


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def read_credential_text(connector: str, *, environ: Any = None,
                         stdin: TextIO | None = None) -> str:
    """The credential as given: ``GATEWAY_CONNECTION_KEY``, else standard input."""
    environ = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    text = environ.get(CREDENTIAL_VARIABLE) or ""
    if not text.strip():
        if stdin is None or stdin.closed:
            text = ""
        elif stdin.isatty():
            text = getpass.getpass(f"{connector} credential (not echoed): ")
        else:
            text = stdin.read(MAX_STDIN_CHARS + 1)
            if len(text) > MAX_STDIN_CHARS:
                raise base_cli.CommandError(f"the credential on standard input is longer "
                                            f"than {MAX_STDIN_CHARS} characters")
    if not text.strip():
        raise base_cli.CommandError(f"no credential: set {CREDENTIAL_VARIABLE} or give it on "
                                    "standard input (never as an argument)")
    return text


def _runtime() -> Runtime:
    return Runtime.open(Settings.from_env())


def _invalid(exc: service.InvalidConnection) -> Exception:
    return base_cli.CommandError(f"invalid connection: {exc}")


def cmd_set(args: argparse.Namespace) -> None:
    options = {"site_id": args.site_id, "tenant_id": args.tenant_id, "currency": args.currency}
    try:
        # Everything that needs no database first, so a typo fails before the credential.
        service.base_url_for(args.name, args.base_url,
                             service.validate_options(args.name, options))
        credentials = service.parse_credential_text(args.name, read_credential_text(args.name))
    except service.InvalidConnection as exc:
        raise _invalid(exc) from None
    rt = _runtime()
    try:
        summary = service.set_connection(rt.engine, rt.vault, args.tenant, args.name,
                                         credentials=credentials, base_url=args.base_url,
                                         options=options, set_via="cli")
    except service.InvalidConnection as exc:
        raise _invalid(exc) from None
    finally:
        rt.close()
    _print({"tenant_id": args.tenant, **summary.as_dict()})


def cmd_list(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        listed = service.list_summaries(rt.engine, rt.vault, args.tenant)
    finally:
        rt.close()
    _print([{"tenant_id": args.tenant, **s.as_dict()} for s in listed])


def cmd_check(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        result = service.check_connection(rt, args.tenant, args.name)
    except service.UnknownConnection as exc:
        raise base_cli.CommandError(str(exc)) from None
    finally:
        rt.close()
    _print({"tenant_id": args.tenant, "connector": args.name, "ok": result.ok,
            "detail": result.detail})
    if not result.ok:
        raise SystemExit(CHECK_FAILED)


def cmd_delete(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        service.delete_connection(rt.engine, args.tenant, args.name)
    except service.UnknownConnection as exc:
        raise base_cli.CommandError(str(exc)) from None
    finally:
        rt.close()
    _print({"tenant_id": args.tenant, "connector": args.name, "deleted": True})


def cmd_reencrypt(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        count = service.reencrypt_all(rt.engine, rt.vault)
    finally:
        rt.close()
    _print({"reencrypted": count})


def add_commands(subparsers: Any) -> None:
    """Register ``connections set|list|check|delete|reencrypt`` on ``subparsers`` (the
    ``add_subparsers()`` of ``python app.py``'s parser)."""
    names = list(service.CONNECTORS)
    group = subparsers.add_parser(
        "connections", help="a tenant's connections to the services (credentials encrypted)",
    ).add_subparsers(dest="connections_command", required=True)

    put = group.add_parser(
        "set", help=f"create or replace a connection; the credential from "
                    f"{CREDENTIAL_VARIABLE} or standard input, never an argument")
    put.add_argument("tenant")
    put.add_argument("name", choices=names)
    put.add_argument("--base-url", help="another scheme://host:port (a sandbox); the "
                                        "documented path is kept")
    put.add_argument("--site-id", help="Rejoiner: the site id (required)")
    put.add_argument("--tenant-id", help="Replenit: the tenant id, a GUID (required)")
    put.add_argument("--currency", help="Rekindle, Rejoiner: the business currency (ISO "
                                        "4217; default: the tenant's base currency)")
    put.set_defaults(func=cmd_set)

    listed = group.add_parser("list", help="a tenant's connections (never the credentials)")
    listed.add_argument("tenant")
    listed.set_defaults(func=cmd_list)

    check = group.add_parser("check", help="does the credential work? exit 0 yes, 1 no")
    check.add_argument("tenant")
    check.add_argument("name", choices=names)
    check.set_defaults(func=cmd_check)

    remove = group.add_parser("delete", help="delete a connection")
    remove.add_argument("tenant")
    remove.add_argument("name", choices=names)
    remove.set_defaults(func=cmd_delete)

    group.add_parser(
        "reencrypt", help="re-encrypt every stored credential with the newest key of "
                          "GATEWAY_SECRET_KEY (then an older key can be retired)",
    ).set_defaults(func=cmd_reencrypt)


def build_parser() -> argparse.ArgumentParser:
    """A parser holding only these commands (for ``python -m gateway.connections_cli``)."""
    parser = base_cli.JsonArgumentParser(prog="python -m gateway.connections_cli")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _fail(obj: dict[str, Any]) -> int:
    print(base_cli.redact(json.dumps(obj, default=str)), file=sys.stderr, flush=True)
    return base_cli.FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run one of these commands on its own, failing as ``python app.py`` does (one JSON
    line on standard error, exit 2); ``python app.py`` itself uses :func:`add_commands`."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.store.tenants import UnknownTenant

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except base_cli.UsageError as exc:
        return _fail({"error": str(exc), "usage": exc.usage})
    except (base_cli.CommandError, SettingsError, UnknownTenant) as exc:
        return _fail({"error": str(exc)})
    except SQLAlchemyError as exc:
        return _fail({"error": base_cli.database_error_message(exc)})
    except ValueError as exc:
        return _fail({"error": str(exc)})
    except KeyboardInterrupt:
        return _fail({"error": "interrupted"})
    except Exception as exc:  # a bug: its message may hold anything
        return _fail({"error": "the command failed unexpectedly", "type": type(exc).__name__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
