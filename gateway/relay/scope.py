"""Whose rows a query reads: one tenant's (the API, always), or every tenant's (operator
commands run on the installation, and the worker). Queries take a :data:`TenantScope`, so
reading across tenants is always said out loud (``ALL_TENANTS``), never a forgotten filter."""

from __future__ import annotations

from typing import Union


class AllTenants:
    """Every tenant: for operator commands and the worker only."""

    _instance: "AllTenants | None" = None

    def __new__(cls) -> "AllTenants":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL_TENANTS"


ALL_TENANTS = AllTenants()

#: A tenant id, or :data:`ALL_TENANTS`.
TenantScope = Union[str, AllTenants]
