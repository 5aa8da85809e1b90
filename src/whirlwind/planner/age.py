"""Trigger `age`: retire units older than `max-age`, oldest first, one per interval.

Each unit's limit is spread by a stable jitter of up to 10 % derived from its name, so units
added together do not all expire together. A unit's age comes from its `whirlwind/born`
annotation, else from when its machine started (the instance status's `since`), else from
when the agent first saw it: a lower bound, so a unit is never retired early.
"""

from __future__ import annotations

import datetime
import hashlib

from whirlwind import model as model_view
from whirlwind.planner import core, victims

JITTER = 0.10


def jitter(unit: str) -> float:
    """A stable fraction in [0, JITTER) for `unit` (the same on every agent, every run)."""
    digest = hashlib.sha256(unit.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * JITTER


def expiry(context: core.Context, unit: model_view.UnitState) -> datetime.datetime | None:
    """When `unit` is due: birth + max-age, stretched by its jitter."""
    born = core.get_birth(context, unit)
    if born is None:
        return None
    limit = context.policy.max_age * (1.0 + jitter(unit.name))
    return born + datetime.timedelta(seconds=limit)


def next_allowed(context: core.Context) -> datetime.datetime | None:
    """Pacing: at most one voluntary replacement per interval on the application."""
    last = context.facts.last_voluntary.get(context.service)
    return None if last is None else last + datetime.timedelta(seconds=context.policy.interval)


def propose(
    context: core.Context,
) -> tuple[core.Proposal | None, list[core.Upcoming], list[str]]:
    """The oldest unit past its limit (leader last, storage skipped), or when the next is."""
    if context.policy.max_age <= 0:
        return None, [], []
    now = context.facts.now
    due: list[tuple[datetime.datetime, model_view.UnitState]] = []
    upcoming: list[core.Upcoming] = []
    for unit in context.units:
        if unit.life != model_view.ALIVE or unit.name in context.facts.busy_units:
            continue
        when = expiry(context, unit)
        if when is None:
            continue
        if when <= now:
            due.append((when, unit))
        else:
            upcoming.append(core.Upcoming(core.AGE, when, f"{unit.name} reaches max-age"))
    upcoming = sorted(upcoming, key=lambda u: u.at)[:1]
    if not due:
        return None, upcoming, []
    due.sort(key=lambda item: (item[0], item[1].number))
    victim, skipped = victims.choose(context, [unit for _, unit in due])
    notes = [f"age: skipped {', '.join(skipped)}"] if skipped else []
    if victim is None:
        return None, upcoming, notes
    allowed = next_allowed(context)
    when = dict((u.name, w) for w, u in due)[victim.name]
    born = core.get_birth(context, victim)
    age = now - born if born is not None else datetime.timedelta(0)
    reason = f"{victim.name} is {_describe_age(age)} old, over max-age"
    if allowed is not None and allowed > now:
        return None, [core.Upcoming(core.AGE, allowed, reason), *upcoming], notes
    return core.Proposal(core.AGE, context.service, victim.name, reason, when), [], notes


def _describe_age(age: datetime.timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"
