"""``python app.py webhooks secret TENANT [--rotate]`` and ``webhooks inbox TENANT [--dead]``.

The CLI registers them with :func:`add_commands`. ``secret`` prints the tenant's current
signing secret (creating one on first use); ``--rotate`` makes a new one and keeps the old one
accepted for a day. Other processes see a rotation within
:data:`gateway.webhooks.secrets.CACHE_SECONDS`.
"""

from __future__ import annotations

import argparse
import json

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store import tenants
from gateway.store.db import write_transaction
from gateway.webhooks import inbox
from gateway.webhooks.secrets import ensure_secret, rotate_secret


def _runtime() -> Runtime:
    return Runtime.open(Settings.from_env())


def _require_tenant(conn, tenant_id: str) -> None:  # noqa: ANN001
    try:
        tenants.get_tenant(conn, tenant_id)
    except tenants.UnknownTenant:
        raise SystemExit(f"no such tenant: {tenant_id}") from None


def cmd_secret(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        with write_transaction(rt.engine) as conn:
            _require_tenant(conn, args.tenant)
            made = (rotate_secret if args.rotate else ensure_secret)(conn, rt.vault, args.tenant)
        print(made.current)
    finally:
        rt.close()


def cmd_inbox(args: argparse.Namespace) -> None:
    rt = _runtime()
    try:
        with rt.engine.connect() as conn:
            _require_tenant(conn, args.tenant)
            entries = inbox.list_entries(conn, args.tenant, state="dead" if args.dead else None,
                                         limit=args.limit)
        for e in entries:
            print(json.dumps({"id": e.id, "webhook_id": e.webhook_id, "topic": e.topic,
                              "format": e.format, "state": e.state,
                              "received_at": e.received_at.isoformat(),
                              "reason": e.reason}, sort_keys=True))
    finally:
        rt.close()


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``webhooks secret`` and ``webhooks inbox`` on ``python app.py``'s subparsers."""
    webhooks = subparsers.add_parser("webhooks", help="inbound webhooks: secrets, the inbox")
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    secret = sub.add_parser("secret", help="print the tenant's signing secret (whsec_...)")
    secret.add_argument("tenant")
    secret.add_argument("--rotate", action="store_true",
                        help="make a new one; the old one is accepted for 24 hours more")
    secret.set_defaults(func=cmd_secret)
    listing = sub.add_parser("inbox", help="the tenant's accepted posts, newest first")
    listing.add_argument("tenant")
    listing.add_argument("--dead", action="store_true", help="only those that failed ingest")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=cmd_inbox)


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway.webhooks.commands webhooks ...`` (until the CLI wires these in)."""
    parser = argparse.ArgumentParser(prog="gateway.webhooks.commands")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
