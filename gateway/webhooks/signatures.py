"""Standard Webhooks signatures, checked on the raw body bytes.

A signed post carries ``webhook-id``, ``webhook-timestamp`` (whole seconds since 1970) and
``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, any one of which may
match. The HMAC is over ``id.timestamp.body`` with the secret (``whsec_<base64>``). The HMAC
itself is the ``standardwebhooks`` package's (:meth:`standardwebhooks.Webhook.sign`); this
module wraps it so that whatever the headers or body hold, the outcome is one of two
:class:`SignatureRefused` kinds (``malformed``: a 400; ``refused``: a 401), never another
exception, and the clock is the caller's (tests inject it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets as random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

from standardwebhooks import Webhook

#: A timestamp further than this from the receiver's clock, either way, is refused.
TOLERANCE_SECONDS = 300
MAX_ID_CHARS = 200
MAX_SIGNATURE_HEADER_CHARS = 4096
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32

_ID = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_ID_CHARS)  # visible ASCII, no spaces
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureRefused(Exception):
    """The post is not verifiably signed. ``malformed`` (a 400): a header or the body cannot
    be read; otherwise (a 401) it is well formed but no signature matches, or its timestamp is
    outside the tolerance."""

    def __init__(self, message: str, *, malformed: bool) -> None:
        super().__init__(message)
        self.message, self.malformed = message, malformed

    @property
    def status(self) -> int:
        return 400 if self.malformed else 401


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    timestamp: int
    signatures: tuple[bytes, ...]  # the v1 entries, decoded; other versions are ignored


def _malformed(message: str) -> SignatureRefused:
    return SignatureRefused(message, malformed=True)


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The three headers, read strictly (a :class:`SignatureRefused`, malformed, otherwise)."""
    found = {name: headers.get(name) for name in
             ("webhook-id", "webhook-timestamp", "webhook-signature")}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise _malformed("missing signature header(s): " + ", ".join(missing))
    webhook_id, stamp, signature = (found[n] for n in
                                    ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not _ID.fullmatch(webhook_id):
        raise _malformed(f"webhook-id must be 1 to {MAX_ID_CHARS} visible ASCII characters")
    if not _TIMESTAMP.fullmatch(stamp):
        raise _malformed("webhook-timestamp must be whole seconds since 1970")
    if len(signature) > MAX_SIGNATURE_HEADER_CHARS:
        raise _malformed("webhook-signature is too long")
    decoded = []
    for entry in signature.split(" "):
        if not entry:
            continue
        version, comma, value = entry.partition(",")
        if not comma or not version or not value:
            raise _malformed("webhook-signature entries must be 'v1,<base64>', space-separated")
        if version != "v1":
            continue
        try:
            decoded.append(base64.b64decode(value.encode("ascii"), validate=True))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise _malformed("a v1 signature in webhook-signature is not base64") from None
    if not decoded:
        raise SignatureRefused("no v1 signature in webhook-signature", malformed=False)
    return SignedHeaders(webhook_id, int(stamp), tuple(decoded))


def expected_signature(secret: str, webhook_id: str, timestamp: int, body: str) -> bytes:
    """The v1 HMAC-SHA256 of ``id.timestamp.body`` with ``secret`` (the package's)."""
    signed = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, timezone.utc),
                                  body)
    return base64.b64decode(signed.partition(",")[2])


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """A ``webhook-signature`` value for ``body`` (senders and tests use it)."""
    signed = expected_signature(secret, webhook_id, timestamp, body.decode("utf-8"))
    return "v1," + base64.b64encode(signed).decode("ascii")


def verify(body: bytes, headers: Mapping[str, str], secrets: Sequence[str], *,
           now: float) -> SignedHeaders:
    """Check a post: the headers (``headers`` keyed in lower case), the timestamp against
    ``now`` (epoch seconds), and the signatures against each of ``secrets``. Returns the
    headers; raises :class:`SignatureRefused`."""
    signed = parse_headers(headers)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8 text") from None
    if abs(now - signed.timestamp) > TOLERANCE_SECONDS:
        raise SignatureRefused(f"webhook-timestamp is more than {TOLERANCE_SECONDS} seconds "
                               "from the receiver's clock", malformed=False)
    for secret in secrets:
        expected = expected_signature(secret, signed.webhook_id, signed.timestamp, text)
        if any(hmac.compare_digest(expected, given) for given in signed.signatures):
            return signed
    raise SignatureRefused("no signature in webhook-signature matches", malformed=False)


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode("ascii")
