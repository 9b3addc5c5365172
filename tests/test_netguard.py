"""gateway.netguard: outbound targets are checked, at connect time, against every address range
that would reach the gateway's own network; no connection is opened to a refused one.

"No connection opened" is observed twice over: a listener on 127.0.0.1 (and one on ::1)
counts the connections it accepts, and a Python audit hook records every ``socket.connect``
the code under test attempts (and stops any to a non-loopback address, so no test sends a
packet off this machine whatever it does).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.http import Decision, decide
from gateway import netguard
from gateway.netguard import TargetRefused, blocked_reason, check_target, guarded_session

# ------------------------------------------------------------------ what connects, and where

_recording = threading.local()


def _audit(event: str, args: tuple) -> None:
    if event != "socket.connect" or getattr(_recording, "connects", None) is None:
        return
    address = args[1]
    host = address[0] if isinstance(address, tuple) else str(address)
    _recording.connects.append((host, address[1] if isinstance(address, tuple) else None))
    if host not in ("127.0.0.1", "::1"):
        raise OSError(f"the test stops a connect to {host}")


sys.addaudithook(_audit)


@contextmanager
def connects() -> Iterator[list[tuple[str, int | None]]]:
    """Every ``socket.connect`` this thread attempts inside the block."""
    _recording.connects = []
    try:
        yield _recording.connects
    finally:
        _recording.connects = None


class Listener:
    """A tiny HTTP server on a loopback address that counts the connections it accepts and
    records each request's Host header (and TLS SNI when it serves TLS)."""

    def __init__(self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None,
                 answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        self.tls, self.answer = tls, answer
        self.on_request = None
        self._stop = threading.Event()
        if tls is not None:
            tls.sni_callback = lambda s, name, ctx: self.sni.append(name)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            try:
                conn.settimeout(5)
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                for line in data.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("host:"):
                        self.hosts.append(line.split(":", 1)[1].strip())
                if self.on_request is not None:
                    self.on_request()
                conn.sendall(self.answer)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture
def listener6() -> Iterator[Listener]:
    server = Listener("::1")
    yield server
    server.stop()


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize("address, words", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "RFC 1918"), ("172.16.5.4", "RFC 1918"), ("192.168.1.1", "RFC 1918"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("64:ff9b::a00:1", "NAT64"), ("64:ff9b::808:808", "NAT64"), ("64:ff9b:1::1", "NAT64"),
    ("fc00::1", "unique local"), ("fd12:3456::1", "unique local"),
    ("0.0.0.0", "this network"), ("0.1.2.3", "this network"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("::ffff:127.0.0.1", "IPv4-mapped"), ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:10.1.2.3", "RFC 1918"), ("2002:7f00:1::", "6to4"),
    ("192.0.2.1", "documentation"), ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
])
def test_every_non_public_range_is_refused_with_its_reason(address, words):
    reason = blocked_reason(address)
    assert reason is not None and words in reason, (address, reason)


def test_nat64_names_the_embedded_address():
    assert "embedding 10.0.0.1" in blocked_reason("64:ff9b::a00:1")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14",
                                     "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "100.128.0.1", "172.32.0.1"])
def test_public_addresses_pass(address):
    assert blocked_reason(address) is None


# ------------------------------------------------------------------ check_target


SSRF_URLS = [
    "https://127.0.0.1/", "https://169.254.169.254/latest/meta-data/", "https://[::1]/",
    "https://10.0.0.1/", "https://100.64.0.1/", "https://localhost/",
    "https://[::ffff:127.0.0.1]/", "https://[64:ff9b::a9fe:a9fe]/", "https://[fd00:ec2::254]/",
    "https://2130706433/", "https://0x7f.1/", "https://0.0.0.0/", "https://[fe80::1]/",
    "https://LocalHost/",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_check_target_refuses_the_ssrf_cases(url):
    with connects() as attempted:
        with pytest.raises(TargetRefused) as refused:
            check_target(url, allow_private=False)
    assert attempted == []
    assert "only public addresses" in refused.value.reason


def test_a_name_that_resolves_to_a_private_address_says_so():
    with pytest.raises(TargetRefused) as refused:
        check_target("https://localhost:8443/x", allow_private=False)
    assert refused.value.reason.startswith("'localhost' resolves to 127.0.0.1")


def test_ip6_localhost_is_refused():
    # ip6-localhost is ::1 where /etc/hosts names it; elsewhere it does not resolve. Either way
    # it is refused, and where it resolves, for the address.
    try:
        resolved = netguard.system_resolver("ip6-localhost", 443)
    except OSError:
        resolved = []
    with pytest.raises(TargetRefused) as refused:
        check_target("https://ip6-localhost/", allow_private=False)
    expected = "loopback" if resolved else "does not resolve"
    assert expected in refused.value.reason


@pytest.mark.parametrize("url, words", [
    ("http://example.com/", "must be https"),
    ("ftp://example.com/", "must be https"),
    ("example.com/path", "must be https"),
    ("https://user:pw@example.com/", "user name or password"),
    ("https:///nohost", "no host"),
    ("https://host.invalid/", "does not resolve"),
    ("https://example.com:99999/", "not valid"),
    ("", "empty"),
])
def test_check_target_refuses_malformed_and_plain_http(url, words):
    with pytest.raises(TargetRefused) as refused:
        check_target(url, allow_private=False)
    assert words in refused.value.reason


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    def resolver(host, port):
        return ["8.8.8.8", "10.0.0.7"]

    with pytest.raises(TargetRefused) as refused:
        check_target("https://mixed.test/", allow_private=False, resolver=resolver)
    assert "10.0.0.7" in refused.value.reason


def test_allowed_private_targets_pass_but_must_still_resolve():
    for url in ("http://127.0.0.1:9/", "https://localhost/", "http://[::1]/",
                "https://10.0.0.1/", "https://169.254.169.254/"):
        check_target(url, allow_private=True)
    with pytest.raises(TargetRefused):
        check_target("http://host.invalid/", allow_private=True)


# ------------------------------------------------------------------ the pinning adapter


@pytest.mark.parametrize("template", [
    "https://127.0.0.1:{port}/", "http://127.0.0.1:{port}/", "https://localhost:{port}/",
    "https://[::ffff:127.0.0.1]:{port}/", "https://2130706433:{port}/",
    "https://169.254.169.254/", "https://10.0.0.1/", "https://100.64.0.1/",
    "https://[64:ff9b::7f00:1]/", "https://[fd00:ec2::254]/",
])
def test_the_adapter_refuses_ssrf_targets_without_connecting(listener, template):
    session = guarded_session(allow_private=False)
    with connects() as attempted:
        with pytest.raises(TargetRefused):
            session.get(template.format(port=listener.port), timeout=5)
    assert attempted == []
    assert listener.accepted == 0


def test_the_adapter_refuses_ipv6_loopback_without_connecting(listener6):
    session = guarded_session(allow_private=False)
    with connects() as attempted:
        with pytest.raises(TargetRefused):
            session.get(f"https://[::1]:{listener6.port}/", timeout=5)
    assert attempted == [] and listener6.accepted == 0


def test_allowed_private_targets_connect(listener, listener6):
    session = guarded_session(allow_private=True)
    assert session.get(f"http://127.0.0.1:{listener.port}/", timeout=5).text == "ok"
    assert session.get(f"http://localhost:{listener.port}/", timeout=5).text == "ok"
    assert session.get(f"http://[::1]:{listener6.port}/", timeout=5).text == "ok"
    assert listener.accepted == 2 and listener6.accepted == 1


def test_the_socket_goes_to_the_checked_address_with_the_name_in_host(listener):
    calls = []

    def resolver(host, port):
        calls.append(host)
        return ["127.0.0.1"]

    session = guarded_session(allow_private=True, resolver=resolver)
    with connects() as attempted:
        answer = session.get(f"http://shop.gateway-test:{listener.port}/x", timeout=5)
    assert answer.text == "ok"
    assert calls == ["shop.gateway-test"]  # resolved once, by the guard, not again
    assert attempted == [("127.0.0.1", listener.port)]
    assert listener.hosts == [f"shop.gateway-test:{listener.port}"]


def test_no_dns_rebinding_window_the_check_and_the_connect_use_one_answer(listener):
    answers = iter([["93.184.215.14"], ["127.0.0.1"], ["127.0.0.1"]])
    calls = []

    def rebinding(host, port):  # public when checked, loopback if asked again
        calls.append(host)
        return next(answers)

    session = guarded_session(allow_private=False, resolver=rebinding)
    with connects() as attempted:
        with pytest.raises(requests.ConnectionError):
            session.get(f"https://rebind.gateway-test:{listener.port}/", timeout=5)
    assert calls == ["rebind.gateway-test"]
    assert attempted == [("93.184.215.14", listener.port)]  # (stopped by the audit hook)
    assert listener.accepted == 0


def test_a_name_resolving_to_loopback_is_refused_at_connect_time(listener):
    session = guarded_session(allow_private=False, resolver=lambda h, p: ["127.0.0.1"])
    with connects() as attempted:
        with pytest.raises(TargetRefused) as refused:
            session.get(f"https://evil.gateway-test:{listener.port}/", timeout=5)
    assert "resolves to 127.0.0.1" in refused.value.reason
    assert attempted == [] and listener.accepted == 0


def test_redirects_are_not_followed(listener):
    listener.answer = (b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\n"
                       b"Content-Length: 0\r\n\r\n")
    session = guarded_session(allow_private=True)
    with connects() as attempted:
        answer = session.get(f"http://127.0.0.1:{listener.port}/", timeout=5)
    assert answer.status_code == 302 and answer.history == []
    assert attempted == [("127.0.0.1", listener.port)]


def test_a_redirect_to_a_private_address_is_checked_like_any_connect(listener):
    """With a session that follows redirects, the guard still checks each hop: once the
    allowance is gone the redirect's target is refused, and never connected to."""
    listener.answer = (b"HTTP/1.1 302 Found\r\nLocation: https://10.0.0.1/secret\r\n"
                       b"Content-Length: 0\r\n\r\n")
    allowed = {"now": True}
    listener.on_request = lambda: allowed.update(now=False)
    session = requests.Session()
    netguard.guard(session, allow_private=lambda: allowed["now"])
    with connects() as attempted:
        with pytest.raises(TargetRefused):
            session.get(f"http://127.0.0.1:{listener.port}/", timeout=5)
    assert attempted == [("127.0.0.1", listener.port)]


def test_the_allowance_is_asked_at_each_request(listener):
    allowed = {"now": True}
    session = guarded_session(allow_private=lambda: allowed["now"])
    assert session.get(f"http://127.0.0.1:{listener.port}/", timeout=5).status_code == 200
    allowed["now"] = False
    with pytest.raises(TargetRefused):
        session.get(f"http://127.0.0.1:{listener.port}/", timeout=5)
    assert listener.accepted == 1


def test_proxies_from_the_environment_are_not_used(listener, monkeypatch):
    # A proxy would resolve the name itself, after the check. (The environment variable is
    # the input here, not a stand-in for anything.)
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    session = requests.Session()
    netguard.guard(session, allow_private=True)
    with connects() as attempted:
        assert session.get(f"http://127.0.0.1:{listener.port}/", timeout=5).text == "ok"
    assert attempted == [("127.0.0.1", listener.port)]


def test_a_refusal_fails_the_connection_in_the_error_table():
    assert decide(TargetRefused("x")) is Decision.FAIL


# ------------------------------------------------------------------ TLS keeps the host name


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_verifies_and_sends_sni_for_the_name_not_the_pinned_address(tmp_path):
    name = "hooks.gateway-test"
    cert, key = _certificate(tmp_path, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Listener(tls=context)
    try:
        session = guarded_session(allow_private=True, resolver=lambda h, p: ["127.0.0.1"])
        answer = session.get(f"https://{name}:{server.port}/", timeout=5, verify=str(cert))
        assert answer.text == "ok"
        assert server.sni == [name] and server.hosts == [f"{name}:{server.port}"]
        with pytest.raises(requests.exceptions.SSLError):  # the cert names the host, not the IP
            session.get(f"https://127.0.0.1:{server.port}/", timeout=5, verify=str(cert))
    finally:
        server.stop()
