"""The plan as operators read it: kebab-case data and one line per target (pure).

Nothing is decided here: every field comes from the planner's Plan (what is due, what comes
next, every gate and whether it holds, the unit counts, the notes).
"""

from __future__ import annotations

import datetime
from typing import Any

from whirlwind import planner, windows
from whirlwind.planner import chaos as planner_chaos
from whirlwind.planner import gates

# The history's name of each trigger (the rotation was, and stays, "interval").
TRIGGER_NAMES = {
    planner.HEAL: "heal",
    planner.COUNT: "count",
    planner.AGE: "age",
    planner.ROTATE: "interval",
    planner_chaos.CHAOS: "chaos",
}


def describe_plan(plan: planner.Plan, *, paused: bool = False) -> dict[str, Any]:
    """The whole plan: when it was made, and every target's next step, gates and counts."""
    targets = [describe_target(t, plan.now, paused=paused) for t in plan.targets]
    return {
        "now": plan.now.isoformat(),
        "targets": targets,
        "message": "\n".join(t["summary"] for t in targets) or "no targets (services is empty)",
    }


def describe_target(
    target: planner.TargetPlan, now: datetime.datetime, *, paused: bool = False
) -> dict[str, Any]:
    """One target: the next trigger and when, the victim and why, gates, counts, notes."""
    due = list(target.proposals[:1])
    if paused:
        due = [p for p in due if p.trigger == planner.HEAL]
    upcoming = [
        u for u in target.upcoming if not paused or u.trigger == planner.HEAL
    ]  # paused: only healing goes on
    if due:
        proposal = due[0]
        at = now
        nxt: dict[str, Any] | None = {
            "trigger": TRIGGER_NAMES[proposal.trigger],
            "at": at.isoformat(),
            "due": True,
            "what": proposal.reason,
        }
        victim, why = proposal.victim, proposal.reason
    elif upcoming:
        first = upcoming[0]
        nxt = {
            "trigger": TRIGGER_NAMES[first.trigger],
            "at": max(first.at, now).isoformat(),
            "due": first.at <= now,
            "what": first.what,
        }
        victim, why = None, first.what
    else:
        nxt, victim, why = None, None, ""
    counts = target.counts
    result: dict[str, Any] = {
        "service": target.service,
        "next": nxt,
        "victim": victim,
        "why": why,
        "gates": {
            gate.name: {"holds": gate.holds, "detail": gate.detail} for gate in target.gates
        },
        "units": {
            "live": counts.live,
            "healthy": counts.healthy,
            "settling": counts.settling,
            "broken": counts.broken,
            "dying": counts.dying,
            "wanted": counts.wanted,
        },
        "notes": list(target.notes),
    }
    if target.chaos is not None:
        result["chaos"] = describe_chaos(target.chaos)
    result["summary"] = summarize(target, nxt, now)
    return result


def describe_chaos(chaos: planner_chaos.ChaosPlan) -> dict[str, Any]:
    """Failure injection on a target: its guard, the next tick, and an injection due now."""
    proposal = chaos.proposal
    return {
        "gates": {gate.name: {"holds": gate.holds, "detail": gate.detail} for gate in chaos.gates},
        "holding": [f"{gate.name}: {gate.detail}" for gate in chaos.holding],
        "next-tick": chaos.upcoming.at.isoformat() if chaos.upcoming is not None else None,
        "injection": None
        if proposal is None
        else {
            "kind": proposal.kind,
            "unit": proposal.unit,
            "machine": proposal.machine,
            "why": proposal.reason,
            "dry-run": proposal.dry_run,
        },
    }


def summarize(
    target: planner.TargetPlan, nxt: dict[str, Any] | None, now: datetime.datetime
) -> str:
    """`wsgi-example: age due now (wsgi-example/3 is 8d old, over max-age); 3/3 healthy`."""
    parts = []
    if nxt is None:
        parts.append("nothing planned")
    else:
        at = datetime.datetime.fromisoformat(nxt["at"])
        when = "due now" if nxt["due"] or at <= now else f"at {gates.format_clock(at, now)}"
        parts.append(f"{nxt['trigger']} {when} ({nxt['what']})")
    holding = [
        f"{gate.name}: {gate.detail}"
        for gate in target.holding
        if gate.name not in (gates.REFUSED,)  # a refusal is the note below
    ]
    parts += holding
    counts = target.counts
    if target.counts != planner.Counts():
        wanted = f" (units: {counts.wanted})" if counts.wanted is not None else ""
        parts.append(f"{counts.healthy}/{counts.live} healthy{wanted}")
    parts += list(target.notes)
    return f"{target.service}: " + "; ".join(parts)


def describe_window(schedule: windows.Schedule, now: datetime.datetime) -> dict[str, Any]:
    """The model-wide change window now: open or not, and until or from when (for status)."""
    if schedule.always:
        return {"open": True, "windows": "", "detail": "no windows"}
    if schedule.is_open(now):
        closes = schedule.closes_at(now)
        detail = (
            f"window open until {gates.format_clock(closes, now)}" if closes else "window open"
        )
        return {"open": True, "windows": schedule.text, "detail": detail}
    opens = schedule.opens_at(now)
    detail = f"window closed; opens {gates.format_clock(opens, now)}" if opens else "window closed"
    return {"open": False, "windows": schedule.text, "detail": detail}
