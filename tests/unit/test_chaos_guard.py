"""The chaos guard: every gate passes in a good state, and each one holds chaos back alone."""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import model as model_view
from whirlwind import policies, policy
from whirlwind import settings as settings_mod
from whirlwind.chaos import arming as arming_mod
from whirlwind.chaos import draws, guard
from whirlwind.planner import core, gates

T0 = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)  # a Monday
ERROR = {"workload_status": "error", "workload_message": "hook failed"}
CHAOS = {"kinds": ["kill-unit", "slow-network"], "chance": 0.5}
ARMED = arming_mod.Arming(True, T0 + datetime.timedelta(hours=3), "ctl as root", T0, False)


def _at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def _unit(number: int, **fields: Any) -> model_view.UnitState:
    values: dict[str, Any] = {
        "application": "app",
        "machine_id": str(number),
        "workload_status": "active",
        "agent_status": "idle",
    }
    values.update(fields)
    return model_view.UnitState(name=f"app/{number}", **values)


@dataclasses.dataclass
class Case:
    """Everything the guard reads; each test changes one thing."""

    units: list[model_view.UnitState] = dataclasses.field(
        default_factory=lambda: [_unit(n) for n in range(3)]
    )
    chaos: dict[str, Any] | None = dataclasses.field(default_factory=lambda: dict(CHAOS))
    arming: arming_mod.Arming = ARMED
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    draws: list[draws.Draw] = dataclasses.field(default_factory=list)
    controller_model: bool = False
    model_seen: bool = True
    app_life: str = model_view.ALIVE

    def gates(self) -> list[core.Gate]:
        view = model_view.ModelView()
        view.model_seen = self.model_seen
        view.is_controller_model = self.controller_model
        view.model_name = "prod-web"
        view.applications["app"] = model_view.ApplicationState(name="app", life=self.app_life)
        for unit in self.units:
            view.units[unit.name] = unit
            assert unit.machine_id is not None
            view.machines[unit.machine_id] = model_view.MachineState(id=unit.machine_id)
        own = {"chaos": self.chaos} if self.chaos is not None else {}
        overrides = policies.parse_policies({"app": own}, ["app"])
        values: dict[str, Any] = {"services": ("app",), "policies": tuple(overrides.items())}
        values.update(self.settings)
        settings: settings_mod.AgentSettings = imb.make_settings(
            pathlib.Path("/nonexistent"), **values
        )
        facts = core.Facts(now=T0, agent_started=_at(-3600), **self.facts)
        context = core.make_context("app", view, settings, facts)
        return guard.get_gates(context, core.get_counts(context), self.arming, self.draws)


def _holding(found: list[core.Gate]) -> dict[str, str]:
    return {gate.name: gate.detail for gate in found if gate.holds}


def _injection(at: float, until: float | None = None, service: str = "app") -> draws.Draw:
    return draws.Draw(
        service=service,
        tick=1,
        armed_at=_at(-86400),
        at=_at(at),
        rule="chance 0.5",
        position=0,
        value=0.1,
        inject=True,
        kinds=("kill-unit",),
        kind="slow-network" if until is not None else "kill-unit",
        candidates=("app/1",),
        victim="app/1",
        until=_at(until) if until is not None else None,
    )


def test_every_gate_lets_chaos_through_in_a_good_state() -> None:
    found = Case().gates()

    assert _holding(found) == {}
    assert {g.name: g.detail for g in found} == {
        guard.OPTED_IN: "opted in: kill-unit, slow-network",
        guard.ARMED: "chaos armed until 15:00 UTC by ctl as root",
        guard.CONTROLLER_MODEL: "not the controller model (prod-web)",
        gates.REFUSED: "none",
        gates.PAUSED: "running",
        gates.WINDOW: "no windows: always open",
        guard.HEALTH: "3 of 3 units healthy",
        gates.BREAKER: "closed",
        gates.IN_FLIGHT: "none",
        guard.MAX_PER_DAY: "0 of 4 injections in the last 24 h",
        guard.ACTIVE: "no injection in effect",
    }


def _set(**changes: Any) -> Callable[[Case], None]:
    def apply(case: Case) -> None:
        for key, value in changes.items():
            setattr(case, key, value)

    return apply


