"""Trigger `rotate`: the model-wide round-robin, own intervals, and the oldest generation."""

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
from whirlwind import planner, policies
from whirlwind import settings as settings_mod
from whirlwind.planner import core, rotate

DAY = 24 * 3600
SERVICES = ("app", "web", "db")
SETTLING = {"workload_status": "maintenance", "agent_status": "executing"}


def _model(**fields: dict[str, Any]) -> model_view.ModelView:
    """Two healthy units of each of app, web and db (machines 0..5); fields by unit name."""
    names = [f"{app}/{n}" for n, app in enumerate(a for a in SERVICES for _ in range(2))]
    return _view(*(_unit(name, **fields.get(name.replace("/", "_"), {})) for name in names))


def _settings(**overrides: Any) -> settings_mod.AgentSettings:
    values: dict[str, Any] = {"services": SERVICES}
    values.update(overrides)
    return imb.make_settings(pathlib.Path("/nonexistent"), **values)


def _own(**intervals: int) -> tuple[tuple[str, policies.Overrides], ...]:
    return tuple((app, policies.Overrides(interval=s)) for app, s in intervals.items())


def _plan(
    view: model_view.ModelView | None = None,
    settings: settings_mod.AgentSettings | None = None,
    now: float = 600,
    **facts: Any,
) -> planner.Plan:
    return planner.make_plan(
        view or _model(),
        settings or _settings(),
        core.Facts(now=_at(now), agent_started=T0, **facts),
    )


def _rotations(plan: planner.Plan) -> dict[str, list[str | None]]:
    return {
        target.service: [p.victim for p in target.proposals if p.trigger == core.ROTATE]
        for target in plan.targets
        if any(p.trigger == core.ROTATE for p in target.proposals)
    }


# -- order and timing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("services", "ready", "last", "expected"),
    [
        (("a", "b", "c"), ("a", "b", "c"), None, ["a", "b", "c"]),
        (("a", "b", "c"), ("a", "b", "c"), "a", ["b", "c", "a"]),
        (("a", "b", "c"), ("a", "b", "c"), "c", ["a", "b", "c"]),
        (("a", "b", "c"), ("a", "c"), "a", ["c", "a"]),
        (("a", "b", "c"), ("a",), "a", ["a"]),
        (("a", "b", "c"), (), "a", []),
        (("a", "b"), ("a", "b"), "removed-from-config", ["a", "b"]),
        (("a", "b"), ("x",), None, []),
        ((), ("a",), None, []),
    ],
)
def test_in_turn_is_round_robin_after_the_last(
    services: tuple[str, ...], ready: tuple[str, ...], last: str | None, expected: list[str]
) -> None:
    assert rotate.in_turn(services, ready, last) == expected


@pytest.mark.parametrize(
    ("last_run", "interval", "expected"),
    [(None, 600, 600), (100, 600, 700), (-5000, 600, -4400), (100, 3600, 3700)],
)
def test_shared_rotation_is_due_an_interval_after_its_last_run_or_the_start(
    last_run: float | None, interval: int, expected: float
) -> None:
    facts = core.Facts(
        now=_at(0),
        agent_started=T0,
        rotation_last_run=None if last_run is None else _at(last_run),
    )

    assert rotate.shared_due(facts, interval) == _at(expected)


@pytest.mark.parametrize(
    ("last", "expected"),
    [({}, 300), ({"web": 100}, 400), ({"app": 100}, 300), ({"web": -1000}, -700)],
)
def test_own_interval_is_due_after_its_own_last_voluntary_work(
    last: dict[str, float], expected: float
) -> None:
    facts = core.Facts(
        now=_at(0),
        agent_started=T0,
        last_voluntary={app: _at(at) for app, at in last.items()},
    )
    context = core.make_context("web", _model(), _settings(policies=_own(web=300)), facts)

    assert rotate.own_due(context) == _at(expected)


# -- the model-wide rotation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "expected"),
    [(None, "app"), ("app", "web"), ("web", "db"), ("db", "app"), ("gone", "app")],
)
def test_shared_rotation_goes_round_robin(last: str | None, expected: str) -> None:
    plan = _plan(rotation_last_service=last)

    first = {"app": "app/0", "web": "web/2", "db": "db/4"}[expected]
    assert _rotations(plan) == {expected: [first]}
    assert plan.rotation_due == _at(600)
    target = plan.get(expected)
    assert target is not None
    assert target.proposals == (
        core.Proposal(
            core.ROTATE,
            expected,
            first,
            f"{first} is the oldest unit (rotation every 600s)",
            _at(600),
        ),
    )


def test_shared_rotation_waits_for_its_time() -> None:
    plan = _plan(now=599)

    assert _rotations(plan) == {}
    assert plan.rotation_due == _at(600)
    assert plan.next_event() == _at(600)
    target = plan.get("app")
    assert target is not None
    assert target.upcoming == (
        core.Upcoming(
            core.ROTATE,
            _at(600),
            "rotation: app next; app/0 is the oldest unit (rotation every 600s)",
        ),
    )


