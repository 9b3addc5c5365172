"""The contract every connector's test case fulfils; ``test_contract.py`` runs it for all four.

Each connector has ``tests/connectors/cases/<name>.py`` exposing ``CASE``, an object with the
attributes and methods below. The suite starts the connector's sandbox as a real HTTP server on
127.0.0.1 and talks to it only through the production client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol

from connectors.base import Client, WriteResult
from connectors.sandbox_kit import SandboxConfig


class ContractCase(Protocol):
    name: str  # the connector's registry name
    fixtures: Path  # connectors/<name>/fixtures
    writes: bool  # False for a read-only service (RCI)
    deletes: bool  # False where the service has no delete (Rekindle, Rejoiner)
    paginates: bool  # True where a list endpoint is paginated (RCI; Rejoiner where it is)

    def sandbox_config(self, **overrides: Any) -> SandboxConfig:
        """A config with this case's credential (and site or tenant id); ``overrides`` win."""

    def make_client(self, url: str, *, api_key: str | None = None, **kwargs: Any) -> Client:
        """The production client pointed at a sandbox's URL (base path added as needed).

        ``api_key`` None means the sandbox's own key; ``kwargs`` go to the client (``retry``,
        ``time_scale``, ``storage_uri``, ``timeout``).
        """

    def seed(self, sandbox_url: str, n: int) -> None:
        """Put ``n`` records into the sandbox (for read-only services and pagination)."""

    def write_valid(self, client: Client, n: int, *, start: int = 0) -> list[str]:
        """Send ``n`` valid canonical records through the client; their keys at the service."""

    def read_back(self, client: Client, sandbox_url: str, key: str) -> dict[str, Any] | None:
        """The record the service now holds under ``key`` (client read if the service has one,
        else ``GET /_sandbox/records/...``), in wire shape; None when absent."""

    def write_mixed(self, client: Client) -> tuple[WriteResult, set[int]]:
        """Send a batch with some invalid records; the result and the indexes that must fail."""

    def delete(self, client: Client, key: str) -> None:
        """Delete the record ``key`` through the client."""

    def walk(self, client: Client) -> Iterator[Any]:
        """Walk the paginated listing through the client's generator."""

    def one_request(self, client: Client) -> None:
        """One cheap, valid request (for the rate-limit and fault tests)."""
