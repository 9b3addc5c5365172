"""Replenit's case for the shared contract suite (``tests/connectors/test_contract.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import requests

import connectors.replenit as package
from connectors.base import ConnectionConfig, WriteResult
from connectors.replenit import CONNECTOR
from connectors.replenit.client import ReplenitClient
from connectors.replenit.sandbox import BASE_PATH
from connectors.sandbox_kit import SandboxConfig
from gateway.model import Consent, Customer

API_KEY = "rp_contract_0123456789abcdef"
TENANT = "6a1f0c2e-8d4b-4f7a-9c3e-2b5d7e9f1a3c"
CONTEXT = {"consent_basis": "consent"}


def customer(i: int) -> Customer:
    """A valid canonical customer, different for every ``i``."""
    return Customer(id=f"gw-contract-{i}", email=f"contract.{i}@example.com",
                    first_name="Contract", last_name=f"Person{i}", phone=f"+2782{i:07d}",
                    language="en-ZA", consent=Consent(email=True, sms=False,
                                                      gdpr_processing=True))


class ReplenitCase:
    name = "replenit"
    fixtures = Path(package.__file__).parent / "fixtures"
    writes = True
    deletes = True
    paginates = False  # write only: nothing to list
    stamped: tuple[str, ...] = ()  # fields stamped anew on every write

    def sandbox_config(self, **overrides: Any) -> SandboxConfig:
        return SandboxConfig(**{"api_key": API_KEY, "tenant_id": TENANT, **overrides})

    def make_client(self, url: str, *, api_key: str | None = None, **kwargs: Any
                    ) -> ReplenitClient:
        config = ConnectionConfig(base_url=url.rstrip("/") + BASE_PATH,
                                  credentials={"api_key": api_key or API_KEY},
                                  options={"tenant_id": TENANT})
        return CONNECTOR.make_client(config, **kwargs)

    def seed(self, sandbox_url: str, n: int) -> None:
        response = requests.post(f"{sandbox_url}/_sandbox/seed", json={"customers": n},
                                 timeout=10)
        response.raise_for_status()

    def write_valid(self, client: ReplenitClient, n: int, *, start: int = 0) -> list[str]:
        operation = CONNECTOR.operations["customers.upsert"]
        records = [customer(i) for i in range(start, start + n)]
        result = operation.send(client, records, CONTEXT)
        assert (result.accepted, result.rejected) == (n, {}), result
        return [operation.key(record) for record in records]

    def read_back(self, client: ReplenitClient, sandbox_url: str, key: str
                  ) -> dict[str, Any] | None:
        response = requests.get(f"{sandbox_url}/_sandbox/records/customers/{key}", timeout=10)
        return response.json() if response.status_code == 200 else None

    def write_mixed(self, client: ReplenitClient) -> tuple[WriteResult, set[int]]:
        records = [
            customer(900),
            Customer(id="x" * 101, email="too.long.id@example.com"),  # CustomerId > 100 chars
            customer(901),
            Customer(id=None, email=None, first_name="Nobody"),  # neither CustomerId nor Email
            Customer(id="gw-bad-email", email="not-an-email"),  # malformed email
        ]
        result = CONNECTOR.operations["customers.upsert"].send(client, records, CONTEXT)
        return result, {1, 3, 4}

    def delete(self, client: ReplenitClient, key: str) -> None:
        result = CONNECTOR.operations["customers.delete"].send(client, [{"customerId": key}],
                                                               CONTEXT)
        assert result.accepted == 1, result

    def walk(self, client: ReplenitClient) -> Iterator[Any]:
        raise NotImplementedError("Replenit is write only: nothing to list")

    def one_request(self, client: ReplenitClient) -> None:
        client.delete_order("contract-probe-order")  # idempotent: an unknown order is fine


CASE = ReplenitCase()
