"""The gates of an application: what holds its work back now (pure)."""

from __future__ import annotations

import datetime

from whirlwind import alerts
from whirlwind import policy as policy_mod
from whirlwind.planner import core, heal

REFUSED = "refused"
BREAKER = "breaker"
IN_FLIGHT = "in-flight"
PAUSED = "paused"
HEALTH = "health"
WINDOW = "window"
MASS_FAILURE = "mass-failure"
ALERTS = "alerts"


def get_common(context: core.Context) -> list[core.Gate]:
    """Gates for every trigger: the circuit breaker and an operation already in flight."""
    facts = context.facts
    breaker = facts.breakers.get(context.service, policy_mod.BreakerState())
    limit = context.settings.max_consecutive_failures
    return [
        core.Gate(BREAKER, breaker.is_open(limit), policy_mod.describe_breaker(breaker)
                  if breaker.failures else "closed"),
        core.Gate(IN_FLIGHT, context.service in facts.in_flight,
                  "a replacement is in flight" if context.service in facts.in_flight else "none"),
    ]  # fmt: skip


def get_health(context: core.Context, counts: core.Counts) -> core.Gate:
    """Voluntary work needs every unit healthy, or `min-healthy` percent of them."""
    detail = f"{counts.healthy} of {counts.live} units healthy"
    minimum = context.policy.min_healthy
    if minimum is None:
        ok = counts.healthy == counts.live and counts.dying == 0
        return core.Gate(HEALTH, not ok, detail + ("" if ok else "; voluntary work waits for all"))
    share = 100 * counts.healthy / counts.live if counts.live else 100.0
    ok = share >= minimum
    return core.Gate(HEALTH, not ok, f"{detail} (min-healthy {minimum}%)")


def get_paused(context: core.Context) -> core.Gate:
    """Pause holds voluntary work (and unit counts); healing has its own switch."""
    facts = context.facts
    detail = (facts.pause_text or "paused") if facts.paused else "running"
    return core.Gate(PAUSED, facts.paused, detail)


def get_mass_failure(context: core.Context, counts: core.Counts) -> core.Gate:
    """Healing stops while too many units are broken at once (heal.is_mass_failure)."""
    limit = f"{context.policy.heal_max_unhealthy:.0%}"
    detail = f"{counts.broken} of {counts.live} units broken (heals while at most {limit})"
    return core.Gate(MASS_FAILURE, heal.is_mass_failure(context, counts), detail)


def get_alerts(context: core.Context) -> core.Gate | None:
    """block-on-alerts: a matching alert (or Alertmanager unreachable) holds voluntary work.

    Healing and unit counts are never held; None when the option is not set.
    """
    facts = context.facts
    if facts.alerts is None:
        return None
    if facts.alerts_error:
        return core.Gate(ALERTS, True, f"Alertmanager unreachable: {facts.alerts_error}")
    return core.Gate(ALERTS, bool(facts.alerts), alerts.describe_firing(facts.alerts))


def get_window(context: core.Context) -> tuple[core.Gate, datetime.datetime | None]:
    """Whether the change window lets voluntary work start now, and when it opens if not."""
    schedule = context.policy.windows
    now = context.facts.now
    if schedule.always:
        return core.Gate(WINDOW, False, "no windows: always open"), None
    if schedule.is_open(now):
        closes = schedule.closes_at(now)
        until = f" until {format_clock(closes, now)}" if closes is not None else ""
        return core.Gate(WINDOW, False, f"open{until} ({schedule.text})"), None
    opens = schedule.opens_at(now)
    when = f"; opens {format_clock(opens, now)}" if opens is not None else ""
    return core.Gate(WINDOW, True, f"closed{when} ({schedule.text})"), opens


def format_clock(when: datetime.datetime, now: datetime.datetime) -> str:
    """12:00 UTC today, Mon 09:00 UTC within a week, else 2026-12-24 09:00 UTC."""
    when = when.astimezone(datetime.timezone.utc)
    if when.date() == now.astimezone(datetime.timezone.utc).date():
        return f"{when:%H:%M} UTC"
    if when - now < datetime.timedelta(days=6):
        return f"{when:%a %H:%M} UTC"
    return f"{when:%Y-%m-%d %H:%M} UTC"