@pytest.mark.parametrize(
    ("change", "name", "detail"),
    [
        (_set(chaos=None), guard.OPTED_IN, "not opted in (no chaos in its policies)"),
        (_set(arming=arming_mod.Arming()), guard.ARMED, "chaos not armed (run arm-chaos)"),
        (_set(arming=dataclasses.replace(ARMED, until=_at(-60))), guard.ARMED,
         "chaos arming ended at 11:59 UTC (run arm-chaos)"),
        (_set(arming=dataclasses.replace(ARMED, until=None)), guard.ARMED,
         "chaos not armed (run arm-chaos)"),
        (_set(controller_model=True), guard.CONTROLLER_MODEL,
         "the controller model: chaos never runs there"),
        (_set(model_seen=False), guard.CONTROLLER_MODEL,
         "the model's own information has not arrived"),
        (_set(settings={"own_application": "app"}), gates.REFUSED,
         "Whirlwind never replaces its own units"),
        (_set(app_life="dying"), gates.REFUSED, "application is dying"),
        (_set(facts={"paused": True, "pause_text": "paused until 14:00 UTC (upgrade)"}),
         gates.PAUSED, "paused until 14:00 UTC (upgrade)"),
        (_set(settings={"windows": "sat 10:00-12:00"}), gates.WINDOW,
         "closed; opens Sat 10:00 UTC (sat 10:00-12:00)"),
        (_set(units=[_unit(0), _unit(1, **ERROR), _unit(2)]), guard.HEALTH,
         "2 of 3 units healthy; chaos waits for all"),
        (_set(units=[_unit(0), _unit(1, agent_status="executing"), _unit(2)]), guard.HEALTH,
         "2 of 3 units healthy; chaos waits for all"),
        (_set(units=[_unit(0), _unit(1), _unit(2, life="dying")]), guard.HEALTH,
         "2 of 2 units healthy; chaos waits for all"),
        (_set(units=[_unit(0)]), guard.HEALTH,
         "1 of 1 units healthy; chaos needs at least 2 units (or min-healthy in its chaos "
         "policy)"),
        (_set(chaos={**CHAOS, "min-healthy": "50%"},
              units=[_unit(0), _unit(1, **ERROR), _unit(2)]), guard.HEALTH,
         "2 of 3 units healthy; 1 would stay healthy (min-healthy 50%)"),
        (_set(facts={"breakers": {"app": policy.BreakerState(3, "settle timeout")}}),
         gates.BREAKER, "3 consecutive failures; last: settle timeout"),
        (_set(facts={"in_flight": ("app",)}), gates.IN_FLIGHT, "a replacement is in flight"),
        (_set(draws=[_injection(-80000), _injection(-7200), _injection(-3600), _injection(-60)]),
         guard.MAX_PER_DAY, "4 of 4 injections in the last 24 h; next allowed 13:46 UTC"),
        (_set(chaos={**CHAOS, "max-per-day": 1}, draws=[_injection(-3600)]), guard.MAX_PER_DAY,
         "1 of 1 injections in the last 24 h; next allowed Tue 11:00 UTC"),
        (_set(draws=[_injection(-60, until=540)]), guard.ACTIVE,
         "slow-network on app/1 until 12:09 UTC"),
    ],
)  # fmt: skip
def test_each_gate_holds_chaos_back_alone(
    change: Callable[[Case], None], name: str, detail: str
) -> None:
    case = Case()
    change(case)

    found = case.gates()

    assert _holding(found) == {name: detail}


@pytest.mark.parametrize(
    ("chaos", "units", "detail"),
    [
        ({**CHAOS, "min-healthy": "0%"}, [_unit(0)],
         "1 of 1 units healthy; 0 would stay healthy (min-healthy 0%)"),
        ({**CHAOS, "min-healthy": "50%"}, [_unit(0), _unit(1, **ERROR), _unit(2), _unit(3)],
         "3 of 4 units healthy; 2 would stay healthy (min-healthy 50%)"),
        ({**CHAOS, "min-healthy": "60%"}, [_unit(n) for n in range(5)],
         "5 of 5 units healthy; 4 would stay healthy (min-healthy 60%)"),
    ],
)  # fmt: skip
def test_min_healthy_lets_chaos_run_with_fewer_units(
    chaos: dict[str, Any], units: list[model_view.UnitState], detail: str
) -> None:
    found = Case(chaos=chaos, units=units).gates()

    assert _holding(found) == {}
    assert next(g.detail for g in found if g.name == guard.HEALTH) == detail


def test_min_healthy_holds_when_too_few_would_stay_healthy() -> None:
    found = Case(chaos={**CHAOS, "min-healthy": "100%"}).gates()

    assert _holding(found) == {
        guard.HEALTH: "3 of 3 units healthy; 2 would stay healthy (min-healthy 100%)"
    }


def test_other_applications_and_old_injections_do_not_count() -> None:
    found = Case(
        draws=[_injection(-60, until=600, service="db"), _injection(-86400), _injection(-90000)]
    ).gates()

    assert _holding(found) == {}
    assert next(g.detail for g in found if g.name == guard.MAX_PER_DAY) == (
        "0 of 4 injections in the last 24 h"
    )


def test_dry_run_arming_says_so() -> None:
    found = Case(arming=dataclasses.replace(ARMED, dry_run=True)).gates()

    assert next(g.detail for g in found if g.name == guard.ARMED) == (
        "chaos armed until 15:00 UTC by ctl as root (dry-run)"
    )
