"""Is a certificate due for renewal? Pure functions of its dates, tags, policy triggers and now.

Trigger precedence: an operator override tag, then the policy's lifetime actions (read from the
policy, or from the ``renewal-policy-trigger`` tag the service mirrors so the sweep need not read
every policy), then the configured default fraction of the lifetime.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from renewal.model import LifetimeTrigger

OVERRIDE_DAYS_TAG = "renewal-days-before-expiry"
OVERRIDE_PERCENT_TAG = "renewal-lifetime-percentage"
MIRRORED_TRIGGER_TAG = "renewal-policy-trigger"
ISSUER_TAG = "renewal-issuer"


@dataclass(frozen=True)
class DueDecision:
    due: bool
    reason: str
    renew_at: dt.datetime | None
    trigger: str
    """Which rule decided: override-tag, policy, policy-tag, default, expired, unknown."""


def format_trigger(trigger: LifetimeTrigger) -> str:
    if trigger.days_before_expiry is not None:
        return f"days_before_expiry={trigger.days_before_expiry}"
    return f"lifetime_percentage={trigger.lifetime_percentage}"


def parse_trigger(text: str) -> LifetimeTrigger | None:
    key, _, value = text.partition("=")
    try:
        number = int(value)
    except ValueError:
        return None
    if key == "days_before_expiry" and number >= 1:
        return LifetimeTrigger(days_before_expiry=number)
    if key == "lifetime_percentage" and 1 <= number <= 99:
        return LifetimeTrigger(lifetime_percentage=number)
    return None


def _renew_at(trigger: LifetimeTrigger, not_before: dt.datetime, expires_on: dt.datetime) -> dt.datetime:
    if trigger.days_before_expiry is not None:
        return expires_on - dt.timedelta(days=trigger.days_before_expiry)
    percent = trigger.lifetime_percentage if trigger.lifetime_percentage is not None else 80
    return not_before + (expires_on - not_before) * (percent / 100)


def _override(tags: Mapping[str, str]) -> LifetimeTrigger | None:
    days, percent = tags.get(OVERRIDE_DAYS_TAG), tags.get(OVERRIDE_PERCENT_TAG)
    if days is not None:
        return parse_trigger(f"days_before_expiry={days}")
    if percent is not None:
        return parse_trigger(f"lifetime_percentage={percent}")
    return None


def resolve_triggers(
    tags: Mapping[str, str], policy_triggers: tuple[LifetimeTrigger, ...] | None
) -> tuple[tuple[LifetimeTrigger, ...], str]:
    override = _override(tags)
    if override is not None:
        return (override,), "override-tag"
    if policy_triggers:
        return policy_triggers, "policy"
    mirrored = parse_trigger(tags.get(MIRRORED_TRIGGER_TAG, ""))
    if mirrored is not None:
        return (mirrored,), "policy-tag"
    return (), "default"


def is_due(
    *,
    now: dt.datetime,
    not_before: dt.datetime | None,
    expires_on: dt.datetime | None,
    tags: Mapping[str, str] | None = None,
    policy_triggers: tuple[LifetimeTrigger, ...] | None = None,
    default_fraction: float = 2 / 3,
) -> DueDecision:
    tags = tags or {}
    if expires_on is None:
        return DueDecision(False, "the current version has no expiry date", None, "unknown")
    if expires_on <= now:
        return DueDecision(True, f"expired at {expires_on:%Y-%m-%d %H:%M}Z", expires_on, "expired")
    start = not_before or (expires_on - dt.timedelta(days=365))
    triggers, source = resolve_triggers(tags, policy_triggers)
    if triggers:
        renew_at = min(_renew_at(t, start, expires_on) for t in triggers)
        rule = ", ".join(format_trigger(t) for t in triggers)
    else:
        renew_at = start + (expires_on - start) * default_fraction
        rule = f"default {default_fraction:.0%} of lifetime"
    if renew_at <= now:
        return DueDecision(True, f"{rule} reached at {renew_at:%Y-%m-%d %H:%M}Z ({source})", renew_at, source)
    return DueDecision(False, f"{rule}: due at {renew_at:%Y-%m-%d %H:%M}Z ({source})", renew_at, source)
