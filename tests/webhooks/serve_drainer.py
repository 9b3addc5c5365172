"""A gateway process for the crash tests: the API on waitress (127.0.0.1, an ephemeral port,
printed on the first line of stdout) and the webhook drainer on a thread, as the serving
process runs them. Settings from the environment (``GATEWAY_*``)."""

from __future__ import annotations

import sys

from waitress.server import create_server

from gateway import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.webhooks.drain import start_drainer


def main() -> None:
    rt = Runtime.open(Settings.from_env())
    app = create_app(runtime=rt)
    start_drainer(rt)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    print(server.effective_port, flush=True)
    sys.stdout.flush()
    server.run()


if __name__ == "__main__":
    main()
