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

from connectors import jsontext
from gateway.money import ISO_4217

#: Routes whose pull interval can be set; the relay schedules these.
PULL_ROUTES = ("rci-customers", "rekindle-poll", "rescore")

#: The relay routes a tenant can switch on or off (the design's "Default relay routes"): the
#: event routes of :mod:`gateway.relay.routes` and the scheduled pulls. All are on by default.
SWITCHABLE_ROUTES = ("rci-customers", "orders", "products", "consent", "customers", "winback",
                     "erasure", "rekindle-poll")


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
    routes: Mapping[str, bool] = field(default_factory=lambda: dict(DEFAULT_ROUTES))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v)
                for f in fields(self)}


DEFAULT_PULL_INTERVALS = {"rci-customers": 60, "rekindle-poll": 15, "rescore": 1440}
DEFAULT_ROUTES = {route: True for route in SWITCHABLE_ROUTES}
DEFAULTS = TenantSettings()
KEYS = tuple(f.name for f in fields(TenantSettings))


#: The rule the three status thresholds obey, as the schema describes it.
RISING = ("The thresholds must rise: at_risk_after < lapsed_after < lost_after, "
          "compared after the change is merged with the current settings; a change "
          "that breaks the order is refused and changes nothing.")


class _Switch(mf.Boolean):
    """A route's switch: JSON ``true`` or ``false`` only (not ``"yes"``, not ``1``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class TenantSettingsSchema(Schema):
    """Validates a partial change; unknown keys are an error naming the known ones."""

    base_currency = mf.String(
        validate=validate.OneOf(sorted(ISO_4217), error="must be an ISO 4217 code, e.g. USD"),
        metadata={"description": "the ISO 4217 currency lifetime values are summed in (given in "
                                 "any case, stored upper-case); other currencies are kept apart",
                  "example": "USD"})
    consent_basis = mf.String(
        validate=validate.OneOf(["consent", "lawful_basis"]),
        metadata={"description": "who Replenit may receive: `consent` (customers with recorded "
                                 "processing consent) or `lawful_basis` (every customer: the "
                                 "tenant declares a lawful basis)"})
    default_gap_days = mf.Integer(
        strict=True, validate=validate.Range(min=1, max=3650),
        metadata={"description": "expected days between orders for a customer with fewer than "
                                 "two orders"})
    at_risk_after = mf.Float(
        validate=validate.Range(min=0.1, max=100),
        metadata={"description": "a customer is `at_risk` once the time since their last order "
                                 f"exceeds this multiple of their expected gap. {RISING}"})
    lapsed_after = mf.Float(
        validate=validate.Range(min=0.1, max=100),
        metadata={"description": "a customer is `lapsed` past this multiple of their expected "
                                 f"gap. {RISING}"})
    lost_after = mf.Float(
        validate=validate.Range(min=0.1, max=100),
        metadata={"description": "a customer is `lost` past this multiple of their expected "
                                 f"gap. {RISING}"})
    attribution_window_days = mf.Integer(
        strict=True, validate=validate.Range(min=1, max=365),
        metadata={"description": "how many days after a win-back message an order counts as "
                                 "the customer's return"})
    scoring_authority = mf.String(
        validate=validate.OneOf(["gateway", "rekindle"]),
        metadata={"description": "whose engagement statuses count: the gateway's own scoring "
                                 "or Rekindle's"})
    api_rate_limit_per_minute = mf.Integer(
        strict=True, validate=validate.Range(min=1, max=100_000),
        metadata={"description": "requests a minute each API key of the tenant may make (429 "
                                 "with Retry-After above)"})
    allow_private_targets = mf.Boolean(
        metadata={"description": "allow hook targets and connection base URLs on private "
                                 "addresses and plain http (tests, local development)"})
    pull_interval_minutes = mf.Dict(
        keys=mf.String(validate=validate.OneOf(PULL_ROUTES)),
        values=mf.Integer(strict=True, validate=validate.Range(min=1, max=10_080)),
        metadata={
            "description": "minutes between scheduled runs, per route: an object from route "
                           f"name ({', '.join(PULL_ROUTES)}) to a whole number of minutes "
                           "(1 to 10080). A change is merged per route: routes it does not "
                           "name keep their interval",
            "properties": {route: {"type": "integer", "minimum": 1, "maximum": 10_080}
                           for route in PULL_ROUTES},
            "additionalProperties": False,
            "example": {"rci-customers": 30},
        })
    routes = mf.Dict(
        keys=mf.String(validate=validate.OneOf(SWITCHABLE_ROUTES)),
        values=_Switch(),
        metadata={
            "description": "which relay routes run for the tenant: an object from route name "
                           f"({', '.join(SWITCHABLE_ROUTES)}) to true (on) or false (off); "
                           "every route is on unless switched off. A change is merged per "
                           "route: routes it does not name keep their switch",
            "properties": {route: {"type": "boolean"} for route in SWITCHABLE_ROUTES},
            "additionalProperties": False,
            "example": {"winback": False},
        })

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
    switches = dict(DEFAULT_ROUTES)
    switches.update({k: v for k, v in (values.pop("routes", None) or {}).items()
                     if k in DEFAULT_ROUTES})
    return TenantSettings(**{k: v for k, v in values.items() if k in KEYS},
                          pull_interval_minutes=pulls, routes=switches)


def apply_changes(stored: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``changes`` and return the new stored mapping; raises marshmallow's
    ``ValidationError`` (its ``messages`` keyed by setting) for an unknown key or a bad value."""
    if isinstance(changes.get("base_currency"), str):
        changes = {**changes, "base_currency": changes["base_currency"].strip().upper()}
    loaded = TenantSettingsSchema().load(dict(changes))
    merged = dict(stored or {})
    for key, value in loaded.items():
        if key in ("pull_interval_minutes", "routes"):
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
    (``60``, ``true``, ``{"rci-customers": 30}``) and as a plain string otherwise.

    JSON nested deeper than :data:`connectors.jsontext.MAX_DEPTH` is refused before it is
    parsed, as is a number the parser will not convert (an integer of thousands of digits):
    both raise marshmallow's ``ValidationError`` keyed by the setting, like any bad value."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError({pair[:100]: ["expected KEY=VALUE"]})
        try:
            value = jsontext.loads_bounded(raw)
        except jsontext.JsonDepthError as exc:
            raise ValidationError({key.strip(): [str(exc)]}) from None
        except json.JSONDecodeError:
            value = raw
        except ValueError as exc:  # e.g. an integer longer than int() converts
            raise ValidationError({key.strip(): [f"not a usable value: {exc}"]}) from None
        changes[key.strip()] = value
    return changes
