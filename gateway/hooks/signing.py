"""Standard Webhooks signing of outbound hook posts (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``), with the ``standardwebhooks`` library.

The id is the event's id and stays the same on every attempt (the receiver dedupes on it); the
timestamp is the time of the attempt, and the signature is made afresh with it, so a retry
hours later is not refused by the receiver as too old.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, message_id: str, body: str, at: float) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent at ``at`` (epoch seconds)."""
    moment = datetime.fromtimestamp(int(at), timezone.utc)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }
