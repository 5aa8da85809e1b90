"""The chaos guard: every condition that must hold before an injection, as planner gates (pure).

Chaos is off unless all of these let it: the application opted in (`chaos` in its
policies), an operator armed it and the arming has not ended, the model is not the
controller model, Whirlwind may touch the application at all (not its own, not a
subordinate, in the model and alive), Whirlwind is not paused and the application's window
is open, every unit is healthy and there are at least 2 (or the chaos policy's
`min-healthy` says how many may be down), nothing is in flight on it and its circuit
breaker is closed, fewer than `max-per-day` injections happened in the last 24 hours, and
no earlier injection is still in effect on it. Each gate is computed alone, so each can be
shown and tested alone; a gate that `holds` holds chaos back.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from whirlwind import policy as policy_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.chaos import draws as draws_mod
from whirlwind.chaos import policy as chaos_policy
from whirlwind.planner import core, gates

OPTED_IN = "opted-in"
ARMED = "armed"
CONTROLLER_MODEL = "controller-model"
HEALTH = "health"
MAX_PER_DAY = "max-per-day"
ACTIVE = "active"
# Without min-healthy, chaos needs this many units, all healthy: one is always left.
MIN_UNITS = 2


def get_opted_in(context: core.Context) -> core.Gate:
    """The application has a `chaos` entry in its policies."""
    chaos = context.policy.chaos
    if chaos is None:
        return core.Gate(OPTED_IN, True, "not opted in (no chaos in its policies)")
    return core.Gate(OPTED_IN, False, f"opted in: {', '.join(chaos.kinds)}")


def get_armed(arming: arming_mod.Arming, now: datetime.datetime) -> core.Gate:
    """An operator armed chaos, and the arming has not ended."""
    if not arming.armed or arming.until is None:
        return core.Gate(ARMED, True, "chaos not armed (run arm-chaos)")
    until = gates.format_clock(arming.until, now)
    if not arming.is_armed(now):
        return core.Gate(ARMED, True, f"chaos arming ended at {until} (run arm-chaos)")
    by = f" by {arming.by}" if arming.by else ""
    dry = " (dry-run)" if arming.dry_run else ""
    return core.Gate(ARMED, False, f"chaos armed until {until}{by}{dry}")


def get_model(context: core.Context) -> core.Gate:
    """Never in the controller model (nor before the model's own information came)."""
    view = context.view
    if not view.model_seen:
        return core.Gate(CONTROLLER_MODEL, True, "the model's own information has not arrived")
    if view.is_controller_model:
        return core.Gate(CONTROLLER_MODEL, True, "the controller model: chaos never runs there")
    name = f" ({view.model_name})" if view.model_name else ""
    return core.Gate(CONTROLLER_MODEL, False, f"not the controller model{name}")


def get_refused(context: core.Context) -> core.Gate:
    """Whirlwind may touch the application at all (policy.get_refusal; the model aside)."""
    view = context.view
    refusal = policy_mod.get_refusal(context.service, view, context.settings)
    if refusal is None or not view.model_seen or view.is_controller_model:
        return core.Gate(gates.REFUSED, False, "none")
    return core.Gate(gates.REFUSED, True, refusal)


def get_health(context: core.Context, counts: core.Counts) -> core.Gate:
    """Every unit healthy and at least 2, or enough stay healthy for the policy's min-healthy.

    With `min-healthy: P%` in the chaos policy, the units left healthy once the victim is
    down (one fewer than now) must be at least P percent of the live units.
    """
    chaos = context.policy.chaos
    minimum = chaos.min_healthy if chaos is not None else None
    detail = f"{counts.healthy} of {counts.live} units healthy"
    if minimum is None:
        if counts.live < MIN_UNITS:
            why = f"chaos needs at least {MIN_UNITS} units (or min-healthy in its chaos policy)"
            return core.Gate(HEALTH, True, f"{detail}; {why}")
        ok = counts.healthy == counts.live and counts.dying == 0
        return core.Gate(HEALTH, not ok, detail + ("" if ok else "; chaos waits for all"))
    left = counts.healthy - 1
    ok = counts.healthy >= 1 and 100 * left >= minimum * counts.live
    after = f"{max(left, 0)} would stay healthy (min-healthy {minimum}%)"
    return core.Gate(HEALTH, not ok, f"{detail}; {after}")


def get_daily(
    context: core.Context, draws: Sequence[draws_mod.Draw], now: datetime.datetime
) -> core.Gate:
    """Fewer than max-per-day injections on the application in the last 24 hours.

    Dry-run injections count too: a dry run shows what an armed run would do.
    """
    chaos = context.policy.chaos
    most = chaos.max_per_day if chaos is not None else chaos_policy.DEFAULT_MAX_PER_DAY
    times = [d.at for d in draws if d.service == context.service and d.inject]
    count = draws_mod.count_recent(times, now)
    detail = f"{count} of {most} injections in the last 24 h"
    allowed = draws_mod.next_allowed(times, now, most)
    if allowed is None:
        return core.Gate(MAX_PER_DAY, False, detail)
    return core.Gate(
        MAX_PER_DAY, True, f"{detail}; next allowed {gates.format_clock(allowed, now)}"
    )


def get_active(
    context: core.Context, draws: Sequence[draws_mod.Draw], now: datetime.datetime
) -> core.Gate:
    """No earlier injection with a duration is still in effect on the application."""
    running = [
        d
        for d in draws
        if d.service == context.service and d.inject and d.until is not None and d.until > now
    ]
    if not running:
        return core.Gate(ACTIVE, False, "no injection in effect")
    last = max(running, key=lambda d: d.at)
    until = gates.format_clock(last.until or now, now)
    return core.Gate(ACTIVE, True, f"{last.kind} on {last.victim} until {until}")


def get_gates(
    context: core.Context,
    counts: core.Counts,
    arming: arming_mod.Arming,
    draws: Sequence[draws_mod.Draw],
) -> list[core.Gate]:
    """Every chaos gate of the application, in the order an operator reads them."""
    now = context.facts.now
    window, _ = gates.get_window(context)
    return [
        get_opted_in(context),
        get_armed(arming, now),
        get_model(context),
        get_refused(context),
        gates.get_paused(context),
        window,
        get_health(context, counts),
        *gates.get_common(context),
        get_daily(context, draws, now),
        get_active(context, draws, now),
    ]
