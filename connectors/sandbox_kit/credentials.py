"""How a service reads its credential from a request, declared once per sandbox as data.

A :class:`HeaderCredential` names the one header a service takes its key from and, for the
``Authorization`` header, the auth scheme in front of the key. The sandbox's own auth check and
the kit's rate limiter both read the key through it, so the two can never disagree about what
the credential of a request is: ``Bearer``, ``bearer`` and ``BEARER`` in front of the same
token are one credential (auth schemes are case-insensitive, RFC 9110 section 11.1), and no
other header (``Idempotency-Key``, ``X-Foo-Key``, ``X-Auth-Whatever``) is ever part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request


@dataclass(frozen=True)
class HeaderCredential:
    """The credential is the value of ``header``, after ``scheme`` when one is named.

    With a scheme the header must be exactly two whitespace-separated parts, the scheme
    (matched case-insensitively) and the key; anything else presents no credential. Without
    one the whole header value is the key (``x-replenit-auth-key: KEY``).
    """

    header: str
    scheme: str | None = None

    def read(self, req: Request) -> str | None:
        """The key ``req`` presents, as the service reads it; None when it presents none."""
        value = req.headers.get(self.header)
        if not value:
            return None
        if self.scheme is None:
            return value
        parts = value.split()
        if len(parts) != 2 or parts[0].lower() != self.scheme.lower():
            return None
        return parts[1]

    def headers_for(self, key: str, scheme: str | None = None) -> dict[str, str]:
        """The request header that presents ``key`` (``scheme`` spells the scheme another way,
        e.g. ``"bearer"``; tests use it)."""
        if self.scheme is None:
            return {self.header: key}
        return {self.header: f"{scheme or self.scheme} {key}"}


#: ``Authorization: Bearer <key>``: Rekindle, RCI, and the kit's default.
BEARER = HeaderCredential("Authorization", "Bearer")
