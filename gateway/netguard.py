"""Outbound targets that cannot be pointed at the gateway's own network (SSRF).

Two parts:

* :func:`check_target` (and :func:`checked_addresses`): a URL's scheme, and every address its
  host resolves to, checked *now*. Refused (:class:`TargetRefused`, with the reason): a scheme
  other than https (plain http too, unless private targets are allowed), a URL with a user or
  password in it, a host that does not resolve, and any resolved address that is not public:
  loopback, RFC 1918, link-local (169.254/16, fe80::/10), carrier-grade NAT 100.64/10, NAT64
  (64:ff9b::/96 and the local-use 64:ff9b:1::/48, whatever IPv4 address they embed), unique
  local fc00::/7, the cloud metadata addresses (169.254.169.254, fd00:ec2::254), 0.0.0.0/8,
  multicast, reserved and documentation ranges, and an IPv4-mapped or 6to4 IPv6 address whose
  embedded IPv4 address is any of these. When private targets are allowed
  (``GATEWAY_ALLOW_PRIVATE_TARGETS=1`` or the tenant's ``allow_private_targets``: tests and
  local development), only the URL's shape and the host's resolution are checked.

* :class:`PinnedAdapter`, a ``requests`` transport adapter that makes the same check *at connect
  time*, on every new connection: the host is resolved once, every address checked, and the
  socket connected to a checked address; nothing resolves the name again afterwards, so there
  is no window in which a DNS answer can change between the check and the connect (DNS
  rebinding). The host name still goes in the ``Host`` header and in TLS (SNI and certificate
  verification), because urllib3's pool keeps the name; only the socket's address is pinned.
  The adapter uses no proxy (a proxy would resolve the name itself). :func:`guarded_session`
  is a session with the adapter mounted that never follows a redirect (a 3xx is returned as
  is); each connection a redirect-following caller opened would be checked anyway.

A refusal raises :class:`TargetRefused` before any socket is opened to the refused address.
It is a ``ValueError`` (not a ``requests`` error): it passes through ``requests`` unchanged,
and the connectors' error table (``connectors.http.decide``) fails the connection on it.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolver(host, port) -> [address, ...]``: the addresses a host name resolves to, as
#: strings, in the order to try them; raises ``socket.gaierror`` (or ``OSError``) when the
#: name does not resolve. The default asks the system (:func:`system_resolver`).
Resolver = Callable[[str, int], list[str]]


class TargetRefused(ValueError):
    """An outbound target the gateway will not connect to; ``reason`` says why (it names the
    host and the address, never anything from the URL's path or query)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _networks(label: str, *cidrs: str) -> list[tuple[ipaddress._BaseNetwork, str]]:
    return [(ipaddress.ip_network(cidr), label) for cidr in cidrs]


NAT64 = "a NAT64 address"

#: Named non-public ranges, the most specific first (the first match gives the reason).
BLOCKED_NETWORKS: tuple[tuple[ipaddress._BaseNetwork, str], ...] = tuple(
    _networks("a cloud metadata address", "169.254.169.254/32", "fd00:ec2::254/128")
    + _networks("in the unspecified / 'this network' range", "0.0.0.0/8", "::/128")
    + _networks("a loopback address", "127.0.0.0/8", "::1/128")
    + _networks("a private (RFC 1918) address", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    + _networks("in carrier-grade NAT space (100.64.0.0/10)", "100.64.0.0/10")
    + _networks("a link-local address", "169.254.0.0/16", "fe80::/10")
    + _networks(NAT64, "64:ff9b::/96", "64:ff9b:1::/48")
    + _networks("a unique local address (fc00::/7)", "fc00::/7")
    + _networks("a site-local address (deprecated)", "fec0::/10")
    + _networks("a multicast address", "224.0.0.0/4", "ff00::/8")
    + _networks("in a documentation range", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                "2001:db8::/32")
    + _networks("in a benchmarking range", "198.18.0.0/15")
    + _networks("in the IETF protocol assignments range", "192.0.0.0/24")
    + _networks("in a reserved range", "240.0.0.0/4", "100::/64")
)


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public address a target may have, or None when it is."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:  # fe80::1%eth0: an interface-scoped address is local by nature
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        mapped = ip.ipv4_mapped
        if mapped is not None:
            inner = blocked_reason(mapped)
            return f"an IPv4-mapped address of {mapped}, which is {inner}" if inner else None
        for network, label in BLOCKED_NETWORKS:
            if ip in network:
                if label == NAT64:
                    embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                    return f"a NAT64 address ({network}, embedding {embedded})"
                return label
        if ip.sixtofour is not None:
            inner = blocked_reason(ip.sixtofour)
            if inner:
                return f"a 6to4 address embedding {ip.sixtofour}, which is {inner}"
    else:
        for network, label in BLOCKED_NETWORKS:
            if network.version == 4 and ip in network:
                return label
    if not ip.is_global:
        return "not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """The system's addresses for ``host`` (TCP), each once, in the system's order."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_checked(host: str, port: int, *, allow_private: bool,
                    resolver: Resolver | None = None) -> list[str]:
    """``host``'s addresses, every one of them checked (unless private targets are allowed);
    :class:`TargetRefused` when the host does not resolve or any address is not public."""
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"the host {host!r} does not resolve "
                                f"({getattr(exc, 'strerror', None) or type(exc).__name__})"
                                ) from None
        if not addresses:
            raise TargetRefused(f"the host {host!r} does not resolve (no address)")
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason:
                shown = (f"{host} is" if literal is not None
                         else f"{host!r} resolves to {address}, which is")
                raise TargetRefused(f"{shown} {reason}: only public addresses are allowed "
                                    "where private targets are not")
    return addresses


