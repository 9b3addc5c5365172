"""The HTTP core the four connector clients share, as a small package.

* :mod:`.errors`: the typed errors (never carrying a secret) and the error table
  :func:`decide`: retry it, fail the connection, or dead-letter the record.
* :mod:`.retry`: :class:`RetryPolicy` (exponential backoff, full jitter, ``Retry-After``
  honoured) and the caller's :class:`Deadline` (:func:`deadline_scope`).
* :mod:`.budget`: :class:`RateBudget`, proactive per-credential limiting (exact moving windows
  in memory on an injectable clock; the ``limits`` library's in Redis).
* :mod:`.auth`: :class:`BearerAuth`, :class:`HeaderAuth` and the origin a credential may go to.
* :mod:`.client`: :class:`HttpClient` and its session pool; :class:`UsesHttp`.
* :mod:`.paging`: paginators, small state machines that refuse to walk in circles.

``time_scale`` (on :class:`RateBudget` and :class:`HttpClient`, default 1) divides every rate
window and every ``Retry-After`` wait: a client with ``time_scale=X`` keeps in step with a
sandbox whose clock runs ``X`` times faster than wall time (``SandboxConfig(rate_scale=X)``).

Everything public is importable from ``connectors.http`` itself.
"""

from .auth import BearerAuth, HeaderAuth, Origin, origin_of, same_origin
from .budget import RateBudget, credential_hash
from .client import HttpClient, UsesHttp
from .errors import (
    AddressNotFound,
    AuthError,
    ConfigurationError,
    ConnectionProblem,
    ConnectorError,
    DeadlineExceeded,
    Decision,
    FatalError,
    ForeignOrigin,
    NotFound,
    PaginationLoop,
    RateLimited,
    RecordRejected,
    Redirected,
    RetriableError,
    ServerError,
    TransportError,
    ValidationError,
    decide,
    error_for_response,
    group_by_record,
)
from .paging import (
    JsonApiCursorPaginator,
    LoopDetector,
    PageNumberPaginator,
    Paginator,
    paginate,
)
from .retry import Deadline, RetryPolicy, current_deadline, deadline_scope, parse_retry_after

__all__ = [
    "AddressNotFound",
    "AuthError",
    "BearerAuth",
    "ConfigurationError",
    "ConnectionProblem",
    "ConnectorError",
    "Deadline",
    "DeadlineExceeded",
    "Decision",
    "FatalError",
    "ForeignOrigin",
    "HeaderAuth",
    "HttpClient",
    "JsonApiCursorPaginator",
    "LoopDetector",
    "NotFound",
    "Origin",
    "PageNumberPaginator",
    "PaginationLoop",
    "Paginator",
    "RateBudget",
    "RateLimited",
    "RecordRejected",
    "Redirected",
    "RetriableError",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "UsesHttp",
    "ValidationError",
    "credential_hash",
    "current_deadline",
    "deadline_scope",
    "decide",
    "error_for_response",
    "group_by_record",
    "origin_of",
    "paginate",
    "parse_retry_after",
    "same_origin",
]
