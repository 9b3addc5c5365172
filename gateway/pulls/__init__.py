"""The scheduled source pulls: the RCI customer walk (``rci-customers``) and the Rekindle trigger
poll (``rekindle-poll``). Each module registers its job with :mod:`gateway.schedule.jobs` when
imported; :func:`register_jobs` imports them all (the ticker, the worker and ``sync`` call it).
"""

from __future__ import annotations


def register_jobs() -> None:
    """Import every pull module, so each has registered its schedule job."""
    from gateway.pulls import rci_customers, rekindle_poll  # noqa: F401
