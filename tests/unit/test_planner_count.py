"""Trigger `count`: keep `units: N` live units, adding one at a time, never removing."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from tests.unit import model_builders
from tests.unit.model_builders import T0
from tests.unit.model_builders import unit as _unit
from whirlwind import model as model_view
from whirlwind import planner, policies, policy
from whirlwind import settings as settings_mod
from whirlwind.planner import core, count, gates

NOW = T0 + datetime.timedelta(seconds=100)


def _view(*units: model_view.UnitState) -> model_view.ModelView:
    """The application `app` (also without units) and `units`."""
    return model_builders.view(*units, apps={"app": {}})


def _settings(units: int | None) -> settings_mod.AgentSettings:
    overrides = () if units is None else (("app", policies.Overrides(units=units)),)
    return imb.make_settings(pathlib.Path("/nonexistent"), services=("app",), policies=overrides)


def _propose(
    units: list[model_view.UnitState], wanted: int | None
) -> tuple[core.Proposal | None, list[str]]:
    context = core.make_context(
        "app", _view(*units), _settings(wanted), core.Facts(now=NOW, agent_started=T0)
    )
    return count.propose(context, core.get_counts(context))


def _healthy(number: int) -> list[model_view.UnitState]:
    return [_unit(f"app/{n}") for n in range(number)]


@pytest.mark.parametrize("number", [0, 1, 5])
def test_without_units_set_nothing_is_counted(number: int) -> None:
    assert _propose(_healthy(number), None) == (None, [])


@pytest.mark.parametrize(
    ("number", "wanted"),
    [(0, 1), (2, 3), (1, 3), (4, 5)],
)
def test_fewer_live_units_than_wanted_adds_one(number: int, wanted: int) -> None:
    reason = f"{number} live units, fewer than units: {wanted}"

    assert _propose(_healthy(number), wanted) == (
        core.Proposal(core.COUNT, "app", None, reason, NOW),
        [],
    )


@pytest.mark.parametrize("number", [1, 3])
def test_as_many_live_units_as_wanted_is_nothing(number: int) -> None:
    assert _propose(_healthy(number), number) == (None, [])


@pytest.mark.parametrize(("number", "wanted"), [(4, 3), (2, 1)])
def test_more_live_units_than_wanted_is_only_a_note(number: int, wanted: int) -> None:
    note = f"{number} live units, more than units: {wanted} (nothing automatic)"

    assert _propose(_healthy(number), wanted) == (None, [note])


@pytest.mark.parametrize("life", ["dying", "dead"])
def test_dying_units_do_not_count_as_live(life: str) -> None:
    units = [*_healthy(2), _unit("app/2", life=life)]

    proposal, notes = _propose(units, 3)

    assert proposal == core.Proposal(
        core.COUNT, "app", None, "2 live units, fewer than units: 3", NOW
    )
    assert notes == []


@pytest.mark.parametrize(
    "fields",
    [
        {"workload_status": "error"},
        {"workload_status": "maintenance", "agent_status": "executing"},
        {"workload_status": "waiting", "agent_status": "allocating"},
    ],
)
def test_broken_and_settling_units_count_as_live(fields: dict[str, Any]) -> None:
    units = [*_healthy(2), _unit("app/2", **fields)]

    assert _propose(units, 3) == (None, [])


def test_subordinates_do_not_count() -> None:
    units = [*_healthy(2), _unit("app/2", subordinate=True, principal="web/0")]

    proposal, _ = _propose(units, 3)

    assert proposal is not None
    assert proposal.reason == "2 live units, fewer than units: 3"


def test_counts_by_condition() -> None:
    units = [
        _unit("app/0"),
        _unit("app/1", workload_status="error"),
        _unit("app/2", workload_status="maintenance", agent_status="executing"),
        _unit("app/3", life="dying"),
        _unit("app/4"),
    ]
    context = core.make_context(
        "app", _view(*units), _settings(6), core.Facts(now=NOW, agent_started=T0)
    )

    assert core.get_counts(context) == core.Counts(
        live=4, healthy=2, settling=1, broken=1, dying=1, wanted=6
    )


# -- in the plan -----------------------------------------------------------------------------


def _plan(units: list[model_view.UnitState], wanted: int, **facts: Any) -> planner.TargetPlan:
    values: dict[str, Any] = {"now": NOW, "agent_started": T0}
    values.update(facts)
    plan = planner.make_plan(_view(*units), _settings(wanted), core.Facts(**values))
    target = plan.get("app")
    assert target is not None
    return target


ADD = core.Proposal(core.COUNT, "app", None, "2 live units, fewer than units: 3", NOW)


def test_plan_adds_a_unit_when_running() -> None:
    target = _plan(_healthy(2), 3)

    assert target.proposals == (ADD,)
    assert target.counts == core.Counts(live=2, healthy=2, wanted=3)


def test_plan_does_not_add_while_paused() -> None:
    target = _plan(_healthy(2), 3, paused=True)

    assert target.proposals == ()
    assert core.Gate(gates.PAUSED, True, "paused") in target.holding


@pytest.mark.parametrize(
    "facts",
    [{"breakers": {"app": policy.BreakerState(3, "boom")}}, {"in_flight": ("app",)}],
)
def test_plan_does_not_add_while_blocked(facts: dict[str, Any]) -> None:
    assert _plan(_healthy(2), 3, **facts).proposals == ()


def test_plan_adds_even_while_the_health_gate_holds() -> None:
    # Restoring the count is not voluntary work: a settling unit does not hold it.
    units = [_unit("app/0"), _unit("app/1", workload_status="maintenance")]

    target = _plan(units, 3)

    assert target.proposals == (ADD,)
    assert core.Gate(gates.HEALTH, True, "1 of 2 units healthy; voluntary work waits for all") in (
        target.holding
    )
