"""How a credential rides on a request (``requests.auth.AuthBase`` callables), and the origin it
may ride to.

A credential belongs to its connection's origin (scheme, host and port): the client attaches it
only to requests for that origin (:func:`origin_of`, :func:`same_origin`) and follows no
redirect, so no header-borne secret (``Authorization`` or a custom one such as
``x-replenit-auth-key``) ever leaves for another host.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    """An URL's origin with its default port filled in: ``Origin("https", "api.x.com", 443)``."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        port = "" if self.port in (None, _DEFAULT_PORTS.get(self.scheme)) else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}"


def origin_of(url: str) -> Origin:
    """The origin of an absolute URL; scheme and host lower-cased, default ports normalised.

    A port that is not a number gives ``port=None`` (such a URL matches no real origin).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return Origin(scheme, (parts.hostname or "").lower(), None)
    return Origin(scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme))


def is_absolute(url: str) -> bool:
    """True for a URL naming its own scheme and host (``//host/path`` too)."""
    parts = urlsplit(url.strip())
    return bool(parts.netloc) or bool(parts.scheme and parts.scheme.lower() in _DEFAULT_PORTS)


def same_origin(url: str, base_url: str) -> bool:
    """Whether ``url`` (absolute) is on the origin of ``base_url``."""
    mine = origin_of(base_url)
    theirs = origin_of(url)
    return theirs.port is not None and bool(theirs.host) and theirs == mine


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>``; the repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"

    __str__ = __repr__


class HeaderAuth(AuthBase):
    """Any one header carrying the secret, e.g. ``HeaderAuth("x-replenit-auth-key", key)``."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self.header] = self._value
        return request

    def __repr__(self) -> str:
        return f"HeaderAuth({self.header!r}, ***)"

    __str__ = __repr__
