"""Which unit voluntary work takes: never one with storage (unless allowed), the leader last."""

from __future__ import annotations

from collections.abc import Sequence

from whirlwind import model as model_view
from whirlwind.planner import core


def choose(
    context: core.Context, due: Sequence[model_view.UnitState]
) -> tuple[model_view.UnitState | None, list[str]]:
    """The victim among `due` (in order of preference) and what was skipped, and why.

    A unit with attached storage is skipped unless the policy says `storage: allow` (removal
    always keeps the storage). The application's leader goes only when it is the only unit
    due (for example over its max-age).
    """
    view = context.view
    skipped: list[str] = []
    eligible = []
    for unit in due:
        if unit.name in context.facts.busy_units:
            continue
        if unit.name in view.storage_units and context.policy.storage != "allow":
            skipped.append(f"{unit.name} has storage")
            continue
        eligible.append(unit)
    others = [u for u in eligible if u.name not in view.leaders]
    if others:
        leaders = [u.name for u in eligible if u.name in view.leaders]
        skipped += [f"{name} is the leader (last)" for name in leaders]
        return others[0], skipped
    return (eligible[0] if eligible else None), skipped
