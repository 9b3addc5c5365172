"""Engagement intelligence computed by the gateway, from any source's data.

Status (``active`` / ``at_risk`` / ``lapsed`` / ``lost``) and engagement score, RFM scores,
grade and segments, and win-back attribution; the rules are in ``docs/scoring.md``.

* :func:`rescore_customer` - one customer, after an order or customer write, in the caller's
  transaction;
* :func:`rescore_tenant` - every customer of a tenant, set-based (``python app.py rescore``);
* :func:`record_winback` - a win-back message starts (the attribution window opens);
* :func:`apply_rekindle_answer` - Rekindle's own scores, authoritative when the tenant says so;
* :func:`customer_item` - the flat trigger item of a customer event.
"""

from gateway.scoring.customer import apply_rekindle_answer, record_winback, rescore_customer
from gateway.scoring.items import customer_item, json_amount
from gateway.scoring.rescore import RescoreResult, rescore_tenant
from gateway.scoring.rules import Rules

__all__ = [
    "RescoreResult",
    "Rules",
    "apply_rekindle_answer",
    "customer_item",
    "json_amount",
    "record_winback",
    "rescore_customer",
    "rescore_tenant",
]
