"""``python app.py serve`` on waitress: JSON answers, bounded connections, a clean stop.

The server runs as a user would start it, in a new process on 127.0.0.1, with a small idle
timeout and header limit so the limits can be seen in a bounded test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import ROOT, TEST_SECRET_KEY

IDLE_TIMEOUT = 1  # seconds; the server closes an idle connection after this
HEADER_LIMIT = 4096  # bytes of request line and headers
WAIT = 60  # seconds: the bound on waiting for anything the server should do


@dataclass
class Served:
    process: subprocess.Popen
    base: str
    port: int
    stderr: Path

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=WAIT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(database_url: str, instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATABASE_URL=database_url, GATEWAY_SECRET_KEY=TEST_SECRET_KEY,
               GATEWAY_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT),
               GATEWAY_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT),
               GATEWAY_MAX_HEADER_BYTES=str(HEADER_LIMIT), **extra)
    return env


def start_serve(python: str, env: dict[str, str], folder: Path) -> Served:
    """Start ``serve`` and wait (bounded) for the line it prints once it listens."""
    port = _free_port()
    stderr = folder / f"serve-{port}.err"
    with stderr.open("w") as err:
        process = subprocess.Popen([python, str(ROOT / "app.py"), "serve", "--port", str(port)],
                                   env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                   text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    served = Served(process, f"http://127.0.0.1:{port}", port, stderr)
    try:
        line = lines.get(timeout=WAIT)
    except queue.Empty:
        served.stop(signal.SIGKILL)
        raise AssertionError(f"serve did not start: {stderr.read_text()}") from None
    assert line.startswith(f"gateway listening on http://127.0.0.1:{port} "), (
        line, stderr.read_text())
    return served


@pytest.fixture(scope="module")
def served(python, runtime, database_url, tmp_path_factory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    server = start_serve(python, _env(database_url, folder / "instance"), folder)
    yield server
    assert server.stop() == 0


def _connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset after the answer
    counts as closing: the server may reset a connection whose request it did not read)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_serve_answers_health_and_a_json_404(served):
    health = requests.get(f"{served.base}/healthz", timeout=WAIT)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    missing = requests.get(f"{served.base}/no/such/page", timeout=WAIT)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/json")
    assert "error" in missing.json()


def test_an_idle_connection_is_closed_after_the_idle_timeout(served):
    with _connect(served) as sock:  # never sends a byte
        assert sock.recv(1) == b""


def test_a_connection_that_stalls_inside_its_headers_is_closed(served):
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert _read_until_closed(sock) == b""


def test_a_kept_alive_connection_is_closed_once_idle(served):
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = _read_until_closed(sock)  # answered, kept open, then closed when idle
    status, body = _status_and_body(answer)
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_oversized_headers_get_a_json_431(served):
    with _connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                     + b"a" * (2 * HEADER_LIMIT) + b"\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 431
    assert "max_header" in json.loads(body)["error"]


def test_an_over_long_url_gets_a_json_431(served):
    with _connect(served) as sock:
        sock.sendall(b"GET /" + b"a" * (2 * HEADER_LIMIT) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 431 and json.loads(body)["error"]


def test_a_body_far_over_the_limit_is_refused_with_json_before_it_is_sent(served):
    with _connect(served) as sock:
        sock.sendall(b"PATCH /api/v1/settings HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 413 and json.loads(body)["error"]


def test_a_malformed_request_gets_a_json_400(served):
    with _connect(served) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(sock))
    assert status == 400 and json.loads(body)["error"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_cleanly(python, runtime, database_url, tmp_path, signum):
    server = start_serve(python, _env(database_url, tmp_path / "instance"), tmp_path)
    try:
        with _connect(server) as idle:  # an open keep-alive connection must not hold it up
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += idle.recv(4096) or b"(closed)\r\n\r\n"
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert server.stop(signum) == 0
    finally:
        server.stop(signal.SIGKILL)
    assert "Traceback" not in server.stderr.read_text()
    with pytest.raises(requests.ConnectionError):  # the port is released
        requests.get(f"{server.base}/healthz", timeout=WAIT)


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_bad_port_is_one_json_error_line(python, gateway_env, port):
    result = subprocess.run([python, str(ROOT / "app.py"), "serve", "--port", port],
                            env=gateway_env, cwd=ROOT, capture_output=True, text=True,
                            timeout=WAIT)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--port" in json.loads(lines[0])["error"]


def test_a_port_in_use_is_one_json_error_line(python, served, gateway_env):
    result = subprocess.run([python, str(ROOT / "app.py"), "serve", "--port", str(served.port)],
                            env=gateway_env, cwd=ROOT, capture_output=True, text=True,
                            timeout=WAIT)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])["error"]
    assert f"cannot listen on 127.0.0.1:{served.port}" in error
