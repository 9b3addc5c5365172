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
        )
        values.update(overrides)
        settings = cls(**values)
        if settings.database_url and not settings.database_url.startswith(
            ("sqlite:", "postgresql:", "postgresql+psycopg:")
        ):
            raise SettingsError(
                "GATEWAY_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL"
            )
        if settings.database_url and settings.database_url.startswith("postgresql"):
            if not settings.secret_key:
                raise SettingsError(
                    "GATEWAY_SECRET_KEY is required with PostgreSQL: it keys the encryption of "
                    "connector credentials and must be the same for every process"
                )
        return settings
