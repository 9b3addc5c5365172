"""Recording scheduled runs in ``sync_runs``: one row per run, written when it ends, with the
job's counts (plus the run's ``slot`` and ``worker``), ``ok`` or ``failed``, and for a failure
the error's text without the process's secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Engine, insert

from gateway.logs import redact_text, secret_values
from gateway.settings import Settings
from gateway.store.tables import sync_runs

#: The longest error text kept.
MAX_ERROR = 1000


def _secrets(settings: Settings) -> list[str]:
    """The process's secrets that could turn up in an error's text: the encryption key(s)
    and the database's and Redis's passwords."""
    return secret_values(urls=[settings.database_url, settings.redis_url],
                         values=(settings.secret_key or "").split(","))


def describe_error(exc: BaseException, settings: Settings) -> str:
    """``Type: message`` of an exception, one line, with the process's secrets and anything
    shaped like a key or signing secret masked (:func:`gateway.logs.redact_text`).
    For a database error, the driver's own words without SQLAlchemy's SQL echo."""
    detail = getattr(exc, "orig", None) or exc
    text = " ".join(f"{type(exc).__name__}: {detail}".split())
    text = text.split("(Background on this error at:")[0].strip()
    return redact_text(text, _secrets(settings))[:MAX_ERROR]


def record_run(engine: Engine, *, tenant_id: str, route: str, started_at: datetime,
               finished_at: datetime, status: str, counts: Mapping[str, Any],
               error: str | None = None) -> None:
    """Write one run's row."""
    with engine.begin() as conn:
        conn.execute(insert(sync_runs).values(
            tenant_id=tenant_id, route=route, started_at=started_at, finished_at=finished_at,
            status=status, counts=dict(counts), error=error))
