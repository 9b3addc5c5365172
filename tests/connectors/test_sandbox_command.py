"""``python app.py sandbox NAME ...`` serves the service on 127.0.0.1 and accepts exactly the
credential it was given (and Rejoiner's site id, Replenit's tenant id)."""

from __future__ import annotations

import re
import subprocess
import sys

import requests

from connectors.http import AuthError
from tests.conftest import ROOT
from tests.connectors.conftest import fast_retry

ANNOUNCED = re.compile(r"sandbox on (http://127\.0\.0\.1:\d+)")


def test_the_command_serves_one_credential(case):
    config = case.sandbox_config()
    command = [sys.executable, str(ROOT / "app.py"), "sandbox", case.name, "--port", "0",
               "--api-key", config.api_key, "--seed-customers", "3"]
    if config.site_id:
        command += ["--site-id", config.site_id]
    if config.tenant_id:
        command += ["--tenant-id", config.tenant_id]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        match = ANNOUNCED.search(line)
        assert match, line
        root = match.group(1)
        with case.make_client(root, retry=fast_retry()) as client:
            assert client.check().ok
        with case.make_client(root, api_key="not-the-key", retry=fast_retry()) as wrong:
            try:
                assert not wrong.check().ok
            except AuthError:
                pass
        stats = requests.get(f"{root}/_sandbox/stats", timeout=5).json()
        assert set(stats) >= {"records", "requests"}
        assert any(code in stats["requests"] for code in ("401", "403", "404"))
    finally:
        process.terminate()
        process.wait(timeout=10)
