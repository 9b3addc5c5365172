"""The demo's sample webhooks: what a till or a web shop would post, signed with the tenant's
secret (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) and
sent over HTTP to the gateway's own ``/api/v1/webhooks/{tenant}/{topic}``.

Among them, an order from a lapsed customer whom the win-back route had tagged: the gateway
finds it a return (attributed to the win-back), and cancels the customer's Rejoiner journey.
The last post repeats the first's ``webhook-id``, as a sender retrying would: it is
acknowledged as a duplicate and changes nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests

from gateway.webhooks.signatures import sign

#: A product of the synthetic shop's catalogue (the RCI customers' orders name these).
PRODUCT = {"id": "P001", "name": "Product 1", "taxonomy": ["Home", "Kitchen"],
           "variants": [{"id": "P001-V1", "sku": "SKU-001", "name": "Product 1", "price": "12.99",
                         "currency": "USD", "available": True, "stock": 40}]}
NEW_CUSTOMER = {"email": "new.customer@example.com", "first_name": "Noa", "last_name": "Field",
                "external_ids": {"shop": "shop-demo-1"},
                "consent": {"email": True, "gdpr_processing": True}}


@dataclass(frozen=True)
class Posted:
    what: str
    topic: str
    webhook_id: str
    status: int
    answer: dict[str, Any]


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _order(order_id: str, email: str, now: datetime, quantity: int = 2) -> dict[str, Any]:
    total = f"{12.99 * quantity:.2f}"
    return {"id": order_id, "placed_at": _iso(now), "total": total, "currency": "USD",
            "customer_email": email,
            "lines": [{"product_id": "P001", "sku": "SKU-001", "quantity": quantity,
                       "unit_price": "12.99"}]}


def samples(returning_email: str | None, unsubscribing_email: str | None,
            now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(what, topic, body) of each sample post, in the order they are sent."""
    tag = secrets.token_hex(3)
    posts = []
    if returning_email:
        posts.append(("order from a tagged lapsed customer", "orders",
                      _order(f"WB-{tag}", returning_email, now)))
    posts += [
        ("product update", "products", PRODUCT),
        ("new customer", "customers", NEW_CUSTOMER),
        ("order from the new customer", "orders",
         _order(f"NEW-{tag}", NEW_CUSTOMER["email"], now, quantity=1)),
    ]
    if unsubscribing_email:
        posts.append(("unsubscribe", "unsubscribes",
                      {"email": unsubscribing_email, "channels": ["email"]}))
    return posts


def post_signed(api_url: str, tenant_id: str, secret: str, topic: str, body: dict[str, Any],
                webhook_id: str) -> tuple[int, dict[str, Any]]:
    """One signed post; the status and the JSON answer."""
    raw = json.dumps(body).encode()
    stamp = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": webhook_id,
               "webhook-timestamp": str(stamp),
               "webhook-signature": sign(secret, webhook_id, stamp, raw)}
    answer = requests.post(f"{api_url}/api/v1/webhooks/{tenant_id}/{topic}", data=raw,
                           headers=headers, timeout=30)
    try:
        parsed = answer.json()
    except ValueError:
        parsed = {"error": answer.text[:200]}
    return answer.status_code, parsed


def post_samples(api_url: str, tenant_id: str, secret: str, returning_email: str | None,
                 unsubscribing_email: str | None) -> list[Posted]:
    """Post every sample, then the first one again under its own ``webhook-id``."""
    now = datetime.now(timezone.utc)
    posted, bodies = [], []
    for what, topic, body in samples(returning_email, unsubscribing_email, now):
        webhook_id = f"msg_{secrets.token_hex(8)}"
        status, answer = post_signed(api_url, tenant_id, secret, topic, body, webhook_id)
        posted.append(Posted(what, topic, webhook_id, status, answer))
        bodies.append(body)
    if posted:
        first = posted[0]
        status, answer = post_signed(api_url, tenant_id, secret, first.topic, bodies[0],
                                     first.webhook_id)
        posted.append(Posted(f"{first.what} (sent again)", first.topic, first.webhook_id,
                             status, answer))
    return posted