def _url_parts(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a target URL whose shape is acceptable; else TargetRefused."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("the URL is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL is not valid ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise TargetRefused(f"the URL must be https (got {scheme or 'no scheme'!r})")
    if scheme == "http" and not allow_private:
        raise TargetRefused("the URL must be https; plain http is accepted only where private "
                            "targets are allowed")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise TargetRefused("the URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def checked_addresses(url: str, *, allow_private: bool,
                      resolver: Resolver | None = None) -> list[str]:
    """The addresses ``url``'s host resolves to now, after :func:`check_target`'s checks."""
    _, host, port = _url_parts(url, allow_private=allow_private)
    return resolve_checked(host, port, allow_private=allow_private, resolver=resolver)


def check_target(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise :class:`TargetRefused` (with the reason) unless ``url`` is an acceptable target
    now: https (or http where private targets are allowed), no user or password, a host that
    resolves, and, unless private targets are allowed, only public addresses. A check at
    connect time (:class:`PinnedAdapter`) is still needed: DNS may answer differently later."""
    checked_addresses(url, allow_private=allow_private, resolver=resolver)


# --------------------------------------------------------------------- the pinning transport


class _Guard:
    """What a guarded connection checks against: whether private targets are allowed (asked
    at each connect, so a changed setting applies to the next connection) and the resolver."""

    def __init__(self, allow_private: bool | Callable[[], bool],
                 resolver: Resolver | None) -> None:
        self._allow = allow_private if callable(allow_private) else (lambda: allow_private)
        self.resolver = resolver or system_resolver

    def allowed(self) -> bool:
        return bool(self._allow())


class _PinnedConnectionMixin:
    """A urllib3 connection whose socket goes to an address checked when it is opened."""

    guard: _Guard

    def _new_conn(self) -> socket.socket:  # urllib3's hook for opening the socket
        conn: Any = self
        host = conn._dns_host.strip("[]")
        addresses = resolve_checked(host, conn.port, allow_private=self.guard.allowed(),
                                    resolver=self.guard.resolver)
        error: OSError | None = None
        for address in addresses:  # each one checked; the name is not resolved again
            try:
                sock = urllib3_connection.create_connection(
                    (address, conn.port), conn.timeout, source_address=conn.source_address,
                    socket_options=conn.socket_options)
            except socket.timeout as exc:
                raise ConnectTimeoutError(
                    conn, f"Connection to {host} ({address}) timed out. "
                          f"(connect timeout={conn.timeout})") from exc
            except socket.gaierror as exc:  # not for a numeric address, but be exact
                raise NameResolutionError(host, conn, exc) from exc
            except OSError as exc:
                error = exc
                continue
            sys.audit("http.client.connect", conn, host, conn.port)
            return sock
        raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


def _pool_classes(guard: _Guard) -> dict[str, type]:
    http_conn = type("PinnedHTTPConnection", (_PinnedConnectionMixin, HTTPConnection),
                     {"guard": guard})
    https_conn = type("PinnedHTTPSConnection", (_PinnedConnectionMixin, HTTPSConnection),
                      {"guard": guard})
    return {
        "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,),
                     {"ConnectionCls": http_conn}),
        "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,),
                      {"ConnectionCls": https_conn}),
    }


class PinnedAdapter(HTTPAdapter):
    """A transport adapter that checks every target at connect time and pins the socket to
    the address it checked (see the module docstring).

    ``allow_private`` is a bool or a callable asked at each request and each new connection
    (e.g. ``lambda: settings.allow_private_targets or tenant.allow_private_targets``);
    ``resolver`` is injectable (tests), the system's by default. Proxies are never used.
    Plain http is refused unless private targets are allowed, before anything is opened.
    """

    def __init__(self, *, allow_private: bool | Callable[[], bool] = False,
                 resolver: Resolver | None = None, **kwargs: Any) -> None:
        self.guard = _Guard(allow_private, resolver)
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.guard)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise TargetRefused("a guarded connection does not go through a proxy")

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: bool | str = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        _url_parts(request.url or "", allow_private=self.guard.allowed())
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                            proxies=None)


class GuardedSession(requests.Session):
    """A session whose every connection goes through a :class:`PinnedAdapter` and that never
    follows a redirect: a 3xx comes back to the caller as it is."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["proxies"] = {}
        return settings


def guarded_session(*, allow_private: bool | Callable[[], bool] = False,
                    resolver: Resolver | None = None) -> GuardedSession:
    """A :class:`GuardedSession` with one :class:`PinnedAdapter` for http and https."""
    session = GuardedSession()
    session.trust_env = False
    guard(session, allow_private=allow_private, resolver=resolver)
    return session


def guard(session: requests.Session, *, allow_private: bool | Callable[[], bool] = False,
          resolver: Resolver | None = None, **adapter_kwargs: Any) -> PinnedAdapter:
    """Mount a :class:`PinnedAdapter` on ``session`` for http:// and https:// (closing the
    adapters it replaces); returns it. Any other prefix the session had mounted is dropped,
    so no request can bypass the adapter. A session guarded already keeps its adapter (and
    the allowance it was guarded with)."""
    mounted = [session.adapters.get(prefix) for prefix in ("https://", "http://")]
    if isinstance(mounted[0], PinnedAdapter) and mounted[0] is mounted[1] \
            and len(session.adapters) == 2:
        return mounted[0]  # guarded already (a pooled session shared by two clients)
    adapter = PinnedAdapter(allow_private=allow_private, resolver=resolver, **adapter_kwargs)
    for replaced in {id(a): a for a in session.adapters.values()}.values():
        replaced.close()
    session.adapters.clear()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return adapter
