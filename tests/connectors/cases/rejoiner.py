"""Rejoiner's case for the shared contract suite (``tests/connectors/test_contract.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import connectors.rejoiner as package
from connectors.base import ConnectionConfig, WriteResult
from connectors.rejoiner import CONNECTOR, RejoinerClient
from connectors.sandbox_kit import SandboxConfig
from gateway.model import Cart, CartItem, Customer, Money

API_KEY = "rj_contract_0123456789abcdef"
SITE_ID = "site_contract_1"


def customer(i: int) -> Customer:
    """A valid canonical customer, different for every ``i``."""
    return Customer(
        email=f"contract.{i}@example.com",
        first_name="Contract",
        last_name=f"Person{i}",
        phone=f"+2782{i:07d}",
        language="en-GB",
        tags=["gw:winback"] if i % 2 else [],
        rfm=455,
        grade="B",
        lifetime_value=Money(1000 + i, "USD"),
        order_count=1 + i % 5,
    )


def cart(email: str, product_id: str = "P1") -> Cart:
    return Cart(email=email, value=Money(2000, "USD"), item_count=2,
                items=[CartItem(product_id=product_id, quantity=2,
                                line_total=Money(2000, "USD"))])


class RejoinerCase:
    name = "rejoiner"
    fixtures = Path(package.__file__).parent / "fixtures"
    writes = True
    deletes = False  # no delete is documented
    paginates = False  # the reference documents no list endpoint
    stamped: tuple[str, ...] = ()  # fields stamped anew on every write

    def sandbox_config(self, **overrides: Any) -> SandboxConfig:
        return SandboxConfig(**{"api_key": API_KEY, "site_id": SITE_ID, **overrides})

    def make_client(self, url: str, *, api_key: str | None = None, **kwargs: Any
                    ) -> RejoinerClient:
        config = ConnectionConfig(base_url=url, credentials={"api_key": api_key or API_KEY},
                                  options={"site_id": SITE_ID, "currency": "USD"})
        return CONNECTOR.make_client(config, **kwargs)

    def seed(self, sandbox_url: str, n: int) -> None:
        raise NotImplementedError("seed with SandboxConfig(seed_customers=n); nothing to list")

    def write_valid(self, client: RejoinerClient, n: int, *, start: int = 0) -> list[str]:
        operation = CONNECTOR.operations["customers.upsert"]
        keys = []
        for i in range(start, start + n):
            record = customer(i)
            result = operation.send(client, [record], {"currency": "USD"})
            assert result.accepted == 1, result
            keys.append(operation.key(record))
        return keys

    def read_back(self, client: RejoinerClient, sandbox_url: str, key: str
                  ) -> dict[str, Any] | None:
        return client.get_customer(key)

    def write_mixed(self, client: RejoinerClient) -> tuple[WriteResult, set[int]]:
        records = [
            cart("mixed.0@example.com"),
            cart("not-an-email"),  # 400 {"email": ["Enter a valid email address."]}
            cart("mixed.2@example.com"),
            cart("mixed.3@example.com", product_id=""),  # 400: product_id may not be blank
        ]
        result = CONNECTOR.operations["carts.convert"].send(client, records, {"currency": "USD"})
        return result, {1, 3}

    def delete(self, client: RejoinerClient, key: str) -> None:
        raise NotImplementedError("Rejoiner documents no delete")

    def walk(self, client: RejoinerClient) -> Iterator[Any]:
        raise NotImplementedError("Rejoiner documents no paginated listing")

    def one_request(self, client: RejoinerClient) -> None:
        client.ping()


CASE = RejoinerCase()
