"""Trigger `count`: keep `units: N` live units; add one at a time when fewer, never remove."""

from __future__ import annotations

from whirlwind.planner import core


def propose(context: core.Context, counts: core.Counts) -> tuple[core.Proposal | None, list[str]]:
    """An add when fewer live units than wanted; a note when there are more."""
    wanted = context.policy.units
    if wanted is None:
        return None, []
    if counts.live > wanted:
        return None, [f"{counts.live} live units, more than units: {wanted} (nothing automatic)"]
    if counts.live == wanted:
        return None, []
    reason = f"{counts.live} live units, fewer than units: {wanted}"
    return core.Proposal(core.COUNT, context.service, None, reason, context.facts.now), []
