"""The RCI case of the shared contract suite: read only, paginated, no writes or deletes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import requests

from connectors.base import Client, ConnectionConfig, WriteResult
from connectors.rci.client import RciClient
from connectors.rci.sandbox import BASE_PATH
from connectors.sandbox_kit import SandboxConfig

API_KEY = "rci_contract_token"


class RciCase:
    name = "rci"
    fixtures = Path(__file__).resolve().parents[3] / "connectors" / "rci" / "fixtures"
    writes = False
    deletes = False
    paginates = True
    stamped: tuple[str, ...] = ()  # fields stamped anew on every write

    def sandbox_config(self, **overrides: Any) -> SandboxConfig:
        return SandboxConfig(**{"api_key": API_KEY, **overrides})

    def make_client(self, url: str, *, api_key: str | None = None, **kwargs: Any) -> RciClient:
        base = url.rstrip("/")
        if not base.endswith(BASE_PATH):
            base += BASE_PATH
        config = ConnectionConfig(base_url=base, credentials={"api_token": api_key or API_KEY})
        return RciClient(config, **kwargs)

    def seed(self, sandbox_url: str, n: int) -> None:
        root = sandbox_url.rstrip("/").removesuffix(BASE_PATH)
        response = requests.post(f"{root}/_sandbox/seed", json={"customers": n}, timeout=10)
        response.raise_for_status()

    def write_valid(self, client: Client, n: int, *, start: int = 0) -> list[str]:
        raise NotImplementedError("RCI is read only")

    def read_back(self, client: Client, sandbox_url: str, key: str) -> dict[str, Any] | None:
        return client.customer(key)  # type: ignore[attr-defined]

    def write_mixed(self, client: Client) -> tuple[WriteResult, set[int]]:
        raise NotImplementedError("RCI is read only")

    def delete(self, client: Client, key: str) -> None:
        raise NotImplementedError("RCI has no delete")

    def walk(self, client: Client) -> Iterator[Any]:
        return client.customers()  # type: ignore[attr-defined]

    def one_request(self, client: Client) -> None:
        client.customer("cus_000000")  # type: ignore[attr-defined]


CASE = RciCase()
