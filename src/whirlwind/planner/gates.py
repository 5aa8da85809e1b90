"""The gates of an application: what holds its work back now (pure)."""

from __future__ import annotations

from whirlwind import policy as policy_mod
from whirlwind.planner import core

REFUSED = "refused"
BREAKER = "breaker"
IN_FLIGHT = "in-flight"
PAUSED = "paused"
HEALTH = "health"


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
    return core.Gate(PAUSED, context.facts.paused, "paused" if context.facts.paused else "running")
