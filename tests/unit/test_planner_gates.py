"""What holds work back (gates), and how the plan orders what is due and what comes next."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from tests.unit.model_builders import T0
from tests.unit.model_builders import at as _at
from tests.unit.model_builders import unit as _unit
from tests.unit.model_builders import view as _view
from whirlwind import model as model_view
from whirlwind import planner, policies, policy
from whirlwind import settings as settings_mod
from whirlwind.planner import core, gates, health


def _settings(**overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": ("app",)}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _context(settings: settings_mod.AgentSettings | None = None, **facts: Any) -> core.Context:
    return core.make_context(
        "app",
        _view(_unit("app/0"), _unit("app/1")),
        settings or _settings(),
        core.Facts(now=T0, agent_started=T0, **facts),
    )


def _proposal(trigger: str, service: str) -> core.Proposal:
    return core.Proposal(trigger, service, f"{service}/0", trigger, T0)


# -- gates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("breakers", "limit", "holds", "detail"),
    [
        ({}, 3, False, "closed"),
        ({"app": (1, "x")}, 3, False, "1 failure; last: x"),
        ({"app": (3, "boom")}, 3, True, "3 consecutive failures; last: boom"),
        ({"app": (3, "boom")}, 5, False, "3 consecutive failures; last: boom"),
        ({"app": (7, "boom")}, 5, True, "7 consecutive failures; last: boom"),
        ({"web": (9, "boom")}, 3, False, "closed"),
    ],
)
def test_breaker_gate(
    breakers: dict[str, tuple[int, str]], limit: int, holds: bool, detail: str
) -> None:
    states = {app: policy.BreakerState(*state) for app, state in breakers.items()}
    context = _context(_settings(max_consecutive_failures=limit), breakers=states)

    breaker, _ = gates.get_common(context)

    assert breaker == core.Gate(gates.BREAKER, holds, detail)


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [
        ((), core.Gate(gates.IN_FLIGHT, False, "none")),
        (("web",), core.Gate(gates.IN_FLIGHT, False, "none")),
        (("app",), core.Gate(gates.IN_FLIGHT, True, "a replacement is in flight")),
    ],
)
def test_in_flight_gate(in_flight: tuple[str, ...], expected: core.Gate) -> None:
    _, gate = gates.get_common(_context(in_flight=in_flight))

    assert gate == expected


@pytest.mark.parametrize(
    ("paused", "expected"),
    [
        (False, core.Gate(gates.PAUSED, False, "running")),
        (True, core.Gate(gates.PAUSED, True, "paused")),
    ],
)
def test_paused_gate(paused: bool, expected: core.Gate) -> None:
    assert gates.get_paused(_context(paused=paused)) == expected


WAITS = "; voluntary work waits for all"
MIN = " (min-healthy {}%)"


@pytest.mark.parametrize(
    ("counts", "min_healthy", "holds", "detail"),
    [
        ((3, 3, 0, 0), None, False, "3 of 3 units healthy"),
        ((3, 2, 0, 0), None, True, "2 of 3 units healthy" + WAITS),  # one settling
        ((3, 2, 1, 0), None, True, "2 of 3 units healthy" + WAITS),
        ((2, 2, 0, 1), None, True, "2 of 2 units healthy" + WAITS),
        ((0, 0, 0, 0), None, False, "0 of 0 units healthy"),
        ((4, 2, 2, 0), 50, False, "2 of 4 units healthy" + MIN.format(50)),
        ((4, 1, 3, 0), 50, True, "1 of 4 units healthy" + MIN.format(50)),
        ((3, 2, 1, 0), 67, True, "2 of 3 units healthy" + MIN.format(67)),
        ((3, 2, 1, 0), 66, False, "2 of 3 units healthy" + MIN.format(66)),
        ((2, 2, 0, 1), 100, False, "2 of 2 units healthy" + MIN.format(100)),
        ((3, 0, 3, 0), 0, False, "0 of 3 units healthy" + MIN.format(0)),
        ((0, 0, 0, 0), 50, False, "0 of 0 units healthy" + MIN.format(50)),
    ],
)
def test_health_gate_wants_all_healthy_or_min_healthy(
    counts: tuple[int, int, int, int], min_healthy: int | None, holds: bool, detail: str
) -> None:
    live, healthy, broken, dying = counts
    own = () if min_healthy is None else (("app", policies.Overrides(min_healthy=min_healthy)),)
    context = _context(_settings(policies=own))
    settling = live - healthy - broken
    given = core.Counts(live, healthy, settling, broken, dying)

    assert gates.get_health(context, given) == core.Gate(gates.HEALTH, holds, detail)


def test_a_remembered_broken_unit_holds_the_health_gate() -> None:
    # app/1 is executing between two errors (a hook retry): broken, not settling.
    watches = {"app/1": health.Watch(None, T0, "hook failed")}
    executing = _unit("app/1", workload_status="maintenance", agent_status="executing")

    plan = planner.make_plan(
        _view(_unit("app/0"), executing),
        _settings(),
        core.Facts(now=T0, agent_started=T0, watches=watches),
    )

    target = plan.get("app")
    assert target is not None
    assert target.counts == core.Counts(live=2, healthy=1, broken=1)
    assert target.holding == (core.Gate(gates.HEALTH, True, "1 of 2 units healthy" + WAITS),)


def test_plan_lists_every_gate_in_order() -> None:
    plan = planner.make_plan(
        _view(_unit("app/0")), _settings(), core.Facts(now=T0, agent_started=T0)
    )

    target = plan.get("app")
    assert target is not None
    assert target.gates == (
        core.Gate(gates.BREAKER, False, "closed"),
        core.Gate(gates.IN_FLIGHT, False, "none"),
        core.Gate(gates.PAUSED, False, "running"),
        core.Gate(gates.HEALTH, False, "1 of 1 units healthy"),
        core.Gate(gates.WINDOW, False, "no windows: always open"),
        core.Gate(gates.MASS_FAILURE, False, "0 of 1 units broken (heals while at most 50%)"),
    )
    assert target.holding == ()


# -- refused applications ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "not in the model"),
        ("own", "Whirlwind never replaces its own units"),
        ("model-unseen", "the model's own information has not arrived yet"),
        ("subordinate", "subordinate applications cannot be replaced"),
    ],
)
def test_a_refused_application_gets_only_a_refused_gate(case: str, reason: str) -> None:
    view = _view(_unit("app/0"), _unit("app/1"), _unit("db/2"))
    settings = _settings(services=("db", "app"))
    if case == "missing":
        del view.applications["db"]
        del view.units["db/2"]
    elif case == "own":
        settings = _settings(services=("db", "app"), own_application="db")
    elif case == "model-unseen":
        view.model_seen = False
    elif case == "subordinate":
        view.applications["db"] = model_view.ApplicationState(name="db", subordinate=True)

    plan = planner.make_plan(view, settings, core.Facts(now=_at(600), agent_started=T0))

    assert plan.get("db") == core.TargetPlan(
        service="db",
        counts=core.Counts(),
        gates=(core.Gate(gates.REFUSED, True, reason),),
        notes=(reason,),
    )
    app = plan.get("app")
    assert app is not None
    # The rotation passes over the refused application (unless the model is unseen).
    expected = () if case == "model-unseen" else ("app/0",)
    assert tuple(p.victim for p in app.proposals) == expected


# -- the plan ---------------------------------------------------------------------------------


def test_due_takes_one_per_application_by_priority_then_configured_order() -> None:
    plan = core.Plan(
        now=T0,
        targets=(
            core.TargetPlan("a", core.Counts(), proposals=(_proposal(core.ROTATE, "a"),)),
            core.TargetPlan("b", core.Counts(), proposals=(_proposal(core.AGE, "b"),)),
            core.TargetPlan(
                "c",
                core.Counts(),
                proposals=(_proposal(core.HEAL, "c"), _proposal(core.COUNT, "c")),
            ),
            core.TargetPlan("d", core.Counts(), proposals=(_proposal(core.COUNT, "d"),)),
            core.TargetPlan("e", core.Counts()),
            core.TargetPlan("f", core.Counts(), proposals=(_proposal(core.AGE, "f"),)),
            core.TargetPlan("g", core.Counts(), proposals=(_proposal(core.HEAL, "g"),)),
        ),
    )

    assert [(p.trigger, p.service) for p in plan.due()] == [
        (core.HEAL, "c"),
        (core.HEAL, "g"),
        (core.COUNT, "d"),
        (core.AGE, "b"),
        (core.AGE, "f"),
        (core.ROTATE, "a"),
    ]


def test_plan_sorts_each_applications_proposals_by_priority() -> None:
    # app: a unit broken long enough to heal, and one unit short of `units: 3`.
    settings = _settings(policies=(("app", policies.Overrides(units=3)),))
    watches = {"app/1": health.Watch(None, T0, "hook failed")}
    view = _view(_unit("app/0"), _unit("app/1", workload_status="error"))

    plan = planner.make_plan(
        view, settings, core.Facts(now=_at(600), agent_started=T0, watches=watches)
    )

    target = plan.get("app")
    assert target is not None
    assert [(p.trigger, p.victim) for p in target.proposals] == [
        (core.HEAL, "app/1"),
        (core.COUNT, None),
    ]
    assert [(p.trigger, p.victim) for p in plan.due()] == [(core.HEAL, "app/1")]


@pytest.mark.parametrize(
    ("upcoming", "expected"),
    [
        ({}, None),
        ({"a": [30]}, 30),
        ({"a": [300, 30], "b": [20, 400]}, 20),
        ({"a": [], "b": [-5]}, -5),
    ],
)
def test_next_event_is_the_earliest_upcoming(
    upcoming: dict[str, list[float]], expected: float | None
) -> None:
    plan = core.Plan(
        now=T0,
        targets=tuple(
            core.TargetPlan(
                app,
                core.Counts(),
                upcoming=tuple(core.Upcoming(core.AGE, _at(at), "x") for at in times),
            )
            for app, times in upcoming.items()
        ),
    )

    assert plan.next_event() == (None if expected is None else _at(expected))


def test_plan_get_finds_a_target_by_name() -> None:
    plan = core.Plan(now=T0, targets=(core.TargetPlan("a", core.Counts(live=1)),))

    assert plan.get("a") == core.TargetPlan("a", core.Counts(live=1))
    assert plan.get("b") is None


@pytest.mark.parametrize(
    ("trigger", "voluntary"),
    [(core.HEAL, False), (core.COUNT, False), (core.AGE, True), (core.ROTATE, True)],
)
def test_only_age_and_rotation_are_voluntary(trigger: str, voluntary: bool) -> None:
    assert _proposal(trigger, "a").voluntary is voluntary


def test_holding_lists_only_the_gates_that_hold() -> None:
    target = core.TargetPlan(
        "a",
        core.Counts(),
        gates=(core.Gate("x", False), core.Gate("y", True, "why"), core.Gate("z", True)),
    )

    assert target.holding == (core.Gate("y", True, "why"), core.Gate("z", True))
