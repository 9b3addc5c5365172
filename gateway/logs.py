"""Logging for every gateway process, configured in one place (:func:`configure`).

``python app.py`` (every command, ``serve`` and ``worker`` among them) logs to standard error:
plain lines (``LEVEL logger: message key=value ...``) by default, or one JSON object per line
when ``GATEWAY_LOG_JSON=1``::

    {"ts": "2024-06-01T12:00:00.123Z", "level": "INFO", "logger": "gateway.relay",
     "event": "relay.drain", "message": "...", "sent": 12, ...}

A meaningful step logs one line through :func:`event`, with a stable ``event`` name and its
fields: ``schedule.run`` (a schedule's job ran: a pull, a re-score, retention),
``relay.drain`` (a drain pass delivered something), ``relay.dead_letter``,
``relay.breaker_open``. Any other line has ``"event": "log"``.

Secrets never reach the output: the handler's :class:`Redactor` masks gateway API keys
(``gk_live_...``), signing secrets (``whsec_...``), ``Bearer``/``Basic`` credentials and header
values that carry keys, fields named like secrets, and the values of the process's configured
secrets (:func:`configured_secrets`), in messages, fields and tracebacks alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, TextIO
from urllib.parse import unquote, urlsplit

#: The environment variable that turns JSON lines on.
JSON_ENV = "GATEWAY_LOG_JSON"
#: What a masked value becomes.
MASK = "***"
#: The LogRecord attributes :func:`event` sets (``extra``).
EVENT_ATTR = "gateway_event"
FIELDS_ATTR = "gateway_fields"

_PATTERNS = (
    (re.compile(r"gk_live_[A-Za-z0-9_\-]+"), "gk_live_" + MASK),
    (re.compile(r"whsec_[A-Za-z0-9+/=_\-]+"), "whsec_" + MASK),
    (re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE), r"\1\2" + MASK),
    (re.compile(r"\b(x-replenit-auth-key|x-api-key|api[_-]?key|authorization)"
                r"([\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic|Rejoiner|Token)\s+)?)"
                r"([^\s\"',;}&]+)",
                re.IGNORECASE), r"\1\2" + MASK),
)
#: Field names whose values are always masked.
_SECRET_NAMES = re.compile(
    r"(secret|password|passwd|(api|auth)[_-]?key|token|authorization|credential)", re.IGNORECASE)
#: LogRecord attributes that a field may not shadow in a JSON line.
_RESERVED = frozenset({"ts", "level", "logger", "event", "message", "exc", "stack"})


def configured_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """The secrets this process was configured with, longest first: every key of
    ``GATEWAY_SECRET_KEY``, the passwords of the database and Redis URLs (as written and
    percent-decoded), and ``GATEWAY_CONNECTION_KEY``."""
    env = os.environ if env is None else env
    return secret_values(
        urls=[env.get("GATEWAY_DATABASE_URL"), env.get("GATEWAY_REDIS_URL")],
        values=[*(env.get("GATEWAY_SECRET_KEY") or "").split(","),
                env.get("GATEWAY_CONNECTION_KEY") or ""])


def secret_values(*, urls: Iterable[str | None], values: Iterable[str]) -> list[str]:
    """The passwords of ``urls`` (as written and percent-decoded) and ``values``, stripped,
    without the empty and trivially short ones, longest first (so a longer secret is masked
    before a shorter one inside it)."""
    found = [value.strip() for value in values]
    for url in urls:
        try:
            password = urlsplit((url or "").strip()).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known key shapes and each of ``secrets`` masked (also as escaped inside
    JSON)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret:
            text = text.replace(escaped, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """A handler filter that masks secrets in a record's message, fields, traceback and stack
    (it rewrites the record: the message is formatted once, here)."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = sorted(set(configured_secrets() if secrets is None else secrets),
                              key=len, reverse=True)

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {str(k): MASK if _SECRET_NAMES.search(str(k)) else self._value(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._value(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.redact(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be kept, never raise here
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        fields = getattr(record, FIELDS_ATTR, None)
        if fields:
            setattr(record, FIELDS_ATTR, self._value(fields))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None  # the formatters use the redacted text, not a new one
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, FIELDS_ATTR, None) or {})


class PlainFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` (the traceback, if any, on the lines after)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        parts = [f"{key}={_plain(value)}" for key, value in _fields(record).items()
                 if value is not None]
        if not parts:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} {' '.join(parts)}{newline}{rest}"


def _plain(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"=" for c in value):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``event``, ``message``, the
    event's fields, and ``exc`` (a traceback) or ``stack`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, EVENT_ATTR, None) or "log",
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            obj[f"field_{key}" if key in _RESERVED else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return json.dumps(obj, default=str, ensure_ascii=False)


def json_wanted(env: Mapping[str, str] | None = None) -> bool:
    """True when ``GATEWAY_LOG_JSON`` is on (1, true, yes, on)."""
    env = os.environ if env is None else env
    return (env.get(JSON_ENV) or "").strip().lower() in {"1", "true", "yes", "on"}


class _GatewayHandler(logging.StreamHandler):
    """The handler :func:`configure` installs (recognised, and replaced, by a second call)."""


def configure(*, json_lines: bool | None = None, level: int = logging.INFO,
              stream: TextIO | None = None, force: bool = False) -> logging.Handler | None:
    """Send this process's logs to ``stream`` (standard error), as JSON lines when
    ``json_lines`` (default: ``GATEWAY_LOG_JSON``), through a :class:`Redactor`.

    Like :func:`logging.basicConfig`, it leaves a root logger that already has handlers of
    someone else's alone (a test runner's, an embedding program's) unless ``force``; a second
    call replaces the handler the first installed. The handler, or None when left alone."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _GatewayHandler)]
    if len(ours) != len(root.handlers) and not force:
        return None
    for handler in ours if not force else list(root.handlers):
        root.removeHandler(handler)
    handler = _GatewayHandler(stream or sys.stderr)
    handler.addFilter(Redactor())
    wanted = json_wanted() if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if wanted else PlainFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler


def event(logger: logging.Logger, name: str, message: str = "", *, level: int = logging.INFO,
          **fields: Any) -> None:
    """Log one step: ``name`` (e.g. ``relay.drain``) and its ``fields``; ``message`` is the
    human summary (``name`` when empty). Fields that are None are left out of plain lines."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", message or name,
                   extra={EVENT_ATTR: name, FIELDS_ATTR: fields})
