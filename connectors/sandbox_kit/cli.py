"""``python app.py sandbox NAME ...``: serve one connector's sandbox in the foreground.

The key the sandbox accepts is ``--api-key KEY`` (a sandbox key guards nothing real, so the
command line is fine), or the environment variable named by ``--api-key-env`` (default
``GATEWAY_SANDBOX_KEY``); with neither, a random key is made and printed. The sandbox module
is ``connectors.<name>.sandbox``, which exposes ``create_sandbox(config)`` and ``BASE_PATH``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import secrets

from werkzeug.serving import make_server

from .app import SandboxConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--api-key", default=None, help="the one key the sandbox accepts")
    parser.add_argument("--api-key-env", default="GATEWAY_SANDBOX_KEY",
                        help="or: environment variable holding that key")
    parser.add_argument("--site-id", default=None, help="Rejoiner site id")
    parser.add_argument("--tenant-id", default=None, help="Replenit tenant id")
    parser.add_argument("--seed-customers", type=int, default=0, help="synthetic customers")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="run the service clock this many times faster than wall time")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn rate limits off")
    parser.add_argument("--no-api-plan", action="store_true",
                        help="Rekindle: answer 403 as for a plan without API access")


def config_from_args(args: argparse.Namespace) -> tuple[SandboxConfig, bool]:
    """The config the arguments describe, and whether its key was generated here."""
    key = args.api_key or os.environ.get(args.api_key_env)
    generated = not key
    config = SandboxConfig(
        api_key=key or f"sandbox_{secrets.token_hex(16)}",
        site_id=args.site_id,
        tenant_id=args.tenant_id,
        seed_customers=args.seed_customers,
        rate_scale=args.rate_scale,
        no_api_plan=args.no_api_plan,
        rate_limits=not args.no_rate_limits,
    )
    return config, generated


def run(name: str, args: argparse.Namespace) -> None:
    """Build ``name``'s sandbox from ``args`` and serve it until interrupted."""
    module = importlib.import_module(f"connectors.{name}.sandbox")
    config, generated = config_from_args(args)
    app = module.create_sandbox(config)
    server = make_server(args.host, args.port, app, threaded=True)
    base_path = getattr(module, "BASE_PATH", "")
    print(f"{name} sandbox on http://{args.host}:{server.server_port}{base_path}", flush=True)
    if generated:
        print(f"api key (generated; --api-key chooses one): {config.api_key}",
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
