"""Process settings, read once from the environment (``GATEWAY_*``) into one typed object.

Tenant-level settings (currency, thresholds, ...) are not here: they live in the database, see
:mod:`gateway.tenant_settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


class SettingsError(ValueError):
    """A process setting is missing or malformed; the message names the variable."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _check_database_url(url: str) -> None:
    """Refuse a database URL SQLAlchemy cannot parse, without repeating it (it may hold a
    password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(
            "GATEWAY_DATABASE_URL is not a valid database URL (check its host, port and path)"
        ) from None


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str | None  # None: the embedded SQLite file in the instance folder
    secret_key: str | None  # None: embedded default creates a key file (SQLite only)
    redis_url: str | None
    allow_private_targets: bool = False
    max_body_bytes: int = 1_048_576
    # Relay timings, settings so tests can run them in seconds.
    lease_seconds: float = 60.0
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 3600.0
    max_attempts: int = 12
    batch_linger_seconds: float = 1.5
    tick_seconds: float = 5.0
    # Schedules (gateway.schedule): done deliveries older than this are deleted by retention.
    done_retention_days: float = 14.0
    # The delivery engine (gateway.relay), settings so tests can run it in seconds.
    max_age_seconds: float = 259_200.0  # a delivery not sent within this (3 days) goes dead
    breaker_failures: int = 5  # consecutive 5xx/transport failures that open a breaker
    breaker_cooldown_seconds: float = 30.0  # open this long, then one probe at a time
    connection_pause_seconds: float = 300.0  # a failed connection's rows wait this long
    worker_threads: int = 4  # batches one worker process sends at once
    worker_poll_seconds: float = 0.5  # how often an idle worker looks for due rows
    http_attempts: int = 3  # attempts the HTTP core makes within one send
    rate_time_scale: float = 1.0  # divides every rate window: rate-scaled sandboxes only
    # The HTTP server of `python app.py serve` (waitress); see gateway.serving.
    idle_timeout_seconds: int = 60  # an idle or stalled connection is closed after this
    max_header_bytes: int = 65_536  # request line and headers together (431 above)
    serve_threads: int = 8  # requests handled at once
    connection_limit: int = 200  # open connections; more wait in the listen backlog

    @property
    def embedded(self) -> bool:
        """True when running on the embedded SQLite default (no GATEWAY_DATABASE_URL)."""
        return self.database_url is None

    @property
    def sqlite_path(self) -> Path:
        return self.instance_path / "gateway.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        instance = Path(env.get("GATEWAY_INSTANCE_PATH") or Path.cwd() / "instance")
        url = (env.get("GATEWAY_DATABASE_URL") or "").strip() or None
        values = dict(
            instance_path=instance.resolve(),
            database_url=url,
            secret_key=(env.get("GATEWAY_SECRET_KEY") or "").strip() or None,
            redis_url=(env.get("GATEWAY_REDIS_URL") or "").strip() or None,
            allow_private_targets=_flag(env.get("GATEWAY_ALLOW_PRIVATE_TARGETS")),
            max_body_bytes=int(_number(env, "GATEWAY_MAX_BODY_BYTES", 1_048_576)),
            lease_seconds=_number(env, "GATEWAY_LEASE_SECONDS", 60.0),
            backoff_base_seconds=_number(env, "GATEWAY_BACKOFF_BASE_SECONDS", 2.0),
            backoff_cap_seconds=_number(env, "GATEWAY_BACKOFF_CAP_SECONDS", 3600.0),
            max_attempts=int(_number(env, "GATEWAY_MAX_ATTEMPTS", 12)),
            batch_linger_seconds=_number(env, "GATEWAY_BATCH_LINGER_SECONDS", 1.5),
            tick_seconds=_number(env, "GATEWAY_TICK_SECONDS", 5.0),
            done_retention_days=_number(env, "GATEWAY_DONE_RETENTION_DAYS", 14.0),
            max_age_seconds=_number(env, "GATEWAY_MAX_AGE_SECONDS", 259_200.0),
            breaker_failures=_whole_number(env, "GATEWAY_BREAKER_FAILURES", 5),
            breaker_cooldown_seconds=_number(env, "GATEWAY_BREAKER_COOLDOWN_SECONDS", 30.0),
            connection_pause_seconds=_number(env, "GATEWAY_CONNECTION_PAUSE_SECONDS", 300.0),
            worker_threads=_whole_number(env, "GATEWAY_WORKER_THREADS", 4),
            worker_poll_seconds=_number(env, "GATEWAY_WORKER_POLL_SECONDS", 0.5),
            http_attempts=_whole_number(env, "GATEWAY_HTTP_ATTEMPTS", 3),
            rate_time_scale=_number(env, "GATEWAY_RATE_TIME_SCALE", 1.0),
            idle_timeout_seconds=_whole_number(env, "GATEWAY_IDLE_TIMEOUT_SECONDS", 60),
            max_header_bytes=_whole_number(env, "GATEWAY_MAX_HEADER_BYTES", 65_536),
            serve_threads=_whole_number(env, "GATEWAY_THREADS", 8),
            connection_limit=_whole_number(env, "GATEWAY_CONNECTION_LIMIT", 200),
        )
        values.update(overrides)
        settings = cls(**values)
        if settings.database_url and not settings.database_url.startswith(
            ("sqlite:", "postgresql:", "postgresql+psycopg:")
        ):
            raise SettingsError(
                "GATEWAY_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL"
            )
        if settings.database_url:
            _check_database_url(settings.database_url)
        if settings.database_url and settings.database_url.startswith("postgresql"):
            if not settings.secret_key:
                raise SettingsError(
                    "GATEWAY_SECRET_KEY is required with PostgreSQL: it keys the encryption of "
                    "connector credentials and must be the same for every process"
                )
        return settings
