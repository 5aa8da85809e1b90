"""The planner: what is due, on which application and unit, and what holds work back (pure).

Every reason for an operation is a trigger with a module of its own (`heal`, `count`,
`age`, `rotate`); `make_plan` asks each of them for every target application and returns a
`Plan`: the operations due now in priority order (heal > count > age > rotate), and for every
target its counts, the gates that hold work back and what comes next. The engine only takes
operations from the plan and starts them; the status and the logs read the same plan, so
nothing decides twice.
"""

from __future__ import annotations

import dataclasses
import datetime

from whirlwind import model as model_view
from whirlwind import policy as policy_mod
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.planner import age, chaos, core, count, gates, heal, rotate
from whirlwind.planner.core import (
    AGE,
    COUNT,
    HEAL,
    PRIORITY,
    ROTATE,
    VOLUNTARY,
    Counts,
    Facts,
    Gate,
    Plan,
    Proposal,
    TargetPlan,
    Upcoming,
    get_counts,
    make_context,
)

__all__ = [
    "AGE", "COUNT", "HEAL", "PRIORITY", "ROTATE", "VOLUNTARY", "Counts", "Facts", "Gate",
    "Plan", "Proposal", "TargetPlan", "Upcoming", "make_context", "make_plan",
]  # fmt: skip


def make_plan(
    view: model_view.ModelView,
    settings: settings_mod.AgentSettings,
    facts: Facts,
    *,
    arming: arming_mod.Arming | None = None,
    chaos_facts: chaos.ChaosFacts | None = None,
) -> Plan:
    """The plan at `facts.now`: proposals due, and per target its gates and what comes next.

    With `arming` and `chaos_facts`, applications that opted in to failure injection also get
    their chaos plan (guard, draw, injection, next tick).
    """
    built: dict[str, dict[str, list]] = {}
    counts_of: dict[str, Counts] = {}
    rotation_ready: list[str] = []
    contexts = {}
    for service in settings.services:
        parts: dict[str, list] = {"proposals": [], "upcoming": [], "gates": [], "notes": []}
        built[service] = parts
        refusal = policy_mod.get_refusal(service, view, settings)
        if refusal is not None:
            counts_of[service] = Counts()
            parts["gates"].append(Gate(gates.REFUSED, True, refusal))
            parts["notes"].append(refusal)
            continue
        context = make_context(service, view, settings, facts)
        contexts[service] = context
        counts = counts_of[service] = get_counts(context)
        common = gates.get_common(context)
        blocked = any(gate.holds for gate in common)
        paused = gates.get_paused(context)
        health = gates.get_health(context, counts)
        window, opens = gates.get_window(context)
        mass = gates.get_mass_failure(context, counts)
        parts["gates"] += [*common, paused, health, window, mass]
        alerting = gates.get_alerts(context)
        if alerting is not None:
            parts["gates"].append(alerting)
            parts["notes"] += [alerting.detail] if alerting.holds else []
        # Restoring: heal (even while paused: it has its own switch; in windows only with
        # heal-in-windows), then the unit count.
        healing, upcoming, notes = heal.propose(context, counts)
        parts["upcoming"] += upcoming
        parts["notes"] += notes
        heal_held = window.holds and context.policy.heal_in_windows
        if healing is not None and heal_held and opens is not None:
            parts["upcoming"].append(Upcoming(HEAL, opens, f"{healing.reason}; window opens"))
        if healing is not None and not blocked and not heal_held:
            parts["proposals"].append(healing)
        adding, notes = count.propose(context, counts)
        parts["notes"] += notes
        if adding is not None and not blocked and not paused.holds:
            parts["proposals"].append(adding)
        # Voluntary: age or rotation, behind every gate (the window too).
        held = alerting is not None and alerting.holds
        voluntary_ok = not (blocked or paused.holds or health.holds or window.holds or held)
        policy = context.policy
        if window.holds and opens is not None and not paused.holds:
            trigger = AGE if policy.max_age > 0 else ROTATE
            parts["upcoming"].append(Upcoming(trigger, opens, "window opens"))
        if policy.max_age > 0:
            aging, upcoming, notes = age.propose(context)
            parts["upcoming"] += upcoming
            parts["notes"] += notes
            if aging is not None and voluntary_ok:
                parts["proposals"].append(aging)
        elif policy.own_interval:
            due = rotate.own_due(context)
            rotating, notes = rotate.propose(context, due)
            what = f"rotation of {service}" + (f"; {rotating.reason}" if rotating else "")
            parts["upcoming"].append(Upcoming(ROTATE, due, what))
            if due <= facts.now and voluntary_ok:
                parts["notes"] += notes
                if rotating is not None:
                    parts["proposals"].append(rotating)
        elif voluntary_ok:
            rotation_ready.append(service)
    rotation_due = _rotate_shared(settings, facts, contexts, rotation_ready, built)
    targets = []
    for service, parts in built.items():
        chaos_plan = None
        context = contexts.get(service)
        if context is not None and context.policy.chaos is not None and arming is not None:
            chaos_plan = _plan_chaos(context, arming, chaos_facts, parts["gates"])
            parts["upcoming"] += [chaos_plan.upcoming] if chaos_plan.upcoming else []
            parts["notes"] += list(chaos_plan.notes)
        proposals = sorted(parts["proposals"], key=lambda p: PRIORITY.index(p.trigger))
        targets.append(
            TargetPlan(
                service=service,
                counts=counts_of[service],
                proposals=tuple(proposals),
                upcoming=tuple(sorted(parts["upcoming"], key=lambda u: u.at)),
                gates=tuple(parts["gates"]),
                notes=tuple(parts["notes"]),
                chaos=chaos_plan,
            )
        )
    return Plan(now=facts.now, targets=tuple(targets), rotation_due=rotation_due)