def test_shared_rotation_counts_from_its_last_run() -> None:
    early = _plan(now=1099, rotation_last_run=_at(500), rotation_last_service="app")
    on_time = _plan(now=1100, rotation_last_run=_at(500), rotation_last_service="app")

    assert (early.rotation_due, _rotations(early)) == (_at(1100), {})
    assert _rotations(on_time) == {"web": ["web/2"]}


def test_shared_rotation_passes_over_applications_that_are_not_ready() -> None:
    plan = _plan(_model(app_1=SETTLING))

    assert _rotations(plan) == {"web": ["web/2"]}
    web = plan.get("web")
    assert web is not None
    assert core.Upcoming(core.ROTATE, _at(600), "rotation: web next") in web.upcoming


def test_shared_rotation_passes_over_an_application_with_no_unit_to_take() -> None:
    view = _model()
    view.storage_units = frozenset({"app/0", "app/1"})

    plan = _plan(view)

    assert _rotations(plan) == {"web": ["web/2"]}
    app = plan.get("app")
    assert app is not None
    assert app.notes == (
        "rotate: skipped app/0 has storage, app/1 has storage",
        "no unit can be replaced",
    )


def test_nothing_ready_means_no_rotation_and_no_upcoming() -> None:
    plan = _plan(paused=True)

    assert _rotations(plan) == {}
    assert plan.rotation_due == _at(600)
    assert plan.next_event() is None


# -- own intervals and max-age ------------------------------------------------------------------


def test_an_application_with_its_own_interval_keeps_its_own_timer() -> None:
    settings = _settings(policies=_own(web=300))

    at_300 = _plan(settings=settings, now=300)
    at_600 = _plan(settings=settings, now=600, last_voluntary={"web": _at(300)})

    assert _rotations(at_300) == {"web": ["web/2"]}
    web = at_300.get("web")
    assert web is not None
    assert web.proposals[0].reason == "web/2 is the oldest unit (rotation every 300s)"
    assert web.upcoming == (
        core.Upcoming(
            core.ROTATE,
            _at(300),
            "rotation of web; web/2 is the oldest unit (rotation every 300s)",
        ),
    )
    # At 600 both are due: web on its own timer, app as the shared rotation's first.
    assert _rotations(at_600) == {"app": ["app/0"], "web": ["web/2"]}


def test_own_interval_waits_an_interval_after_its_last_voluntary_work() -> None:
    settings = _settings(policies=_own(web=300))

    plan = _plan(settings=settings, now=300, last_voluntary={"web": _at(200)})

    assert _rotations(plan) == {}
    web = plan.get("web")
    assert web is not None
    assert web.upcoming == (
        core.Upcoming(
            core.ROTATE,
            _at(500),
            "rotation of web; web/2 is the oldest unit (rotation every 300s)",
        ),
    )


def test_own_interval_is_held_by_the_gates() -> None:
    plan = _plan(_model(web_3=SETTLING), _settings(policies=_own(web=300)), now=300)

    assert _rotations(plan) == {}


@pytest.mark.parametrize(
    ("policy", "last", "expected"),
    [
        (_own(web=300), "app", "db"),
        (_own(web=300), None, "app"),
        ((("web", policies.Overrides(max_age=DAY)),), "app", "db"),
    ],
)
def test_applications_with_their_own_pace_leave_the_shared_rotation(
    policy: tuple[tuple[str, policies.Overrides], ...], last: str | None, expected: str
) -> None:
    plan = _plan(settings=_settings(policies=policy), now=600, rotation_last_service=last)

    rotations = _rotations(plan)
    rotations.pop("web", None)  # its own timer may be due too
    assert list(rotations) == [expected]


def test_no_shared_rotation_when_every_application_has_its_own_pace() -> None:
    settings = _settings(
        policies=(*_own(app=600, web=600), ("db", policies.Overrides(max_age=DAY)))
    )

    plan = _plan(settings=settings, now=599)

    assert plan.rotation_due is None
    assert plan.next_event() == _at(600)


def test_model_wide_max_age_replaces_the_shared_rotation() -> None:
    plan = _plan(settings=_settings(max_age=DAY), now=10 * 600)

    assert plan.rotation_due is None
    assert _rotations(plan) == {}


# -- which unit ----------------------------------------------------------------------------------


def _propose(
    view: model_view.ModelView, busy: tuple[str, ...] = ()
) -> tuple[core.Proposal | None, list[str]]:
    facts = core.Facts(now=_at(DAY), agent_started=T0, busy_units=busy)
    context = core.make_context("app", view, _settings(), facts)
    return rotate.propose(context, _at(600))


def _victim(view: model_view.ModelView, busy: tuple[str, ...] = ()) -> str | None:
    proposal, _ = _propose(view, busy)
    return None if proposal is None else proposal.victim


