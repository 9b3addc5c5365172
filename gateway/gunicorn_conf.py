"""gunicorn settings for the API: ``gunicorn -c python:gateway.gunicorn_conf app:app``.

Threaded workers (``gthread``), so the requests one worker process serves at the same time run
together and the webhook accept path can commit them in one transaction
(:mod:`gateway.webhooks.commit`); with sync workers a process serves one request at a time and
every post pays a commit of its own. Each setting can be overridden on the command line
(``--workers 4``) or with ``GATEWAY_GUNICORN_WORKERS`` / ``GATEWAY_GUNICORN_THREADS``.
"""

from __future__ import annotations

import os

worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_GUNICORN_WORKERS", "2"))
#: Requests a worker runs at once: enough to share commits under a burst (the posts among them
#: hand their rows to the process's one writer thread); each is a thread of a few hundred kB.
threads = int(os.environ.get("GATEWAY_GUNICORN_THREADS", "16"))
#: Idle keep-alive connections are held by the worker's poller, not by a thread.
keepalive = 5

