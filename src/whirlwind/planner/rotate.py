"""Trigger `rotate`: the interval round-robin (the oldest unit of the next application).

Applications without an interval of their own share the model-wide rotation: one replacement
per `interval`, round-robin over them in configured order. One with `interval` in its policy
has its own timer. Applications with `max-age` set are paced by the age trigger instead.

The leader goes last within its generation: units born together (within half an interval of
the oldest unit, as when an application is deployed) are due together, and the leader is
replaced only when it is the last of them. Rotation makes units at least an interval apart,
so afterwards each unit is its own generation and goes in its turn, oldest first: the leader
is never kept for ever, and leadership does not move more often than the leader's turn.
With `strategy: random` the victim is any unit (the leader still only when no other can go).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence

from whirlwind import model as model_view
from whirlwind.planner import core, victims


def own_due(context: core.Context) -> datetime.datetime:
    """When an application with its own interval is next due."""
    last = context.facts.last_voluntary.get(context.service) or context.facts.agent_started
    return last + datetime.timedelta(seconds=context.policy.interval)


def shared_due(facts: core.Facts, interval: int) -> datetime.datetime:
    """When the model-wide rotation is next due."""
    base = facts.rotation_last_run or facts.agent_started
    return base + datetime.timedelta(seconds=interval)


def in_turn(services: Sequence[str], ready: Sequence[str], last: str | None) -> list[str]:
    """Ready applications in round-robin order after `last`."""
    if not services:
        return []
    start = services.index(last) + 1 if last in services else 0
    order = [services[(start + i) % len(services)] for i in range(len(services))]
    return [s for s in order if s in ready]


def by_birth(
    context: core.Context, units: Sequence[model_view.UnitState]
) -> tuple[list[model_view.UnitState], int]:
    """`units` oldest first, and how many of them are the oldest generation.

    The oldest generation: units born within half an interval of the oldest one (a unit
    whose birth is unknown counts as oldest).
    """
    births = {u.name: core.get_birth(context, u) for u in units}
    floor = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    ordered = sorted(units, key=lambda u: (births[u.name] or floor, u.number))
    known = [b for b in births.values() if b is not None]
    if not known:
        return ordered, len(ordered)
    limit = min(known) + datetime.timedelta(seconds=context.policy.interval / 2)
    size = sum(1 for u in ordered if (births[u.name] or floor) < limit)
    return ordered, size


def propose(
    context: core.Context, due: datetime.datetime
) -> tuple[core.Proposal | None, list[str]]:
    """A rotation of this application's oldest unit (leader last, storage skipped) if due."""
    candidates = [
        u
        for u in context.units
        if u.life == model_view.ALIVE and u.name not in context.facts.busy_units
    ]
    ordered, generation = by_birth(context, candidates)
    if context.settings.strategy == "random":
        # Any unit, in an order that is random but the same for the same moment (pure).
        stamp = context.facts.now.isoformat()
        ordered = sorted(
            ordered, key=lambda u: hashlib.sha256(f"{u.name}@{stamp}".encode()).digest()
        )
        generation = len(ordered)
    victim, skipped = victims.choose(context, ordered[:generation])
    if victim is None:
        # Nothing of the oldest generation can go (storage): the next oldest that can.
        victim, skipped = victims.choose(context, ordered)
    notes = [f"rotate: skipped {', '.join(skipped)}"] if skipped else []
    if victim is None:
        return None, [*notes, "no unit can be replaced"]
    how = "chosen at random" if context.settings.strategy == "random" else "the oldest unit"
    reason = f"{victim.name} is {how} (rotation every {context.policy.interval}s)"
    return core.Proposal(core.ROTATE, context.service, victim.name, reason, due), notes
