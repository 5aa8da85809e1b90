"""Trigger `heal`: replace a unit broken for longer than `heal-after`, unless many are broken.

When more than `heal-max-unhealthy` of an application's units (and at least two) are broken
at once, the cause is probably not the units (network, controller, a bad charm release):
healing stops on that application until it drops below. Kubernetes' node lifecycle
controller does the same with a zone: once more than two of its nodes and at least 55% are
not ready ("PartialDisruption"), it slows evictions there, down to none in a small cluster.
"""

from __future__ import annotations

import datetime

from whirlwind.planner import core


def is_mass_failure(context: core.Context, counts: core.Counts) -> bool:
    """Whether too many units are broken to blame the units.

    One broken unit is never a mass failure: a single-unit application whose unit broke is
    what healing is for (Kubernetes, too, treats a zone with few nodes apart).
    """
    if counts.live == 0 or counts.broken < 2:
        return False
    return counts.broken / counts.live > context.policy.heal_max_unhealthy


def propose(
    context: core.Context, counts: core.Counts
) -> tuple[core.Proposal | None, list[core.Upcoming], list[str]]:
    """The heal due now (the unit broken longest), what comes next, and notes."""
    if not context.policy.heal:
        return None, [], []
    broken = []
    for unit in context.units:
        watch = context.facts.watches.get(unit.name)
        if watch is None or watch.broken_since is None or unit.name in context.facts.busy_units:
            continue
        broken.append((watch.broken_since, unit.name, watch.reason))
    if not broken:
        return None, [], []
    if is_mass_failure(context, counts):
        share = f"{counts.broken} of {counts.live}"
        limit = f"{context.policy.heal_max_unhealthy:.0%}"
        return None, [], [f"mass failure: {share} units broken (more than {limit}): not healing"]
    since, name, reason = min(broken)
    due = since + datetime.timedelta(seconds=context.policy.heal_after)
    what = f"{name} broken since {since:%H:%M:%S} UTC ({reason})"
    if context.facts.now < due:
        return None, [core.Upcoming(core.HEAL, due, what)], []
    return core.Proposal(core.HEAL, context.service, name, what, due), [], []
