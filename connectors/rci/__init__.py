"""Repeat Customer Insights (RCI): RFM analysis of a store's customers. Read only.

JSON:API 1.0 over ``https://repeat-customer-insights.littlestreamsoftware.com/api/v1``, Bearer
token, cursor pages, 60 requests a minute. The gateway walks its customers (``reads``); there is
nothing to write, so ``operations`` is empty.
"""

from __future__ import annotations

from connectors.base import ConnectorSpec

from . import mapping, wire
from .client import CLIENT_LIMITS, make_client

CONNECTOR = ConnectorSpec(
    name="rci",
    title="Repeat Customer Insights",
    default_base_url="https://repeat-customer-insights.littlestreamsoftware.com/api/v1",
    credential_fields=("api_token",),
    option_fields=(),
    limits=wire.LIMITS,
    client_limits=CLIENT_LIMITS,
    reads=frozenset({"customers"}),
    operations={},
    make_client=make_client,
    inbound=mapping.INBOUND,
    auth="Authorization: Bearer <API token> (revoked tokens answer 401)",
)
