"""Whatever arrives in ``Authorization`` is a JSON 401, never a 5xx or a logged traceback:
through the Flask test client (a hypothesis fuzz and the known bad cases) and as raw bytes over
a real socket to a real server."""

from __future__ import annotations

import base64
import itertools
import logging
import socket
import threading

import pytest
import waitress
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import create_app
from gateway.runtime import Runtime

_addresses = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 255), repeat=3))


def _fresh_address() -> str:
    """A client address of its own per request, so the failed-auth throttle (tested in
    test_auth_throttle.py) never turns these 401s into 429s."""
    return next(_addresses)


@pytest.fixture()
def isolated_app(runtime, settings):
    """An app on its own Runtime: its own limiter and key cache, the run's database."""
    rt = Runtime.open(settings)
    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    yield app
    rt.close()


def _latin1(raw: bytes) -> str:
    """Bytes as a WSGI server hands them to the app (ISO-8859-1); CR and LF cannot be in a
    header value at all."""
    return raw.replace(b"\r", b"").replace(b"\n", b"").decode("latin-1")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


authorization_values = st.one_of(
    st.binary(max_size=300).map(_latin1),
    st.binary(max_size=300).map(lambda b: "Basic " + _latin1(b)),
    st.binary(max_size=300).map(lambda b: "Basic " + _b64(b)),
    st.binary(max_size=100).map(lambda b: "Basic " + _b64(b":" + b)),  # empty username
    st.binary(max_size=100).map(lambda b: "Bearer " + _latin1(b)),
    st.tuples(st.binary(min_size=8, max_size=8), st.binary(max_size=60)).map(
        lambda p: "Bearer gk_live_" + _latin1(p[0]) + "_" + _latin1(p[1])),
    st.tuples(st.text("0123456789abcdef", min_size=8, max_size=8),
              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
                      min_size=16, max_size=64)).map(
        lambda p: f"Bearer gk_live_{p[0]}_{p[1]}"),  # well formed: reaches the database
    st.tuples(st.sampled_from(["Basic ", "Bearer ", "basic ", ""]),
              st.integers(min_value=1_000, max_value=20_000)).map(lambda p: p[0] + "A" * p[1]),
)


def _assert_clean_401(response) -> None:
    assert response.status_code == 401, (response.status_code, response.get_data()[:200])
    assert response.is_json and response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _assert_no_traceback_logged(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=authorization_values)
@example(value="Basic \xe9")
@example(value="Basic " + _b64(b"\xff\xfe\xfd"))
@example(value="Bearer gk_live_\x00\x00\x00\x00\x00\x00\x00\x00_" + "a" * 32)
def test_fuzzed_authorization_is_a_json_401(isolated_app, caplog, value):
    caplog.set_level(logging.INFO)
    response = isolated_app.test_client().get(
        "/api/v1/me", headers={"Authorization": value},
        environ_base={"REMOTE_ADDR": _fresh_address()})
    _assert_clean_401(response)
    _assert_no_traceback_logged(caplog)


@pytest.mark.parametrize("value", [
    "Basic \xe9",  # a raw latin-1 byte: was a 500 with a traceback
    "Basic \xff\xfe",
    "Basic " + _b64(b"\xe9\xe9:pw"),  # base64 of something that is not UTF-8
    "Basic " + _b64(b":password"),  # no username
    "Basic " + _b64(b"   :"),
    "Basic " + "QUFB" * 5_000,  # huge
    "Bearer " + "x" * 50_000,
    "Bearer gk_live_\x00\x00\x00\x00\x00\x00\x00\x00_" + "a" * 32,  # NUL: PostgreSQL refuses it
    "Bearer gk_live_\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9_" + "a" * 32,
    "Bearer gk_live_ABCDEF12_" + "a" * 32,  # not the lowercase hex a prefix is
    "Basic",
    "Basic    ",
    "\xe9\xe9\xe9",
])
def test_known_bad_authorization_values_are_a_json_401(isolated_app, caplog, value):
    caplog.set_level(logging.INFO)
    response = isolated_app.test_client().get(
        "/api/v1/me", headers={"Authorization": value},
        environ_base={"REMOTE_ADDR": _fresh_address()})
    _assert_clean_401(response)
    _assert_no_traceback_logged(caplog)


def _raw_request(port: int, header_value: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                     + header_value + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.fixture()
def served(isolated_app):
    """``isolated_app`` on waitress, on 127.0.0.1, stopped after the test."""
    server = waitress.create_server(isolated_app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server.effective_port
    server.close()
    thread.join(timeout=10)


@pytest.mark.parametrize("raw", [
    b"Basic \xe9",
    b"Basic \xff\xfe\x80",
    b"Basic " + base64.b64encode(b"\xc3\x28:x"),
    b"Bearer gk_live_\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9_" + b"a" * 32,
    b"Bearer \x80\x81\x82",
])
def test_raw_bytes_over_a_real_socket_are_a_json_401(served, caplog, raw):
    caplog.set_level(logging.INFO)
    status, rest = _raw_request(served, raw)
    assert status == 401, rest
    head, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower() and b'"error"' in body
    assert b"Traceback" not in body
    _assert_no_traceback_logged(caplog)
