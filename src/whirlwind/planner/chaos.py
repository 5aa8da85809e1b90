"""Trigger `chaos`: at each chaos tick of an armed application, maybe inject one failure.

Ticks and draws are chaos/draws.py's: tick n is due `n * interval` after the arming time
(the chaos policy's `interval`, else the application's), is decided at most once, and only
while every gate of the guard (chaos/guard.py) lets it. A decided tick gives a `Draw` for the
engine to journal (whether it injects or not: pattern counts eligible ticks, replay needs
them all) and, when it injects, a `ChaosProposal`.

The victim is chosen by the seeded draw among the candidates, in unit-number order: healthy
units that are not busy, whose machine is their own (no other principal unit, no container:
every kind acts on the whole machine), without storage for kill-unit and kill-machine unless
the policy says `storage: allow`; the leader only when no other unit can take it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from whirlwind import model as model_view
from whirlwind import policies
from whirlwind import policy as policy_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.chaos import draws as draws_mod
from whirlwind.chaos import guard
from whirlwind.chaos import policy as chaos_policy
from whirlwind.chaos import wrench as wrench_mod
from whirlwind.planner import core, health

CHAOS = "chaos"
VICTIMS = "victims"


@dataclasses.dataclass(frozen=True)
class ChaosFacts:
    """What chaos needs besides the planner's facts: the seed and the draws recorded so far.

    `draws` are every application's, at least those of the last 24 hours (max-per-day) and
    of the current arming (pattern positions, ticks already decided).
    """

    seed: int
    draws: tuple[draws_mod.Draw, ...] = ()


@dataclasses.dataclass(frozen=True)
class ChaosProposal:
    """One injection: its kind, victim unit and machine, why, and how long it lasts."""

    service: str
    kind: str
    unit: str
    machine: str
    reason: str
    tick: int
    due: datetime.datetime
    # For stop-agent, slow-network and wrench (None for kill-unit and kill-machine).
    duration: int | None = None
    delay_ms: int | None = None
    wrench: wrench_mod.Point | None = None
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class ChaosPlan:
    """Chaos for one application now: its gates, the draw to record, the injection, next tick."""

    service: str
    gates: tuple[core.Gate, ...] = ()
    draw: draws_mod.Draw | None = None
    proposal: ChaosProposal | None = None
    upcoming: core.Upcoming | None = None
    notes: tuple[str, ...] = ()

    @property
    def holding(self) -> tuple[core.Gate, ...]:
        """The gates that hold chaos back now."""
        return tuple(gate for gate in self.gates if gate.holds)


def owns_machine(view: model_view.ModelView, unit: model_view.UnitState) -> bool:
    """Whether `unit`'s machine is its own: no other principal, no container, no controller."""
    machine_id = unit.machine_id
    if machine_id is None or not policy_mod.is_dedicated_machine(view, machine_id, unit.name):
        return False
    return not any(other.startswith(f"{machine_id}/") for other in view.machines)


def get_candidates(context: core.Context, kind: str) -> tuple[list[str], list[str]]:
    """The units that could take `kind` (in order), and why the others cannot."""
    view = context.view
    ok: list[model_view.UnitState] = []
    skipped: list[str] = []
    for unit in context.units:
        if context.conditions[unit.name][0] != health.HEALTHY or context.is_broken(unit.name):
            continue
        if unit.name in context.facts.busy_units:
            skipped.append(f"{unit.name} is busy")
        elif not owns_machine(view, unit):
            skipped.append(f"{unit.name} shares its machine")
        elif (
            kind in chaos_policy.DESTRUCTIVE
            and unit.name in view.storage_units
            and context.policy.storage != "allow"
        ):
            skipped.append(f"{unit.name} has storage ({kind})")
        else:
            ok.append(unit)
    others = [u for u in ok if u.name not in view.leaders]
    if others and len(others) < len(ok):
        skipped += [f"{u.name} is the leader" for u in ok if u.name in view.leaders]
    chosen = sorted(others or ok, key=lambda u: u.number)
    return [u.name for u in chosen], skipped


def get_victims(
    context: core.Context, kinds: tuple[str, ...]
) -> tuple[dict[str, list[str]], core.Gate]:
    """Candidates for each kind, and the gate that holds when no kind has any."""
    options: dict[str, list[str]] = {}
    reasons: list[str] = []
    for kind in kinds:
        options[kind], skipped = get_candidates(context, kind)
        reasons += [r for r in skipped if r not in reasons]
    units = sorted({name for names in options.values() for name in names})
    if units:
        return options, core.Gate(VICTIMS, False, f"can take it: {', '.join(units)}")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return options, core.Gate(VICTIMS, True, f"no unit can take it{why}")


