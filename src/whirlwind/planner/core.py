"""The planner's vocabulary: facts in, proposals, gates and plans out (pure data)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from whirlwind import model as model_view
from whirlwind import policies as policies_mod
from whirlwind import policy as policy_mod
from whirlwind import settings as settings_mod
from whirlwind.planner import health

if TYPE_CHECKING:
    from whirlwind.planner.chaos import ChaosPlan

HEAL = "heal"
COUNT = "count"
AGE = "age"
ROTATE = "rotate"
PRIORITY = (HEAL, COUNT, AGE, ROTATE)
# Voluntary work disrupts a healthy application; heal and count restore one.
VOLUNTARY = frozenset({AGE, ROTATE})


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the planner needs besides the view and the settings; the engine keeps these."""

    now: datetime.datetime
    agent_started: datetime.datetime
    paused: bool = False
    # How the pause reads (`paused until 14:00 UTC (reason)`), for the plan's gate.
    pause_text: str = ""
    breakers: Mapping[str, policy_mod.BreakerState] = dataclasses.field(default_factory=dict)
    in_flight: Collection[str] = ()
    busy_units: Collection[str] = ()
    watches: Mapping[str, health.Watch] = dataclasses.field(default_factory=dict)
    # When each unit was born, where known besides its annotation (first seen by the agent).
    first_seen: Mapping[str, datetime.datetime] = dataclasses.field(default_factory=dict)
    # When voluntary work last started, per application (own interval and age pacing).
    last_voluntary: Mapping[str, datetime.datetime] = dataclasses.field(default_factory=dict)
    # The model-wide rotation: when it last ran and on which application.
    rotation_last_run: datetime.datetime | None = None
    rotation_last_service: str | None = None
    # block-on-alerts (alerts.py): None when not set; else the matching alerts firing now,
    # or why Alertmanager could not be asked (`alerts_error`: fail closed).
    alerts: tuple[str, ...] | None = None
    alerts_error: str = ""


@dataclasses.dataclass(frozen=True)
class Gate:
    """One condition for voluntary work; `holds` means it holds the work back now."""

    name: str
    holds: bool
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Proposal:
    """An operation the planner wants: its trigger, target, victim (None: add only), why."""

    trigger: str
    service: str
    victim: str | None
    reason: str
    due: datetime.datetime

    @property
    def voluntary(self) -> bool:
        """Whether it disrupts a healthy application (rotate, age)."""
        return self.trigger in VOLUNTARY


@dataclasses.dataclass(frozen=True)
class Upcoming:
    """The next time a trigger will want something of an application, and what."""

    trigger: str
    at: datetime.datetime
    what: str


@dataclasses.dataclass(frozen=True)
class Counts:
    """An application's principal units by condition, and the count it should have."""

    live: int = 0
    healthy: int = 0
    settling: int = 0
    broken: int = 0
    dying: int = 0
    wanted: int | None = None


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    """The plan for one target application."""

    service: str
    counts: Counts
    proposals: tuple[Proposal, ...] = ()
    upcoming: tuple[Upcoming, ...] = ()
    gates: tuple[Gate, ...] = ()
    notes: tuple[str, ...] = ()
    # Failure injection on this target (None: not opted in, or chaos not planned).
    chaos: ChaosPlan | None = None

    @property
    def holding(self) -> tuple[Gate, ...]:
        """The gates that hold voluntary work back now."""
        return tuple(gate for gate in self.gates if gate.holds)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything due now, and for every target what holds it and what comes next."""

    now: datetime.datetime
    targets: tuple[TargetPlan, ...] = ()
    # When the model-wide rotation is due next (None: no application takes part in it).
    rotation_due: datetime.datetime | None = None

    def due(self) -> list[Proposal]:
        """Operations due now: by priority, then in configured order; one per application."""
        found = [p for target in self.targets for p in target.proposals[:1]]
        return sorted(found, key=lambda p: PRIORITY.index(p.trigger))

    def next_event(self) -> datetime.datetime | None:
        """The earliest time something will be due (for the engine's sleep)."""
        times = [u.at for target in self.targets for u in target.upcoming]
        return min(times, default=None)

    def chaos_plans(self) -> list[ChaosPlan]:
        """Every target's chaos plan (in configured order)."""
        return [t.chaos for t in self.targets if t.chaos is not None]

    def get(self, service: str) -> TargetPlan | None:
        """The plan for one application."""
        return next((t for t in self.targets if t.service == service), None)


@dataclasses.dataclass(frozen=True)
class Context:
    """One target as every trigger module sees it."""

    service: str
    policy: policies_mod.Policy
    units: tuple[model_view.UnitState, ...]
    conditions: Mapping[str, tuple[str, str]]
    view: model_view.ModelView
    facts: Facts
    settings: settings_mod.AgentSettings

    def with_condition(self, condition: str) -> list[model_view.UnitState]:
        """Units in `condition` (health.HEALTHY, SETTLING, BROKEN, DYING)."""
        return [u for u in self.units if self.conditions[u.name][0] == condition]

    def is_broken(self, unit: str) -> bool:
        """Broken now, or remembered broken (a hook retry between two errors)."""
        watch = self.facts.watches.get(unit)
        return self.conditions[unit][0] == health.BROKEN or (
            watch is not None and watch.broken_since is not None
        )


def make_context(
    service: str,
    view: model_view.ModelView,
    settings: settings_mod.AgentSettings,
    facts: Facts,
) -> Context:
    """Everything the trigger modules need about one target."""
    units = tuple(u for u in view.get_units(service) if not u.subordinate)
    return Context(
        service=service,
        policy=settings.policy_for(service),
        units=units,
        conditions={u.name: health.get_condition(view, u) for u in units},
        view=view,
        facts=facts,
        settings=settings,
    )


def get_birth(context: Context, unit: model_view.UnitState) -> datetime.datetime | None:
    """When `unit` was born, as well as the agent can tell (None: not known yet).

    From its `whirlwind/born` annotation, else from when its machine started (the instance
    status's `since`), else from when the agent first saw it. Units Whirlwind adds carry
    the annotation. For others the machine's start is right when the unit came with its
    machine (Juju's default), and too early for a unit placed on an older machine (`--to`):
    such a unit counts as old as its machine until it is first replaced.
    """
    born = model_view.parse_since(
        context.view.get_unit_annotations(unit.name).get(policy_mod.BORN_ANNOTATION)
    )
    if born is not None:
        return born
    machine = context.view.machines.get(unit.machine_id) if unit.machine_id else None
    started = machine.instance_since if machine is not None else None
    return started or context.facts.first_seen.get(unit.name)


def get_counts(context: Context) -> Counts:
    """Principal units by condition (a remembered-broken unit counts as broken)."""
    broken = sum(1 for u in context.units if context.is_broken(u.name))
    dying = len(context.with_condition(health.DYING))
    healthy = sum(
        1 for u in context.with_condition(health.HEALTHY) if not context.is_broken(u.name)
    )
    live = len(context.units) - dying
    return Counts(
        live=live,
        healthy=healthy,
        settling=live - healthy - broken,
        broken=broken,
        dying=dying,
        wanted=context.policy.units,
    )
