"""A key revoked with ``python app.py keys revoke`` (another process) while ``python app.py
serve`` runs stops working there within the documented KEY_CACHE_SECONDS; and raw non-ASCII
bytes in ``Authorization`` get a JSON 401 from whatever HTTP server ``serve`` runs."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
import requests

from gateway.runtime import KEY_CACHE_SECONDS
from tests.conftest import ROOT


def _command(python, env, *args) -> dict:
    result = subprocess.run([python, str(ROOT / "app.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def served(python, gateway_env):
    """``python app.py serve`` on 127.0.0.1, up and answering /healthz; stopped afterwards."""
    port = _free_port()
    server = subprocess.Popen([python, str(ROOT / "app.py"), "serve", "--port", str(port)],
                              env=gateway_env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        server.stdout.close()


def test_a_key_revoked_by_the_command_stops_working_in_serve(python, gateway_env, served):
    created = _command(python, gateway_env, "tenants", "create", "Revoked shop")
    me = f"http://127.0.0.1:{served}/api/v1/me"
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    before = requests.get(me, headers=auth, timeout=10)
    assert before.status_code == 200 and before.json()["key_id"] == created["key_id"]

    assert _command(python, gateway_env, "keys", "revoke", created["key_id"])["revoked"] is True
    revoked_at = time.monotonic()
    deadline = revoked_at + KEY_CACHE_SECONDS + 10  # generous: the other core may be busy
    while True:
        response = requests.get(me, headers=auth, timeout=10)
        if response.status_code != 200:
            break
        assert time.monotonic() < deadline, "the revoked key is still accepted"
        time.sleep(0.1)
    assert response.status_code == 401 and response.json()["error"]
    assert created["api_key"] not in response.text


def test_raw_latin1_bytes_in_authorization_are_a_json_401_from_serve(served):
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Basic \xe9\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"401", answer[:300]
    assert json.loads(body)["error"]
