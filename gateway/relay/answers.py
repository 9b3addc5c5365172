"""What becomes of a service's answer about a delivered record (``WriteResult.answers``).

Some answers matter to the gateway: Rekindle re-scores the customer it is sent and says whether
they ``returned``. A route registers a handler for its (connector, operation) here; the worker
calls it for each delivered row that has an answer, inside the transaction that marks the row
done, so recording the answer and completing the row happen together or not at all (a resend
gives the handler the same answer again: handlers must be idempotent).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from sqlalchemy import Connection

#: ``handler(conn, tenant_id, subject_id, record_key, answer)``
AnswerHandler = Callable[[Connection, str, "str | None", "str | None", Any], None]

_HANDLERS: dict[tuple[str, str], AnswerHandler] = {}
_LOCK = threading.Lock()


def register(connector: str, operation: str, handler: AnswerHandler) -> AnswerHandler:
    """Call ``handler`` with every answer ``connector``'s ``operation`` gives (replacing any
    handler registered before)."""
    with _LOCK:
        _HANDLERS[(connector, operation)] = handler
    return handler


def unregister(connector: str, operation: str) -> None:
    with _LOCK:
        _HANDLERS.pop((connector, operation), None)


def handler_for(connector: str, operation: str) -> AnswerHandler | None:
    with _LOCK:
        return _HANDLERS.get((connector, operation))