@pytest.mark.parametrize(
    ("born", "order", "generation"),
    [
        ({"app/0": 0, "app/1": 100, "app/2": 400}, ["app/0", "app/1", "app/2"], 2),
        ({"app/0": 500, "app/1": 0, "app/2": 299}, ["app/1", "app/2", "app/0"], 2),
        ({"app/0": 0, "app/1": 300, "app/2": 600}, ["app/0", "app/1", "app/2"], 1),
        ({"app/0": 0, "app/1": 0, "app/2": 0}, ["app/0", "app/1", "app/2"], 3),
        # Unknown birth counts as oldest, and as of the oldest generation.
        ({"app/1": 0, "app/2": 1000}, ["app/0", "app/1", "app/2"], 2),
        ({}, ["app/0", "app/1", "app/2"], 3),
    ],
)
def test_by_birth_orders_oldest_first_and_sizes_the_oldest_generation(
    born: dict[str, float], order: list[str], generation: int
) -> None:
    view = _view(_unit("app/0"), _unit("app/1"), _unit("app/2"), born=born)
    context = core.make_context("app", view, _settings(), core.Facts(now=T0, agent_started=T0))

    ordered, size = rotate.by_birth(context, context.units)

    assert ([u.name for u in ordered], size) == (order, generation)


def test_the_oldest_unit_is_rotated() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), born={"app/0": 1000, "app/1": 0})

    assert _propose(view) == (
        core.Proposal(
            core.ROTATE, "app", "app/1", "app/1 is the oldest unit (rotation every 600s)", _at(600)
        ),
        [],
    )


def test_the_leader_goes_last_within_its_generation() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), _unit("app/2"), born={"app/2": 10_000})
    view.leaders = frozenset({"app/0"})

    proposal, notes = _propose(view)

    assert proposal is not None
    assert proposal.victim == "app/1"
    assert notes == ["rotate: skipped app/0 is the leader (last)"]


def test_the_leader_goes_in_its_turn_when_it_is_a_generation_of_its_own() -> None:
    view = _view(_unit("app/0"), _unit("app/1"), born={"app/0": 0, "app/1": 1000})
    view.leaders = frozenset({"app/0"})

    assert _propose(view) == (
        core.Proposal(
            core.ROTATE, "app", "app/0", "app/0 is the oldest unit (rotation every 600s)", _at(600)
        ),
        [],
    )


def test_storage_in_the_oldest_generation_falls_back_to_the_next_oldest() -> None:
    view = _view(
        _unit("app/0"),
        _unit("app/1"),
        _unit("app/2"),
        born={"app/0": 0, "app/1": 0, "app/2": 1000},
    )
    view.storage_units = frozenset({"app/0", "app/1"})

    proposal, notes = _propose(view)

    assert proposal is not None
    assert proposal.victim == "app/2"
    assert notes == ["rotate: skipped app/0 has storage, app/1 has storage"]


@pytest.mark.parametrize(
    ("fields", "busy", "expected"),
    [
        ({}, (), "app/0"),
        ({"app/0": {"life": "dying"}}, (), "app/1"),
        ({}, ("app/0",), "app/1"),
        ({"app/0": {"life": "dying"}, "app/1": {"life": "dead"}}, (), None),
        ({}, ("app/0", "app/1"), None),
    ],
)
def test_dying_and_busy_units_are_not_rotated(
    fields: dict[str, dict[str, Any]], busy: tuple[str, ...], expected: str | None
) -> None:
    view = _view(*(_unit(name, **fields.get(name, {})) for name in ("app/0", "app/1")))

    assert _victim(view, busy) == expected


def test_no_unit_to_rotate_says_so() -> None:
    assert _propose(_view(_unit("web/0"))) == (None, ["no unit can be replaced"])


# -- strategy: random ---------------------------------------------------------------------------


def _random_victim(view: model_view.ModelView, now: float) -> str | None:
    settings = _settings(strategy="random")
    context = core.make_context("app", view, settings, core.Facts(now=_at(now), agent_started=T0))
    proposal, _ = rotate.propose(context, _at(now))
    return None if proposal is None else proposal.victim


def test_random_strategy_is_the_same_for_the_same_moment_and_spreads_over_time() -> None:
    view = _view(*(_unit(f"app/{n}") for n in range(4)), born={"app/0": 0, "app/1": 5000})
    view.leaders = frozenset({"app/3"})

    again = {_random_victim(view, 600) for _ in range(3)}
    over_time = {_random_victim(view, 600 * k) for k in range(1, 60)}

    assert len(again) == 1
    # Any unit but the leader, not only the oldest generation.
    assert over_time == {"app/0", "app/1", "app/2"}


def test_random_strategy_takes_the_leader_only_when_no_other_can_go() -> None:
    view = _view(_unit("app/0"), _unit("app/1"))
    view.leaders = frozenset({"app/0"})
    view.storage_units = frozenset({"app/1"})

    assert {_random_victim(view, 600 * k) for k in range(1, 20)} == {"app/0"}