def plan(context: core.Context, arming: arming_mod.Arming, facts: ChaosFacts) -> ChaosPlan:
    """The chaos decision of this moment for one application (see the module docstring).

    Ticks count from `arming.at` (from when the agent started if the arming does not say).
    """
    now = context.facts.now
    service = context.service
    chaos = context.policy.chaos
    own = tuple(d for d in facts.draws if d.service == service)
    gate_list = guard.get_gates(context, core.get_counts(context), arming, own)
    options: Mapping[str, list[str]] = {}
    if chaos is not None:
        options, victims = get_victims(context, chaos.kinds)
        gate_list.append(victims)
    if chaos is None or not arming.is_armed(now) or arming.until is None:
        return ChaosPlan(service, tuple(gate_list))
    interval = chaos.interval or context.policy.interval
    base = arming.at or context.facts.agent_started
    tick = draws_mod.current_tick(base, interval, now)
    following = draws_mod.tick_at(base, interval, tick + 1)
    upcoming = None
    notes: list[str] = []
    if following < arming.until:
        what = f"chaos tick {tick + 1} of {service} ({chaos.describe_rule()})"
        upcoming = core.Upcoming(CHAOS, following, what)
    else:
        until = arming.until.astimezone(datetime.timezone.utc)
        notes.append(f"chaos: no further tick before the arming ends at {until:%H:%M} UTC")
    decided = any(d.tick == tick and d.armed_at == base for d in own)
    if tick == 0 or decided or any(gate.holds for gate in gate_list):
        return ChaosPlan(service, tuple(gate_list), upcoming=upcoming, notes=tuple(notes))
    position = draws_mod.get_position(own, service, base)
    decision = draws_mod.decide(facts.seed, service, tick, position, chaos, options)
    timed = decision.kind in chaos_policy.TIMED
    draw = draws_mod.Draw(
        service=service,
        tick=tick,
        armed_at=base,
        at=now,
        rule=chaos.describe_rule(),
        position=position,
        value=decision.value,
        inject=decision.inject,
        kinds=tuple(k for k in chaos.kinds if options.get(k)),
        kind=decision.kind,
        candidates=decision.candidates,
        victim=decision.victim,
        until=now + datetime.timedelta(seconds=chaos.duration) if timed else None,
    )
    why = _explain(chaos, decision, position)
    if not decision.inject or decision.kind is None or decision.victim is None:
        notes.append(f"chaos tick {tick}: {why}: no injection")
        return ChaosPlan(service, tuple(gate_list), draw, None, upcoming, tuple(notes))
    unit = context.view.units[decision.victim]
    machine = unit.machine_id or ""
    kind = decision.kind
    reason = (
        f"chaos tick {tick} ({why}): {kind} on {unit.name} (machine {machine}"
        f"{_describe_effect(chaos, kind)}), drawn among {', '.join(decision.candidates)}"
    )
    proposal = ChaosProposal(
        service=service,
        kind=kind,
        unit=unit.name,
        machine=machine,
        reason=reason,
        tick=tick,
        due=draws_mod.tick_at(base, interval, tick),
        duration=chaos.duration if timed else None,
        delay_ms=chaos.delay_ms if kind == chaos_policy.SLOW_NETWORK else None,
        wrench=chaos.wrench if kind == chaos_policy.WRENCH else None,
        dry_run=arming.dry_run or context.settings.dry_run,
    )
    return ChaosPlan(service, tuple(gate_list), draw, proposal, upcoming, tuple(notes))


def _explain(chaos: chaos_policy.ChaosPolicy, decision: draws_mod.Decision, position: int) -> str:
    if chaos.pattern is not None:
        k, n = chaos.pattern.k, chaos.pattern.n
        return f"eligible tick {position % n + 1} of {n}, pattern {k}/{n}"
    sign = "<" if decision.inject else ">="
    return f"draw {decision.value or 0:.4f} {sign} chance {chaos.chance:g}"


def _describe_effect(chaos: chaos_policy.ChaosPolicy, kind: str) -> str:
    if kind not in chaos_policy.TIMED:
        return ""
    text = f", for {policies.format_duration(chaos.duration)}"
    if kind == chaos_policy.SLOW_NETWORK:
        text += f", delay {chaos.delay_ms}ms"
    if kind == chaos_policy.WRENCH and chaos.wrench is not None:
        text += f", wrench {chaos.wrench.text}"
    return text
