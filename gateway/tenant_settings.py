"""Per-tenant settings: one typed object with defaults, validated on every change.

Only the keys a tenant set explicitly are stored; everything else comes from :data:`DEFAULTS`,
so a later release can improve a default for every tenant that did not choose otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from marshmallow import INCLUDE, Schema, ValidationError, validate, validates_schema
from marshmallow import fields as mf

from gateway.money import ISO_4217

#: Routes whose pull interval can be set; the relay schedules these.
PULL_ROUTES = ("rci-customers", "rekindle-poll", "rescore")


@dataclass(frozen=True)
class TenantSettings:
    base_currency: str = "USD"
    consent_basis: str = "consent"  # "consent" or "lawful_basis"
    default_gap_days: int = 60
    at_risk_after: float = 1.5
    lapsed_after: float = 3.0
    lost_after: float = 6.0
    attribution_window_days: int = 30
    scoring_authority: str = "gateway"  # "gateway" or "rekindle"
    api_rate_limit_per_minute: int = 120
    allow_private_targets: bool = False
    pull_interval_minutes: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PULL_INTERVALS))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in fields(self)}


DEFAULT_PULL_INTERVALS = {"rci-customers": 60, "rekindle-poll": 15, "rescore": 1440}
DEFAULTS = TenantSettings()
KEYS = tuple(f.name for f in fields(TenantSettings))


class TenantSettingsSchema(Schema):
    """Validates a partial change; unknown keys are an error naming the known ones."""

    base_currency = mf.String(validate=validate.OneOf(sorted(ISO_4217),
                                                      error="must be an ISO 4217 code, e.g. USD"))
    consent_basis = mf.String(validate=validate.OneOf(["consent", "lawful_basis"]))
    default_gap_days = mf.Integer(strict=True, validate=validate.Range(min=1, max=3650))
    at_risk_after = mf.Float(validate=validate.Range(min=0.1, max=100))
    lapsed_after = mf.Float(validate=validate.Range(min=0.1, max=100))
    lost_after = mf.Float(validate=validate.Range(min=0.1, max=100))
    attribution_window_days = mf.Integer(strict=True, validate=validate.Range(min=1, max=365))
    scoring_authority = mf.String(validate=validate.OneOf(["gateway", "rekindle"]))
    api_rate_limit_per_minute = mf.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    allow_private_targets = mf.Boolean()
    pull_interval_minutes = mf.Dict(
        keys=mf.String(validate=validate.OneOf(PULL_ROUTES)),
        values=mf.Integer(strict=True, validate=validate.Range(min=1, max=10_080)),
    )

    @validates_schema
    def _check_unknown(self, data: dict, **kwargs: Any) -> None:
        unknown = set(data) - set(KEYS)
        if unknown:
            raise ValidationError(
                {k: [f"unknown setting; known settings: {', '.join(KEYS)}"] for k in unknown}
            )

    class Meta:
        unknown = INCLUDE


def resolve(stored: Mapping[str, Any] | None) -> TenantSettings:
    """The effective settings: stored values over the defaults."""
    values = dict(stored or {})
    if "base_currency" in values:
        values["base_currency"] = values["base_currency"].upper()
    pulls = dict(DEFAULT_PULL_INTERVALS)
    pulls.update(values.pop("pull_interval_minutes", None) or {})
    return TenantSettings(**{k: v for k, v in values.items() if k in KEYS},
                          pull_interval_minutes=pulls)


def apply_changes(stored: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``changes`` and return the new stored mapping; raises marshmallow's
    ``ValidationError`` (its ``messages`` keyed by setting) for an unknown key or a bad value."""
    if isinstance(changes.get("base_currency"), str):
        changes = {**changes, "base_currency": changes["base_currency"].strip().upper()}
    loaded = TenantSettingsSchema().load(dict(changes))
    merged = dict(stored or {})
    for key, value in loaded.items():
        if key == "pull_interval_minutes":
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    effective = resolve(merged)
    if not effective.at_risk_after < effective.lapsed_after < effective.lost_after:
        raise ValidationError(
            {"at_risk_after": ["thresholds must rise: at_risk_after < lapsed_after < lost_after"]}
        )
    return merged


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` words from the command line; a value is read as JSON when it is JSON
    (``60``, ``true``, ``{"rci-customers": 30}``) and as a plain string otherwise."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError({pair: ["expected KEY=VALUE"]})
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes[key.strip()] = value
    return changes
