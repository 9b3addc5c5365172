"""Rekindle's case for the shared contract suite (``tests/connectors/test_contract.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import requests

import connectors.rekindle as package
from connectors.base import ConnectionConfig, WriteResult
from connectors.rekindle import CONNECTOR, RekindleClient, wire
from connectors.rekindle.sandbox import BASE_PATH
from connectors.sandbox_kit import SandboxConfig
from gateway.model import Customer, Money

API_KEY = "rk_live_contract_0123456789abcdef"


def customer(i: int) -> Customer:
    """A valid canonical customer, different for every ``i``."""
    return Customer(
        email=f"contract.{i}@example.com",
        first_name="Contract",
        last_name=f"Person{i}",
        phone=f"+2782{i:07d}",
        lifetime_value=Money(1000 + i, "USD"),
        order_count=1 + i % 5,
    )


class RekindleCase:
    name = "rekindle"
    fixtures = Path(package.__file__).parent / "fixtures"
    writes = True
    deletes = False  # Rekindle has no delete
    paginates = False  # triggers answer at most 10 items, no pages
    #: Fields of a read-back the service stamps anew on every write, changed or not.
    stamped: tuple[str, ...] = ("updated_at",)  # an update-customer is an update

    def sandbox_config(self, **overrides: Any) -> SandboxConfig:
        return SandboxConfig(**{"api_key": API_KEY, **overrides})

    def make_client(self, url: str, *, api_key: str | None = None, **kwargs: Any
                    ) -> RekindleClient:
        config = ConnectionConfig(base_url=url.rstrip("/") + BASE_PATH,
                                  credentials={"api_key": api_key or API_KEY},
                                  options={"currency": "USD"})
        return CONNECTOR.make_client(config, **kwargs)

    def seed(self, sandbox_url: str, n: int) -> None:
        response = requests.post(f"{sandbox_url}/_sandbox/seed", json={"customers": n},
                                 timeout=10)
        response.raise_for_status()

    def write_valid(self, client: RekindleClient, n: int, *, start: int = 0) -> list[str]:
        operation = CONNECTOR.operations["customers.upsert"]
        keys = []
        for i in range(start, start + n):
            record = customer(i)
            result = operation.send(client, [record], {"currency": "USD"})
            assert result.accepted == 1, result
            keys.append(operation.key(record))
        return keys

    def read_back(self, client: RekindleClient, sandbox_url: str, key: str
                  ) -> dict[str, Any] | None:
        item = client.find_customer_wire(key)
        return None if item is None else wire.CustomerItem().dump(item)

    def write_mixed(self, client: RekindleClient) -> tuple[WriteResult, set[int]]:
        records = [
            customer(900),
            Customer(email="not-an-email", first_name="Bad", last_name="Email"),
            customer(901),
            Customer(email="nameless@example.com"),  # Rekindle requires a name
            Customer(email="yen@example.com", first_name="Wrong", last_name="Currency",
                     lifetime_value=Money(500, "JPY")),
        ]
        result = CONNECTOR.operations["customers.upsert"].send(client, records,
                                                               {"currency": "USD"})
        return result, {1, 3, 4}

    def delete(self, client: RekindleClient, key: str) -> None:
        raise NotImplementedError("Rekindle has no delete")

    def walk(self, client: RekindleClient) -> Iterator[Any]:
        raise NotImplementedError("Rekindle's listings are not paginated")

    def one_request(self, client: RekindleClient) -> None:
        client.customer_returned_wire()


CASE = RekindleCase()