# Gates of voluntary work that also hold chaos (the guard has its own for the rest).
_ALSO_HOLD_CHAOS = frozenset({gates.ALERTS})


def _plan_chaos(
    context: core.Context,
    arming: arming_mod.Arming,
    chaos_facts: chaos.ChaosFacts | None,
    target_gates: list[Gate],
) -> chaos.ChaosPlan:
    """The chaos plan, held (nothing drawn) while an alert gate holds voluntary work."""
    found = chaos.plan(context, arming, chaos_facts or chaos.ChaosFacts(seed=0))
    extra = tuple(g for g in target_gates if g.name in _ALSO_HOLD_CHAOS)
    if not extra:
        return found
    if any(g.holds for g in extra):
        return dataclasses.replace(found, gates=found.gates + extra, draw=None, proposal=None)
    return dataclasses.replace(found, gates=found.gates + extra)


def _rotate_shared(
    settings: settings_mod.AgentSettings,
    facts: Facts,
    contexts: dict,
    ready: list[str],
    built: dict[str, dict[str, list]],
) -> datetime.datetime | None:
    """The model-wide rotation: the next ready application in turn, once per interval.

    Returns when the rotation is due (None when no application takes part in it).
    """
    shared = [
        s
        for s in settings.services
        if s in contexts
        and contexts[s].policy.max_age <= 0
        and not contexts[s].policy.own_interval
    ]
    order = rotate.in_turn(shared, ready, facts.rotation_last_service)
    due = rotate.shared_due(facts, settings.interval)
    turn = order[0] if order else None  # only ready applications: held ones wait
    if due <= facts.now:
        for service in order:
            proposal, notes = rotate.propose(contexts[service], due)
            built[service]["notes"] += notes
            if proposal is not None:
                built[service]["proposals"].append(proposal)
                turn = service
                break
    if turn is not None:
        what = f"rotation: {turn} next"
        if due > facts.now:
            # Not due yet: which unit it would take now, for the plan (notes left out).
            would, _ = rotate.propose(contexts[turn], due)
            what += f"; {would.reason}" if would is not None else ""
        built[turn]["upcoming"].append(Upcoming(ROTATE, due, what))
    return due if shared else None
